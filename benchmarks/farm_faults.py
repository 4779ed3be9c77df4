"""``farm_bench.py --faults`` (issue 22): what a killed, a stopped and no Celery worker cost, and
how promptly ``llm3d serve`` answers and exits on SIGTERM. See farm_bench.py's docstring; the
farm is started with farm_bench's own helpers. Results go to
``benchmarks/results/farm_faults.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from farm_bench import LLM3D, REPO, console, programs, register_tasks, service
from rich.table import Table

from llm3d.client import RewardClient

FAULT_RESULTS = REPO / "benchmarks" / "results" / "farm_faults.json"


def _run_job(
    client: httpx.Client,
    items: list[dict[str, Any]],
    fault: Any = None,
    at: float = 0.2,
) -> tuple[float, float | None, dict[str, int]]:
    """A job's wall time from submission to done, calling ``fault()`` once ``at`` of its
    items are scored; the time from the fault to done; and the statuses of its results."""
    start = time.perf_counter()
    fault_at: float | None = None
    job = client.post("/reward/jobs", json={"items": items})
    job.raise_for_status()
    url, done_at = job.json()["url"], None
    while done_at is None:
        state = client.get(url).json()
        if fault is not None and state["completed"] >= at * len(items):
            fault()
            fault, fault_at = None, time.perf_counter()
        if state["state"] in {"done", "failed"}:
            done_at = time.perf_counter()
            if state["state"] == "failed":
                raise RuntimeError(f"job failed: {state['error']}")
        else:
            time.sleep(0.05)
    statuses: dict[str, int] = {}
    for r in state["response"]["results"]:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    return done_at - start, None if fault_at is None else done_at - fault_at, statuses


def wait_for_workers(http: httpx.Client, count: int, timeout: float = 120) -> None:
    """Until ``/healthz`` lists ``count`` workers consuming the queue."""
    deadline = time.monotonic() + timeout
    while len(http.get("/healthz").json().get("workers", [])) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"fewer than {count} workers after {timeout}s")
        time.sleep(0.5)


def bench_faults(args: argparse.Namespace) -> None:
    """Issue 22: what a lost, a stopped and no worker cost (see the module's docstring)."""
    size, servers = args.faults_size, max(2, args.servers)
    rows: list[dict[str, Any]] = []
    spawned: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory(prefix="farm-faults-") as tmp,
        service("celery", servers, args.redis_url, Path(tmp), 1, spawned) as url,
        httpx.Client(base_url=url, timeout=600) as http,
    ):
        procs: list[subprocess.Popen[bytes]] = spawned["procs"]
        workers, api = procs[:servers], procs[servers]

        def start_worker(log: str) -> subprocess.Popen[bytes]:
            with open(Path(tmp) / log, "wb") as handle:
                worker = subprocess.Popen(
                    [LLM3D, "worker", "--concurrency", "1"],
                    env=spawned["env"],
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            procs.append(worker)
            return worker

        with RewardClient(url, retries=0) as client:
            register_tasks(client, "copies", 4)
            client.score_batch(programs(4 * servers, "warm", "copies"))

        def batch(tag: str) -> list[dict[str, Any]]:
            return programs(size, f"{tag}-{uuid.uuid4().hex[:4]}", "copies")

        console.log(f"faults: batch of {size}, no fault …")
        base, _, statuses = _run_job(http, batch("base"))
        rows.append(
            {
                "fault": "none",
                "seconds": base,
                "after_fault_s": None,
                "extra_s": 0.0,
                "statuses": statuses,
            }
        )
        # the rest of the batch on one worker fewer: what the lost capacity alone costs
        capacity_only = base * (0.2 + 0.8 * servers / (servers - 1))
        faults = (
            ("SIGKILL one worker at 20 %", signal.SIGKILL),
            ("SIGSTOP one worker at 20 %", signal.SIGSTOP),
        )
        for fault, sig in faults:
            victim = workers.pop(0)
            console.log(f"faults: batch of {size}, {fault} …")
            seconds, after, statuses = _run_job(
                http, batch("fault"), lambda v=victim, s=sig: os.killpg(v.pid, s)
            )
            rows.append(
                {
                    "fault": fault,
                    "seconds": seconds,
                    "after_fault_s": after,
                    "extra_s": seconds - capacity_only,
                    "statuses": statuses,
                }
            )
            with contextlib.suppress(ProcessLookupError):
                os.killpg(victim.pid, signal.SIGKILL)
            workers.append(start_worker(f"replacement-{len(rows)}.log"))
            wait_for_workers(http, servers)

        for worker in workers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.pid, signal.SIGKILL)
        console.log("faults: no worker at all …")
        t0 = time.perf_counter()
        answer = http.post("/reward/batch", json={"items": batch("none")[:4]})
        rows.append(
            {
                "fault": "no worker: batch answered after",
                "seconds": time.perf_counter() - t0,
                "after_fault_s": None,
                "extra_s": None,
                "statuses": {f"HTTP {answer.status_code}": 1},
            }
        )

        console.log("faults: SIGTERM on llm3d serve with a batch in flight …")
        start_worker("last-worker.log")
        wait_for_workers(http, 1)
        loop = "from bpy_lib import *\n# part_1: none\nwhile True:\n    pass\n"
        body = {"items": [{"id": "loop", "code": loop, "task_id": "bench/table"}], "timeout_s": 25}
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(http.post, "/reward/batch", json=body)
            time.sleep(3.0)  # a benchmark, not a test: the loop is running by now
            t0 = time.perf_counter()
            api.send_signal(signal.SIGTERM)
            answered = pending.result(timeout=120)
            answered_s = time.perf_counter() - t0
            api.wait(timeout=120)
            exit_s = time.perf_counter() - t0
        status = answered.json()["results"][0]["status"] if answered.status_code == 200 else ""
        rows.append(
            {
                "fault": "SIGTERM serve: batch answered after",
                "seconds": answered_s,
                "after_fault_s": None,
                "extra_s": None,
                "statuses": {status or f"HTTP {answered.status_code}": 1},
            }
        )
        rows.append(
            {
                "fault": "SIGTERM serve: exited after",
                "seconds": exit_s,
                "after_fault_s": None,
                "extra_s": None,
                "statuses": {f"exit {api.returncode}": 1},
            }
        )

    table = Table(
        title=f"reward farm faults: batch of {size}, {servers} Celery workers × 1 process on "
        f"{os.cpu_count()} cores (defaults: farm.visibility_timeout_s 20 s)"
    )
    for col in ("fault", "seconds", "done s after the fault", "extra s", "statuses"):
        table.add_column(col, justify="left" if col in {"fault", "statuses"} else "right")
    for row in rows:
        extra, after = row["extra_s"], row["after_fault_s"]
        table.add_row(
            row["fault"],
            f"{row['seconds']:.1f}",
            "" if after is None else f"{after:.1f}",
            "" if extra is None else f"{extra:+.1f}",
            ", ".join(f"{k}:{v}" for k, v in sorted(row["statuses"].items())),
        )
    console.print(table)
    FAULT_RESULTS.parent.mkdir(parents=True, exist_ok=True)
    FAULT_RESULTS.write_text(
        json.dumps(
            {
                "cpu_count": os.cpu_count(),
                "servers": servers,
                "batch": size,
                "capacity_only_s": capacity_only,
                "rows": rows,
            },
            indent=2,
        )
    )
    console.print(f"wrote {FAULT_RESULTS.relative_to(REPO)}")
