"""Fork server versus a fresh Blender process per program, same programs, same run.

Usage::

    python benchmarks/executor_bench.py [--repeats 5] [--naive-limit 12] [--trivial 200]

Programs: a trivial cube and the ``bpy_lib/examples`` programs. Measured, each way:

* **sequential** — one program at a time: programs/s, per-program latency p50/p95 and
  *overhead* p50/p95 (latency minus the program's own run and mesh-read time, as timed
  inside the process that ran it), and for the fork server the server's own fork-to-answer
  time (what is left of the latency is the caller's side and scheduling on a busy machine);
* **parallel** — one stream per core, cube and examples: the fork-server pool (one server
  per core) versus one naive process per core; programs/s;
* **CPU per program** — the CPU time (server plus its children, from ``/proc``) one program
  costs, with the server's heap on huge pages (``executor.huge_pages``) and without: what
  bounds throughput when every core is busy.

The naive way is ``python -c 'import bpy, bpy_lib; <clear scene>; exec(code); <arrays>'``
per program (no sandbox at all, so it flatters the naive side). Results print as a table and
go to ``benchmarks/results/executor_bench.json``. Timings are wall-clock on a shared machine:
rerun when the machine is quiet before quoting them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import track
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llm3d.config import ExecutorConfig  # noqa: E402
from llm3d.schemas import ExecStatus  # noqa: E402
from worker.execution.executor import Executor, ExecutorPool  # noqa: E402

CUBE = "from bpy_lib import *\nbox(size=[1, 1, 1])\nexport_scene()\n"
RESULTS = ROOT / "benchmarks" / "results" / "executor_bench.json"

NAIVE_SCRIPT = """
import json, sys, time
code = sys.stdin.read()
import bpy, bpy_lib
bpy_lib.clear_scene()
start = time.perf_counter()
exec(compile(code, "<program>", "exec"), {"__name__": "__main__"})
vertices, faces = bpy_lib.export_scene()
print("\\n" + json.dumps({"work_s": time.perf_counter() - start, "faces": len(faces)}))
"""


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def naive_run(code: str) -> tuple[float, float, float]:
    """Run one program in a fresh Blender process; (latency, work, latency) seconds."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", NAIVE_SCRIPT],
        input=code,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=300,
    )
    latency = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"naive run failed: {proc.stderr[-500:]}")
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    return latency, float(info["work_s"]), latency


def fork_run(executor: Executor, code: str) -> tuple[float, float, float]:
    """Run one program through the fork server; (latency, work, fork-to-answer) seconds."""
    start = time.perf_counter()
    result = executor.run(code)
    latency = time.perf_counter() - start
    if result.status is not ExecStatus.OK:
        raise RuntimeError(f"fork run failed: {result.status} {result.error}")
    work = float(result.diagnostics.get("program_s", 0)) + float(
        result.diagnostics.get("extract_s", 0)
    )
    return latency, work, result.seconds


def summarise(samples: list[tuple[float, float, float]]) -> dict[str, float]:
    latencies = [s[0] for s in samples]
    overheads = [max(0.0, s[0] - s[1]) for s in samples]
    return {
        "child_p50_ms": 1000 * percentile([s[2] for s in samples], 50),
        "n": len(samples),
        "programs_per_s": len(samples) / sum(latencies),
        "latency_p50_ms": 1000 * percentile(latencies, 50),
        "latency_p95_ms": 1000 * percentile(latencies, 95),
        "overhead_p50_ms": 1000 * percentile(overheads, 50),
        "overhead_p95_ms": 1000 * percentile(overheads, 95),
        "mean_latency_ms": 1000 * statistics.fmean(latencies),
    }


def parallel_throughput(run: Any, codes: list[str], streams: int) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=streams) as pool:
        list(pool.map(run, codes))
    return len(codes) / (time.perf_counter() - start)


def server_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its reaped children (utime+stime+cutime+cstime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def cpu_per_program(config: ExecutorConfig, codes: list[str], runs: int) -> dict[str, float]:
    """Milliseconds of CPU per program, huge pages on and off, on the same programs."""
    out: dict[str, float] = {}
    for huge in (False, True):
        with Executor(config.model_copy(update={"huge_pages": huge})) as ex:
            for code in codes[:3]:
                ex.run(code)
            pid = ex.server_pid
            assert pid is not None
            before = server_cpu_s(pid)
            for i in range(runs):
                ex.run(codes[i % len(codes)])
            out["huge_pages" if huge else "small_pages"] = 1e3 * (server_cpu_s(pid) - before) / runs
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trivial", type=int, default=200, help="fork-server cube runs")
    parser.add_argument("--repeats", type=int, default=5, help="passes over the examples")
    parser.add_argument("--naive-limit", type=int, default=12, help="naive runs per workload")
    parser.add_argument("--streams", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    console = Console(width=120)

    examples = sorted((ROOT / "bpy_lib" / "examples").glob("[!_]*.py"))
    example_codes = [p.read_text(encoding="utf-8") for p in examples]
    config = ExecutorConfig(timeout_s=120.0, children_per_server=args.streams)
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "examples": len(example_codes),
        "streams": args.streams,
    }

    # Sequential, interleaved: each naive run sits between fork-server runs of the same
    # program, so a change in machine load hits both ways alike.
    chosen = example_codes[: args.naive_limit]
    fork_cube: list[tuple[float, float, float]] = []
    fork_examples: list[tuple[float, float, float]] = []
    naive_cube: list[tuple[float, float, float]] = []
    naive_examples: list[tuple[float, float, float]] = []
    per_round = max(1, args.trivial // max(1, args.naive_limit))
    with Executor(config.model_copy(update={"children_per_server": 1})) as ex:
        for _ in range(10):  # warm the server and the page cache
            fork_run(ex, CUBE)
        for _ in track(range(args.naive_limit), "cube: fork server and naive"):
            fork_cube += [fork_run(ex, CUBE) for _ in range(per_round)]
            naive_cube.append(naive_run(CUBE))
        for code in track(chosen, "examples: fork server and naive"):
            fork_examples += [fork_run(ex, code) for _ in range(args.repeats)]
            naive_examples.append(naive_run(code))
        for code in example_codes[len(chosen) :]:  # the rest: fork server only
            fork_examples += [fork_run(ex, code) for _ in range(args.repeats)]

    rows = {
        "cube / fork server": summarise(fork_cube),
        "cube / naive process": summarise(naive_cube),
        "examples / fork server": summarise(fork_examples),
        "examples / naive process": summarise(naive_examples),
    }

    # parallel: the same programs both ways (the pool gets more passes over them: it is fast)
    parallel: dict[str, dict[str, float]] = {}
    with ExecutorPool(config, size=args.streams) as pool:
        pool.run_many([CUBE] * 10)
        for name, codes in (("cube", [CUBE] * args.naive_limit), ("examples", chosen)):
            workload = codes * max(1, 200 // max(1, len(codes)))
            start = time.perf_counter()
            results = pool.run_many(workload)
            pool_rate = len(workload) / (time.perf_counter() - start)
            assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
            naive_rate = parallel_throughput(naive_run, codes, args.streams)
            parallel[name] = {
                "fork_pool_programs_per_s": pool_rate,
                "naive_programs_per_s": naive_rate,
                "speedup": pool_rate / naive_rate,
            }
    cpu = {
        "cube": cpu_per_program(config, [CUBE], 4 * args.trivial // 5),
        "examples": cpu_per_program(config, example_codes, 2 * len(example_codes)),
    }
    report["sequential"] = rows
    report["parallel"] = parallel
    report["cpu_ms_per_program"] = cpu
    report["speedup_sequential"] = {
        "cube": rows["cube / fork server"]["programs_per_s"]
        / rows["cube / naive process"]["programs_per_s"],
        "examples": rows["examples / fork server"]["programs_per_s"]
        / rows["examples / naive process"]["programs_per_s"],
    }

    table = Table(title=f"executor: fork server vs fresh process ({os.cpu_count()} CPUs)")
    for column in (
        "workload / way",
        "n",
        "prog/s",
        "lat p50 ms",
        "lat p95 ms",
        "ovh p50 ms",
        "ovh p95 ms",
        "fork→answer p50 ms",
    ):
        table.add_column(column, justify="right" if column != "workload / way" else "left")
    for name, row in rows.items():
        table.add_row(
            name,
            str(row["n"]),
            f"{row['programs_per_s']:.1f}",
            f"{row['latency_p50_ms']:.1f}",
            f"{row['latency_p95_ms']:.1f}",
            f"{row['overhead_p50_ms']:.1f}",
            f"{row['overhead_p95_ms']:.1f}",
            f"{row['child_p50_ms']:.1f}" if "fork" in name else "-",
        )
    console.print(table)
    seq = report["speedup_sequential"]
    console.print(f"sequential speed-up: cube {seq['cube']:.1f}x, examples {seq['examples']:.1f}x")
    for name, par in parallel.items():
        console.print(
            f"parallel, {args.streams} streams, {name}: pool "
            f"{par['fork_pool_programs_per_s']:.1f}/s vs naive "
            f"{par['naive_programs_per_s']:.2f}/s = {par['speedup']:.1f}x"
        )
    for name, row in cpu.items():
        console.print(
            f"CPU per program, {name}: {row['small_pages']:.1f} ms on 4 KiB pages, "
            f"{row['huge_pages']:.1f} ms with the warm heap on huge pages"
        )
    target_ok = seq["cube"] >= 30 and rows["cube / fork server"]["overhead_p50_ms"] < 50
    console.print(
        f"target (>= 30x throughput, < 50 ms p50 overhead on the cube): "
        f"{'[green]met[/]' if target_ok else '[red]not met[/]'}"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2))
    console.print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
