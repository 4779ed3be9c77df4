"""The client side of scripts/compose_smoke.sh: talks to the farm only over its published port.

``batch URL``: a mixed batch (exact, perturbed, wrong object, refused, broken, timeout)
through ``POST /reward/batch``; each item must get its expected status.
``submit URL``: a job of 40 distinct programs (``POST /reward/jobs``); prints its URL.
``wait URL JOB --until N``: until N items are done (the moment to kill a worker).
``finish URL JOB``: until the job is done; every item must have exactly one ``ok`` result.
Exit status 0 when all holds; the reason on stderr otherwise.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import httpx

from worker.demo_programs import HOSTILE, OBJECTS, TIMEOUT, perturb

KILL_ITEMS = 40


def fail(message: str) -> int:
    sys.stderr.write(f"compose smoke: {message}\n")
    return 1


def batch(client: httpx.Client) -> int:
    table = OBJECTS["table"]
    ref = {"code": table}
    items = [
        ("exact", table, "ok"),
        ("perturbed", perturb(table, 1.25), "ok"),
        ("wrong_object", OBJECTS["snowman"], "ok"),
        ("hostile", HOSTILE[0].code, "refused"),
        ("broken", "from bpy_lib import *\nbox(size=[1, 1])\nexport_scene()\n", "exec_failed"),
        ("timeout", TIMEOUT.code, "timeout"),
    ]
    run = time.time_ns()  # distinct programs every run: scored by the workers, never cached
    body = {
        "timeout_s": 5,
        "items": [
            {"id": i, "code": f"{code}\n# smoke run {run}\n", "reference": ref}
            for i, code, _ in items
        ],
    }
    start = time.monotonic()
    response = client.post("/reward/batch", json=body)
    if response.status_code != 200:
        return fail(f"POST /reward/batch: {response.status_code} {response.text[:500]}")
    results = response.json()["results"]
    got = {r["id"]: r["status"] for r in results}
    want = {i: status for i, _, status in items}
    if got != want:
        return fail(f"statuses {got}, expected {want}")
    rewards = {r["id"]: r["reward"] for r in results}
    if not rewards["exact"] > rewards["perturbed"] > 0.2 or rewards["exact"] < 0.95:
        return fail(f"rewards out of order: {rewards}")
    sys.stdout.write(f"    {len(results)} items in {time.monotonic() - start:.1f} s: {got}\n")
    return 0


def submit(client: httpx.Client) -> int:
    table = OBJECTS["table"]
    items = [  # distinct programs (no cache hit), all the table
        {
            "id": f"k{i:02d}",
            "code": f"{table}# nonce {i} {time.time_ns()}\n",
            "reference": {"code": table},
        }
        for i in range(KILL_ITEMS)
    ]
    # A short timeout_s bounds the tasks' hard limit and so how long the API waits before it
    # re-sends items whose message a SIGKILLed worker took from Redis but never recorded
    # (visibility timeout + hard limit: ~80 s here, 300 s at the default 120 s).
    response = client.post("/reward/jobs", json={"timeout_s": 10, "items": items})
    if response.status_code != 202:
        return fail(f"POST /reward/jobs: {response.status_code} {response.text[:500]}")
    sys.stdout.write(str(response.json()["url"]) + "\n")
    return 0


def poll(client: httpx.Client, job: str, until: int | None, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = client.get(job)
        if response.status_code == 200:
            state = response.json()
            if state["state"] in {"done", "failed"}:
                return state
            if until is not None and state["completed"] >= until:
                return state
        time.sleep(0.2)
    raise TimeoutError(f"job {job} not there in {timeout:.0f} s: {state}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["batch", "submit", "wait", "finish"])
    parser.add_argument("url")
    parser.add_argument("job", nargs="?")
    parser.add_argument("--until", type=int, default=4)
    args = parser.parse_args(argv)
    with httpx.Client(base_url=args.url, timeout=300) as client:
        if args.action == "batch":
            return batch(client)
        if args.action == "submit":
            return submit(client)
        if args.action == "wait":
            state = poll(client, args.job, args.until, timeout=300)
            if state["state"] != "running":
                return fail(f"the job is {state['state']} before a worker could be killed")
            sys.stdout.write(f"    {state['completed']}/{state['items']} done: killing a worker\n")
            return 0
        state = poll(client, args.job, None, timeout=300)
        if state["state"] != "done":
            return fail(f"job {state['state']}: {state.get('error')}")
        results = state["response"]["results"]
        ids = [r["id"] for r in results]
        if ids != [f"k{i:02d}" for i in range(KILL_ITEMS)]:
            return fail(f"not one result per item in order: {ids}")
        statuses = {r["status"] for r in results}
        if statuses != {"ok"}:
            return fail(f"statuses after the kill: {sorted(statuses)}")
        sys.stdout.write(f"    all {len(results)} items ok after the kill\n")
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
