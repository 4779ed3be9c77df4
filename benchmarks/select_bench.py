"""Best-of-N by render match in the reward service (issue 21.5): seconds a candidate, split
into execute, render and match, through ``POST /select/batch`` of a real ``llm3d serve``.

    .venv/bin/python benchmarks/select_bench.py                       # inline and celery
    .venv/bin/python benchmarks/select_bench.py --backends inline --groups 8 --n 8

The tasks are the four objects of ``worker.demo_programs.OBJECTS``, registered with their
views (rendered here from the service's cameras, as a dataset's views are). Each group hides
the true program among ``--n`` candidates: the other objects and copies of the true one with
every size and place scaled by 0.8-1.2; every candidate is a distinct program (no cache).

What is measured, per backend:

- warm-up: the first group alone (the render servers import Blender on first use);
- candidates/s: all candidates of ``--groups`` groups in one request / its wall time;
- execute / render / match: the mean seconds of each step a candidate (as the service
  reports them: ``seconds`` of each candidate), and their sum;
- picked: the share of groups whose ``best`` is the true program, and whose ``best`` builds
  the true object (the true program or one of its copies; with ``render.frame: object`` a
  copy scaled as a whole renders exactly like it and ties);
- API overhead a candidate: the same groups sent again (new ``request_id``), all from the
  cache: HTTP, validation, view checks, cache lookup and serialization.

Results go to ``benchmarks/results/select_bench.json``. Timings on a shared 2-core machine
are noisy; the table says what was measured.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from farm_bench import REPO, console, service
from rich.table import Table

from llm3d.client import RewardClient
from llm3d.config import load_config
from worker.demo_programs import OBJECTS, perturb

RESULTS = REPO / "benchmarks" / "results" / "select_bench.json"


def task_views() -> dict[str, list[bytes]]:
    """Each object's views (PNG bytes) from the default configuration's cameras."""
    from worker.execution.executor import Executor
    from worker.selection import Renderer

    config = load_config()
    renderer = Renderer(config.render)
    out: dict[str, list[bytes]] = {}
    try:
        with Executor(config.executor) as executor, tempfile.TemporaryDirectory() as tmp:
            for name, code in OBJECTS.items():
                result = executor.run(code)
                paths = renderer.render(result.vertices, result.faces, Path(tmp) / name)
                out[name] = [p.read_bytes() for p in paths]
    finally:
        renderer.close()
    return out


def groups(count: int, n: int, tag: str) -> tuple[list[dict[str, Any]], list[tuple[int, set[int]]]]:
    """``count`` groups of ``n`` distinct candidates; for each, where the true program is and
    which candidates build the true object (it, and its scaled copies)."""
    names = sorted(OBJECTS)
    out, truth = [], []
    for g in range(count):
        name = names[g % len(names)]
        others = [(OBJECTS[o], False) for o in names if o != name]
        copies = [(perturb(OBJECTS[name], 0.8 + 0.4 * k / max(1, n - 2)), True) for k in range(n)]
        candidates = (others + copies)[: n - 1]
        at = (3 * g + 1) % n
        candidates.insert(at, (OBJECTS[name], True))
        codes = [c + f"# {tag} {g} {i}\n" for i, (c, _) in enumerate(candidates)]
        out.append({"id": f"{tag}-{g}", "candidates": codes, "task_id": f"select/{name}"})
        truth.append((at, {i for i, (_, same) in enumerate(candidates) if same}))
    return out, truth


def bench_backend(
    backend: str, count: int, n: int, servers: int, redis_url: str, views: dict[str, list[bytes]]
) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix=f"select-bench-{backend}-") as tmp,
        service(backend, servers, redis_url, Path(tmp)) as url,
        RewardClient(url, retries=0, timeout=1800) as client,
    ):
        for name, png in views.items():
            client.add_task(f"select/{name}", {"code": OBJECTS[name]}, views=png)
        tag = uuid.uuid4().hex[:6]
        warm_groups, _ = groups(1, n, f"warm-{tag}")
        start = time.perf_counter()
        client.select_batch(warm_groups)
        warm_s = time.perf_counter() - start

        body, truth = groups(count, n, tag)
        start = time.perf_counter()
        answer = client.select_batch(body)
        wall = time.perf_counter() - start
        start = time.perf_counter()
        again = client.select_batch(body)
        cached_wall = time.perf_counter() - start

    candidates = [c for g in answer.results for c in g.candidates]
    assert all(c.cached for g in again.results for c in g.candidates)
    mean = {
        step: statistics.fmean(c.seconds[step] for c in candidates)
        for step in ("execute", "render", "match", "total")
    }
    picked = sum(g.best == t for g, (t, _) in zip(answer.results, truth, strict=True)) / count
    same = sum(g.best in s for g, (_, s) in zip(answer.results, truth, strict=True)) / count
    return {
        "backend": backend,
        "servers": servers,
        "groups": count,
        "candidates": len(candidates),
        "warm_up_s": round(warm_s, 3),
        "wall_s": round(wall, 3),
        "candidates_per_s": round(len(candidates) / wall, 3),
        **{f"{step}_s": round(value, 4) for step, value in mean.items()},
        "picked_true": round(picked, 3),
        "picked_true_object": round(same, 3),
        "api_overhead_ms_per_candidate": round(1000 * cached_wall / len(candidates), 3),
        "statuses": sorted({c.status.value for c in candidates}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="inline,celery")
    parser.add_argument("--groups", type=int, default=8)
    parser.add_argument("--n", type=int, default=8, help="candidates a group")
    parser.add_argument("--servers", type=int, default=2, help="fork servers / Celery workers")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    args = parser.parse_args()
    views = task_views()
    rows = [
        bench_backend(b, args.groups, args.n, args.servers, args.redis_url, views)
        for b in args.backends.split(",")
    ]
    table = Table(title=f"POST /select/batch: {args.groups} groups of {args.n} candidates")
    columns = [
        "backend",
        "candidates_per_s",
        "execute_s",
        "render_s",
        "match_s",
        "total_s",
        "warm_up_s",
        "picked_true",
        "picked_true_object",
        "api_overhead_ms_per_candidate",
    ]
    for column in columns:
        table.add_column(column.replace("_", " "), justify="right")
    for row in rows:
        table.add_row(*(str(row[c]) for c in columns))
    console.print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    console.print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
