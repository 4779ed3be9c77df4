"""Evaluation runner cost: where the time of ``llm3d eval`` goes, per task.

    .venv/bin/python benchmarks/eval_bench.py                 # examples set, 10k and 100k points
    .venv/bin/python benchmarks/eval_bench.py --data data/small/objects --points 100000

Measured on one split (default: the bpy_lib-examples set of ``training/eval_examples.py``,
built if missing) against a fresh ``llm3d serve`` (inline backend) started here:

- retrieval index: descriptors of the training split (per sample), and one query;
- cold run (oracle, k=1, no grid): registration + scoring at ``points`` per task;
- warm rerun: everything from the caches (what a resumed run pays);
- grid: the three comparison panels (sandbox runs + Workbench renders).

Timings on a shared 2-core machine are noisy; the table says what was measured. Results go
to ``benchmarks/results/eval_bench.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from environments.blender_3d.dataset import read_split  # noqa: E402
from training.eval_runner import EvalSettings, run_eval  # noqa: E402
from training.policies import OraclePolicy, RetrievalPolicy  # noqa: E402


def serve(port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM3D_")}
    env.update({"LLM3D_LOG_LEVEL": "WARNING", "LLM3D_API__MAX_REQUEST_MB": "64"})
    exe = str(Path(sys.executable).with_name("llm3d"))
    with open(log, "wb") as handle:
        proc = subprocess.Popen(
            [exe, "serve", "--port", str(port)], env=env, stdout=handle, stderr=subprocess.STDOUT
        )
    import httpx

    for _ in range(240):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"llm3d serve did not start; log: {log}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO / "data" / "eval_examples")
    parser.add_argument("--points", default="10000,100000")
    parser.add_argument("--port", type=int, default=8777)
    args = parser.parse_args()
    if not (args.data / "eval.jsonl").is_file():
        from training.eval_examples import build_examples_dataset

        build_examples_dataset(args.data)
    samples = read_split(args.data / "eval.jsonl")
    train = read_split(args.data / "sft.jsonl")
    console = Console()
    rows: list[dict[str, object]] = []

    start = time.perf_counter()
    retrieval = RetrievalPolicy(train)
    index_s = time.perf_counter() - start
    start = time.perf_counter()
    for sample in samples:
        retrieval.nearest(sample, 1)
    query_s = (time.perf_counter() - start) / len(samples)
    rows.append({"step": "retrieval index (per training sample)", "ms": 1e3 * index_s / len(train)})
    rows.append({"step": "retrieval query (per task)", "ms": 1e3 * query_s})

    with tempfile.TemporaryDirectory(prefix="eval-bench-") as tmp:
        proc = serve(args.port, Path(tmp) / "serve.log")
        try:
            url = f"http://127.0.0.1:{args.port}"
            for points in [int(p) for p in args.points.split(",")]:
                out = Path(tmp) / f"oracle-{points}"
                settings = EvalSettings(
                    split=args.data / "eval.jsonl",
                    out_dir=out,
                    points=points,
                    reward_url=url,
                    grid=False,
                )
                start = time.perf_counter()
                run_eval(settings, OraclePolicy())
                cold = time.perf_counter() - start
                start = time.perf_counter()
                run_eval(settings, OraclePolicy())
                warm = time.perf_counter() - start
                rows.append(
                    {
                        "step": f"cold oracle run, {points:,} points (per task)",
                        "ms": 1e3 * cold / len(samples),
                    }
                )
                rows.append(
                    {
                        "step": f"cached rerun, {points:,} points (per task)",
                        "ms": 1e3 * warm / len(samples),
                    }
                )
            settings = EvalSettings(
                split=args.data / "eval.jsonl",
                out_dir=Path(tmp) / "grid",
                points=10_000,
                reward_url=url,
                grid=True,
            )
            run_eval(settings, OraclePolicy())  # scores cached in this folder
            start = time.perf_counter()
            run_eval(settings, OraclePolicy())
            rows.append(
                {
                    "step": "cached rerun + comparison grid (whole run)",
                    "ms": 1e3 * (time.perf_counter() - start),
                }
            )
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    table = Table(title=f"eval runner on {args.data} ({len(samples)} tasks, {len(train)} train)")
    table.add_column("step")
    table.add_column("ms", justify="right")
    for row in rows:
        table.add_row(str(row["step"]), f"{float(row['ms']):.1f}")  # type: ignore[arg-type]
    console.print(table)
    results = REPO / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    payload = {"data": str(args.data), "tasks": len(samples), "train": len(train), "rows": rows}
    (results / "eval_bench.json").write_text(json.dumps(payload, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
