"""What one Modal ``score`` container does per second, and how many a GRPO step needs.

    .venv/bin/python benchmarks/modal_container_bench.py [--items 256] [--mix realistic]

Runs the ``score`` function's body (:func:`worker.farm.modal_app.score_body`) exactly as a
container does: ``modal.score_inputs`` inputs at a time on threads (``@modal.concurrent``),
one warm fork server, ground truths cached in the container. The machine should have the
container's cores (``modal.score_cpu``, 2): the number is per container. The workload is
benchmarks/farm_bench.py's (``realistic``: the RL mix of issue 17; ``copies``: a trained
policy's). Reported: the first pass (ground truths built: a fresh container) and the warm
rate, then containers for one GRPO step of ``--prompts`` × ``--group`` completions to be
scored within ``--step-seconds``. Modal's own per-call overhead (scheduling, transfer) is
not in this number; it is measured only with an account.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from farm_bench import ground_truths, programs  # noqa: E402

from llm3d.schemas import ReferencePayload, reference_key  # noqa: E402
from worker.farm import modal_app  # noqa: E402
from worker.scoring import ScoreJob, ScoreSettings  # noqa: E402


def jobs(n: int, tag: str, mix: str, settings: ScoreSettings) -> list[dict[str, Any]]:
    tasks = ground_truths(mix, 8)
    out = []
    for item in programs(n, tag, mix):
        ref = ReferencePayload(code=tasks[item["task_id"]])
        out.append(ScoreJob(item["id"], item["code"], reference_key(ref), settings, ref).to_dict())
    return out


def run(payloads: list[dict[str, Any]], inputs: int) -> tuple[float, list[dict[str, Any]]]:
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=inputs) as pool:
        results = list(pool.map(modal_app.score_body, payloads))
    return time.perf_counter() - start, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=256)
    parser.add_argument("--mix", default="realistic", choices=["realistic", "copies"])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--step-seconds", type=float, default=10.0)
    args = parser.parse_args()
    config = modal_app._config
    settings = ScoreSettings.from_config(config, timeout_s=30)
    inputs = modal_app.MAX_INPUTS["score"]
    try:
        cold_s, _ = run(jobs(16, "cold", args.mix, settings), inputs)
        warm_s, results = run(jobs(args.items, "warm", args.mix, settings), inputs)
    finally:
        if modal_app._scorer is not None:
            modal_app._scorer.close()
    rate = args.items / warm_s
    step = args.prompts * args.group
    report = {
        "mix": args.mix,
        "points": settings.points,
        "inputs_per_container": inputs,
        "first_16_items_s": round(cold_s, 2),
        "warm_items_per_s": round(rate, 2),
        "infra_errors": sum(r["status"] == "infra_error" for r in results),
        "grpo_step_completions": step,
        "one_container_step_s": round(step / rate, 1),
        "containers_for_step_seconds": math.ceil(step / (rate * args.step_seconds)),
        "step_seconds": args.step_seconds,
    }
    sys.stdout.write(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
