"""Reward farm throughput: batches of 64/256/1024 items on ``inline`` and ``celery`` (2 workers)
against the naive baseline (a fresh Blender process per item), in the same run.

    .venv/bin/python benchmarks/farm_bench.py                     # everything
    .venv/bin/python benchmarks/farm_bench.py --sizes 64,256 --backends inline

Two workloads (``--mix``), every item a distinct program, so no cache:

- ``copies``: exact and perturbed copies of the ground truths of ``worker.demo_programs.OBJECTS``
  (4 ground truths) — the easy case, a trained policy's;
- ``realistic``: what RL sends early on (issue 17), over the first ``--ground-truths``
  ``bpy_lib`` examples (≥ 8): 50 % another example's program (the wrong object), 30 %
  perturbed copies (sizes and places × 0.8-1.2), 10 % execution failures (bad argument,
  unknown verb, syntax error), 10 % refused or empty (``eval``, ``getattr`` of a dunder, no
  code, no ``bpy_lib`` import: all harmless when the naive baseline runs them unsandboxed).

What is measured, per workload, backend and batch size:

- items/s: batch size / wall time of ``POST /reward/batch`` through ``RewardClient``;
- p50/p95 latency: of the whole batch request (what a trainer waits), and of one item's
  scoring time inside the service (``seconds`` of each result);
- API overhead per item: the same batch sent again, now entirely served from the cache —
  HTTP, validation, cache lookup and serialization divided by the item count;
- naive: ``--naive`` items, each in a new ``python -c 'import bpy ...'`` process running
  the program and scoring it, ``--naive-parallel`` processes at a time (default: as many
  as the farm's servers, for a like-for-like comparison); half of them before the farm
  runs and half after, so that a drift of the machine's speed hits both sides alike.

Targets: farm ≥ 30× the naive throughput on copies (issue 7), ≥ 40× on the realistic mix
(issue 17), API overhead < 5 ms per item. Timings on a shared 2-core machine are noisy; the
table says what was measured. Results go to ``benchmarks/results/farm_bench.json``.

``--faults`` (issue 22) measures instead what a fault costs the Celery farm (``--servers``
one-process workers, the configuration's defaults, so ``farm.visibility_timeout_s`` = 20 s):
one ``--faults-size`` batch (a job, polled) with no fault, then the same batch with one
worker SIGKILLed (its whole process group) at 20 % progress, and with one SIGSTOPped there;
then, every worker gone, how long ``POST /reward/batch`` takes to answer 503, and how long
``llm3d serve`` takes to exit on SIGTERM with a batch in flight. "extra s" is the time
beyond what losing that worker's capacity alone costs (the rest of the batch on one worker
fewer, as timed without a fault). Results go to ``benchmarks/results/farm_faults.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bpy_lib import examples  # noqa: E402
from llm3d.client import RewardClient  # noqa: E402
from worker.demo_programs import BROKEN, HOSTILE, OBJECTS, perturb  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "farm_bench.json"
LLM3D = str(Path(sys.executable).with_name("llm3d"))
console = Console(width=160)

NAIVE_SCRIPT = r"""
import json, sys, time
import numpy as np
start = time.perf_counter()
import bpy  # a fresh Blender for this one program
import bpy_lib
from llm3d.config import load_config
from worker.metrics import prepare_ground_truth
from worker.reward import compute_reward
from worker.types import ExecResult
from llm3d.schemas import ExecStatus
code = open(sys.argv[1]).read()
gt_data = np.load(sys.argv[2])
config = load_config()
try:
    exec(compile(code, "<program>", "exec"), {"__name__": "__program__"})
    v, f = bpy_lib.export_scene()
    result = ExecResult(ExecStatus.OK, np.asarray(v, np.float32), np.asarray(f, np.int32))
except Exception as exc:
    result = ExecResult(ExecStatus.EXEC_FAILED, error=str(exc))
gt = prepare_ground_truth(gt_data["v"], gt_data["f"], points=config.metrics.train_points, seed=0)
r = compute_reward(code, result, gt, metrics_config=config.metrics, executor_config=config.executor)
print(json.dumps({"reward": r.reward, "seconds": time.perf_counter() - start}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env_for(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("LLM3D_")}
    # one OpenMP thread everywhere, the naive baseline included (llm3d serve/worker set it)
    env.update({"OMP_NUM_THREADS": "1", "LLM3D_LOG_LEVEL": "WARNING", **extra})
    env.setdefault("LLM3D_EXECUTOR__TIMEOUT_S", "30")
    env["PYTHONPATH"] = str(REPO)
    return env


def ground_truths(mix: str, count: int) -> dict[str, str]:
    """task id → reference program of a workload."""
    if mix == "copies":
        return {f"bench/{name}": code for name, code in sorted(OBJECTS.items())}
    chosen = examples.paths()[:count]
    return {f"rl/{path.stem}": path.read_text() for path in chosen}


_ALL_EXAMPLES = tuple((path.stem, path.read_text()) for path in examples.paths())
_FAILING = tuple(
    c.code for c in BROKEN if c.name in {"bad_argument", "unknown_verb", "syntax_error"}
)
_REFUSED_OR_EMPTY = (
    *(c.code for c in HOSTILE if c.name in {"eval", "getattr"}),
    *(c.code for c in BROKEN if c.name in {"empty", "no_import"}),
)


def programs(n: int, tag: str, mix: str = "copies", count: int = 8) -> list[dict[str, Any]]:
    """``n`` distinct candidates of a workload (see the module's docstring)."""
    tasks = ground_truths(mix, count)
    task_ids = list(tasks)
    items = []
    for i in range(n):
        task_id = task_ids[i % len(task_ids)]
        reference = tasks[task_id]
        if mix == "copies":
            code = reference if i % 2 == 0 else perturb(reference, 0.9)
        else:
            kind = i % 10
            if kind < 5:  # the wrong object: another example's program (any of them)
                others = [c for name, c in _ALL_EXAMPLES if f"rl/{name}" != task_id]
                code = others[(7 * i + i // len(task_ids)) % len(others)]
            elif kind < 8:
                code = perturb(reference, 0.8 + 0.4 * ((i * 7919) % 101) / 100)
            elif kind == 8:
                code = _FAILING[(i // 10) % len(_FAILING)]
            else:
                code = _REFUSED_OR_EMPTY[(i // 10) % len(_REFUSED_OR_EMPTY)]
        if code:  # an empty program stays empty (its gate); the others are made distinct
            code += f"\n# {tag} {i}\n"
        else:
            code = " " * (1 + i)  # blank, yet distinct: no cache hit
        items.append({"id": f"{tag}-{i}", "code": code, "task_id": task_id})
    return items


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


@contextlib.contextmanager
def service(
    backend: str,
    servers: int,
    redis_url: str,
    tmp: Path,
    worker_concurrency: int = 1,
    spawned: dict[str, Any] | None = None,
) -> Iterator[str]:
    """``llm3d serve`` (and ``servers`` one-process Celery workers for celery). ``spawned``,
    when given, gets ``procs`` (the workers', then the API's process; more may be added, all
    are stopped at the end) and ``env`` (theirs)."""
    port = free_port()
    extra = {
        "LLM3D_API__PORT": str(port),
        "LLM3D_API__BACKEND": backend,
        "LLM3D_API__MAX_ITEMS": "2048",
        "LLM3D_API__MAX_REQUEST_MB": "64",
        "LLM3D_EXECUTOR__SERVERS": str(servers),
        "LLM3D_FARM__REDIS_URL": redis_url,
        "LLM3D_FARM__QUEUE": f"blender-bench-{uuid.uuid4().hex[:6]}",
    }
    env = env_for(extra)
    procs: list[subprocess.Popen[bytes]] = []
    if spawned is not None:
        spawned.update(procs=procs, env=env)

    def spawn(argv: list[str], log: str) -> None:
        with open(tmp / log, "wb") as handle:
            procs.append(
                subprocess.Popen(
                    argv, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
                )
            )

    try:
        if backend == "celery":
            import redis

            redis.Redis.from_url(redis_url).flushdb()
            for i in range(servers):
                argv = [LLM3D, "worker", "--concurrency", str(worker_concurrency)]
                spawn(argv, f"worker{i}.log")
        spawn([LLM3D, "serve"], "api.log")
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            with contextlib.suppress(httpx.HTTPError):
                health = httpx.get(url + "/healthz", timeout=5)
                if health.status_code == 200 and (
                    backend != "celery" or len(health.json().get("workers", [])) >= servers
                ):
                    break
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"{backend} service did not start; see {tmp}")
            time.sleep(0.5)
        yield url
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGCONT)  # a worker a fault benchmark stopped
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def register_tasks(client: RewardClient, mix: str, count: int) -> None:
    for task_id, code in ground_truths(mix, count).items():
        client.add_task(task_id, {"code": code})


def bench_backend(
    backend: str,
    sizes: list[int],
    servers: int,
    redis_url: str,
    worker_concurrency: int = 1,
    mix: str = "copies",
    count: int = 8,
) -> list[dict[str, Any]]:
    rows = []
    with (
        tempfile.TemporaryDirectory(prefix=f"farm-bench-{backend}-") as tmp,
        service(backend, servers, redis_url, Path(tmp), worker_concurrency) as url,
        RewardClient(url, retries=0) as client,
    ):
        register_tasks(client, mix, count)
        # every ground truth built and every fork server warm before the timings
        warm = max(2 * servers, len(ground_truths(mix, count)))
        client.score_batch(programs(warm, f"warm-{backend}", mix, count))
        for size in sizes:
            items = programs(size, f"{backend}-{size}-{uuid.uuid4().hex[:4]}", mix, count)
            console.log(f"{backend}: batch of {size} …")
            t0 = time.perf_counter()
            response = client.score_batch(items)
            wall = time.perf_counter() - t0
            t0 = time.perf_counter()
            cached = client.score_batch(items)
            cached_wall = time.perf_counter() - t0
            assert all(r.cached for r in cached.results)
            statuses: dict[str, int] = {}
            for r in response.results:
                statuses[r.status.value] = statuses.get(r.status.value, 0) + 1
            item_s = [r.seconds for r in response.results]
            rows.append(
                {
                    "mix": mix,
                    "backend": backend,
                    "batch": size,
                    "items_per_s": size / wall,
                    "batch_seconds": wall,
                    "item_p50_s": pct(item_s, 50),
                    "item_p95_s": pct(item_s, 95),
                    "api_overhead_ms_per_item": 1000 * cached_wall / size,
                    "statuses": statuses,
                }
            )
    return rows


def bench_naive(n: int, parallel: int, mix: str = "copies", count: int = 8) -> dict[str, Any]:
    """A fresh ``import bpy`` process per item (the program, export and reward in it)."""
    from llm3d.config import load_config
    from worker.execution.executor import Executor

    with tempfile.TemporaryDirectory(prefix="farm-bench-naive-") as tmp_name:
        tmp = Path(tmp_name)
        gts: dict[str, Path] = {}
        with Executor(load_config().executor) as ex:
            for task_id, code in ground_truths(mix, count).items():
                r = ex.run(code)
                gts[task_id] = tmp / f"{task_id.replace('/', '_')}.npz"
                np.savez(gts[task_id], v=r.vertices, f=r.faces)
        script = tmp / "naive.py"
        script.write_text(NAIVE_SCRIPT)
        items = programs(n, "naive", mix, count)
        jobs = []
        for i, item in enumerate(items):
            path = tmp / f"p{i}.py"
            path.write_text(item["code"])
            jobs.append((path, gts[item["task_id"]]))

        def one(job: tuple[Path, Path]) -> float:
            t = time.perf_counter()
            out = subprocess.run(
                [sys.executable, str(script), str(job[0]), str(job[1])],
                capture_output=True,
                text=True,
                env=env_for({}),
                timeout=300,
                check=True,
            )
            json.loads(out.stdout.strip().splitlines()[-1])
            return time.perf_counter() - t

        console.log(f"naive: {n} items, {parallel} processes at a time …")
        t0 = time.perf_counter()
        with ThreadPoolExecutor(parallel) as pool:
            per_item = list(pool.map(one, jobs))
        wall = time.perf_counter() - t0
    return {
        "mix": mix,
        "backend": "naive",
        "batch": n,
        "items_per_s": n / wall,
        "batch_seconds": wall,
        "item_p50_s": statistics.median(per_item),
        "item_p95_s": pct(per_item, 95),
        "api_overhead_ms_per_item": None,
        "statuses": {},
    }


def combine_naive(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """One baseline from the runs before and after the farm: all items over all wall time."""
    items = before["batch"] + after["batch"]
    wall = before["batch_seconds"] + after["batch_seconds"]
    return {
        **before,
        "batch": items,
        "items_per_s": items / wall,
        "batch_seconds": wall,
        "item_p50_s": (before["item_p50_s"] + after["item_p50_s"]) / 2,
        "item_p95_s": max(before["item_p95_s"], after["item_p95_s"]),
        "before_items_per_s": before["items_per_s"],
        "after_items_per_s": after["items_per_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="64,256,1024")
    parser.add_argument("--backends", default="inline,celery")
    parser.add_argument("--mix", default="copies,realistic", help="workloads (see above)")
    parser.add_argument(
        "--ground-truths", type=int, default=8, help="examples of the realistic mix (≥ 8)"
    )
    parser.add_argument("--servers", type=int, default=2, help="fork servers / Celery workers")
    parser.add_argument(
        "--worker-concurrency", type=int, default=1, help="processes per Celery worker"
    )
    parser.add_argument("--naive", type=int, default=20, help="items of the naive baseline")
    parser.add_argument("--naive-parallel", type=int, default=None)
    parser.add_argument(
        "--redis-url", default=os.environ.get("LLM3D_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
    )
    parser.add_argument("--faults", action="store_true", help="measure faults (see above)")
    parser.add_argument("--faults-size", type=int, default=96, help="batch of --faults")
    args = parser.parse_args()
    if args.faults:
        from farm_faults import bench_faults  # the --faults half (benchmarks/farm_faults.py)

        bench_faults(args)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    backends = [b for b in args.backends.split(",") if b]
    mixes = [m for m in args.mix.split(",") if m]
    if "celery" in backends and shutil.which("redis-server") is None:
        console.log("[yellow]no redis-server here; is Redis reachable at --redis-url?[/]")

    rows: list[dict[str, Any]] = []
    parallel = args.naive_parallel or args.servers
    for mix in mixes:
        # The naive baseline brackets the farm runs (half before, half after), so that a
        # change of the machine's speed during the run (a shared VM) hits both sides alike.
        count = args.ground_truths
        before = bench_naive(max(1, args.naive // 2), parallel, mix, count)
        farm_rows: list[dict[str, Any]] = []
        for backend in backends:
            farm_rows += bench_backend(
                backend, sizes, args.servers, args.redis_url, args.worker_concurrency, mix, count
            )
        after = bench_naive(max(1, args.naive - args.naive // 2), parallel, mix, count)
        naive = combine_naive(before, after)
        for row in farm_rows:
            row["x_naive"] = row["items_per_s"] / naive["items_per_s"]
        naive["x_naive"] = 1.0
        rows += [naive, *farm_rows]
        report(mix, naive, farm_rows, args)

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "cpu_count": os.cpu_count(),
                "servers": args.servers,
                "worker_concurrency": args.worker_concurrency,
                "naive_parallel": parallel,
                "ground_truths": args.ground_truths,
                "rows": rows,
            },
            indent=2,
        )
    )
    console.print(f"wrote {RESULTS.relative_to(REPO)}")


def report(
    mix: str, naive: dict[str, Any], farm_rows: list[dict[str, Any]], args: argparse.Namespace
) -> None:
    """The table of one workload and its verdict against the targets."""
    target = 40.0 if mix == "realistic" else 30.0
    table = Table(
        title=f"reward farm, {mix} mix: {args.servers} fork servers (inline) / Celery workers × "
        f"{args.worker_concurrency} process on {os.cpu_count()} cores; naive: "
        f"{args.naive_parallel or args.servers} processes at a time"
    )
    for col in (
        "backend",
        "n",
        "items/s",
        "×naive",
        "batch s",
        "p50 s",
        "p95 s",
        "API ms",
        "statuses",
    ):
        table.add_column(col, justify="left" if col in {"backend", "statuses"} else "right")
    for row in [naive, *farm_rows]:
        overhead = row["api_overhead_ms_per_item"]
        table.add_row(
            row["backend"],
            str(row["batch"]),
            f"{row['items_per_s']:.2f}",
            f"{row['x_naive']:.1f}×",
            f"{row['batch_seconds']:.1f}",
            f"{row['item_p50_s']:.3f}",
            f"{row['item_p95_s']:.3f}",
            "" if overhead is None else f"{overhead:.2f}",
            ", ".join(f"{k}:{v}" for k, v in sorted(row["statuses"].items())),
        )
    console.print(table)
    console.print(
        f"naive baseline ({mix}): {naive['before_items_per_s']:.2f} items/s before the farm "
        f"runs, {naive['after_items_per_s']:.2f} after"
    )
    best = max(farm_rows, key=lambda r: r["items_per_s"], default=None)
    if best is not None:
        worst_overhead = max(r["api_overhead_ms_per_item"] for r in farm_rows)
        console.print(
            f"best ({mix}): {best['backend']} batch {best['batch']} at {best['x_naive']:.1f}× "
            f"naive (target ≥ {target:.0f}×: {'met' if best['x_naive'] >= target else 'NOT met'}); "
            f"API overhead ≤ {worst_overhead:.2f} ms/item (target < 5: "
            f"{'met' if worst_overhead < 5 else 'NOT met'})"
        )


if __name__ == "__main__":
    main()
