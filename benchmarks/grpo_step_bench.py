"""Where the time of one GRPO step goes: sampling, reward, update (tiny model, CPU).

Usage::

    python benchmarks/grpo_step_bench.py [--prompts 8] [--group 32] [--max-tokens 128]
                                         [--steps 2] [--reward-url URL]

The tiny random Qwen2.5-VL of :mod:`training.tiny` (local backend, CPU, one torch thread),
``prompts × group`` completions a step, the real reward service (``llm3d serve`` on the
inline backend, started here unless ``--reward-url`` is given), the real
:class:`~training.rl_trainer.GRPOTrainer` step. Two workloads, each ``--steps`` steps
after one warm-up step:

* **model** — the completions the tiny model samples, scored as they are (a random model
  writes no ``bpy_lib`` program: the service answers ``empty`` without running Blender,
  and every group is dropped, so the update does nothing);
* **programs** — the same sampled tokens are trained on, but the text scored is a
  ``bpy_lib`` example program with jittered numbers (every one distinct: no cache hits),
  so every completion is executed in Blender and measured against its ground truth;
  rewards differ within groups and the update runs on every completion.

Results print as a table and go to ``benchmarks/results/grpo_step_bench.json``. Timings
are wall-clock on a shared machine: rerun when it is quiet before quoting them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results" / "grpo_step_bench.json"
PHASES = ("seconds_sample", "seconds_reward", "seconds_update")
NAMES = ["stool", "table", "mug", "bowl", "vase", "wine_glass", "bench", "ladder"]


def _start_service(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    import socket

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM3D_")}
    env.update(
        LLM3D_API__PORT=str(port),
        LLM3D_API__BACKEND="inline",
        LLM3D_LOG_LEVEL="WARNING",
        LLM3D_EXECUTOR__TIMEOUT_S="20",
        PYTHONPATH=str(ROOT),
    )
    log = open(tmp / "serve.log", "wb")  # noqa: SIM115 (lives as long as the server)
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("llm3d")), "serve"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"llm3d serve did not start: {(tmp / 'serve.log').read_text()[-2000:]}")


def _jitter(code: str, rng: random.Random) -> str:
    """The program with every decimal number scaled by a random factor in [0.6, 1.4]."""
    return re.sub(
        r"(?<![\w.])(\d+\.\d+)",
        lambda m: f"{float(m.group(1)) * rng.uniform(0.6, 1.4):.3f}",
        code,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--group", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--steps", type=int, default=2, help="measured steps per workload")
    parser.add_argument("--reward-url", default=None, help="use this service, start none")
    args = parser.parse_args()

    import torch

    from llm3d.client import RewardClient
    from llm3d.config import load_config
    from training.backends.base import Completion
    from training.backends.local import LocalBackend
    from training.data import load_examples, write_example_dataset
    from training.rl_trainer import GRPOTrainer
    from training.tiny import build_tiny_model

    torch.set_num_threads(1)
    console = Console(width=120)
    tmp = Path(tempfile.mkdtemp(prefix="grpo-bench-"))
    model = build_tiny_model(tmp / "model")
    rows = load_examples(write_example_dataset(tmp / "data", names=NAMES))
    config = load_config(
        environ={},
        paths={"runs_dir": str(tmp / "runs")},
        training={
            "backend": "local",
            "base_model": str(model),
            "device": "cpu",
            "gradient_checkpointing": False,
            "batch_size": args.prompts,
            "group_size": args.group,
            "max_new_tokens": args.max_tokens,
            "micro_batch_size": 16,
            "sampling_batch_size": 256,
            "learning_rate": 1e-3,
            "save_every": 0,
        },
    )
    server = None
    url = args.reward_url
    if url is None:
        server, url = _start_service(tmp)
    rng = random.Random(0)
    report: dict[str, Any] = {
        "settings": {**vars(args), "reward_url": url, "torch_threads": 1, "cpus": os.cpu_count()},
        "workloads": {},
    }
    try:
        with RewardClient(url, timeout=1800) as client:
            trainer = GRPOTrainer(config, LocalBackend(config.training), rows, client, tmp / "run")
            for workload in ("model", "programs"):
                steps = []
                for i in range(args.steps + 1):
                    t0 = time.perf_counter()
                    groups = trainer.method.batch(trainer.step)
                    sample_s = time.perf_counter() - t0
                    if workload == "programs":
                        for g in groups:
                            code = g.example.target
                            g.completions = [
                                Completion(c.tokens, c.logprobs, _jitter(code, rng), c.stopped)
                                for c in g.completions
                            ]
                    record = trainer.train_step(groups)
                    record["seconds_sample"] = sample_s
                    record["seconds"] += sample_s
                    label = "warm-up" if i == 0 else f"step {i}"
                    console.print(
                        f"{workload} {label}: sample {sample_s:.1f}s, reward "
                        f"{record['seconds_reward']:.1f}s, update {record['seconds_update']:.1f}s "
                        f"(ok {record['status_ok']:.0%}, kept {record['groups_kept']} groups)"
                    )
                    if i > 0:
                        steps.append(record)
                summary = {k: statistics.median(r[k] for r in steps) for k in (*PHASES, "seconds")}
                summary["completions"] = steps[0]["completions"]
                summary["sampled_tokens"] = statistics.median(r["sampled_tokens"] for r in steps)
                summary["status_ok"] = statistics.median(r["status_ok"] for r in steps)
                summary["groups_kept"] = statistics.median(r["groups_kept"] for r in steps)
                report["workloads"][workload] = summary
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)

    table = Table(title=f"one GRPO step, {args.prompts} × {args.group} completions, tiny model")
    for column in (
        "workload",
        "sample s",
        "reward s",
        "update s",
        "step s",
        "reward share",
        "tokens",
        "ok",
        "groups kept",
    ):
        table.add_column(column, justify="right")
    for name, s in report["workloads"].items():
        table.add_row(
            name,
            f"{s['seconds_sample']:.2f}",
            f"{s['seconds_reward']:.2f}",
            f"{s['seconds_update']:.2f}",
            f"{s['seconds']:.2f}",
            f"{s['seconds_reward'] / s['seconds']:.0%}",
            f"{s['sampled_tokens']:.0f}",
            f"{s['status_ok']:.0%}",
            f"{s['groups_kept']:.0f}",
        )
    console.print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2))
    console.print(f"[dim]{RESULTS}[/]")


if __name__ == "__main__":
    main()
