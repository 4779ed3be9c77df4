"""Benchmark of the metrics (DESIGN §3) and of the renderer, against a plain implementation.

For each case (a typical near miss, a wrong object, a far-off one, and the worst cases: a
tiny prediction inside a spherical ground truth and a sphere inside a huge one) and for
10 000 and 100 000 points it measures, per prediction:

* ``ours cached``: :func:`worker.metrics.compute_metrics` with the ground truth prepared,
* ``ours uncached``: :func:`prepare_ground_truth` + :func:`compute_metrics`,
* ``scipy``: the plain cKDTree implementation (``tests/helpers/reference_metrics.py``) on
  the same samples, its ratio to ``ours cached``, and the largest relative difference of
  the nine metrics between the two (must be ≤ 1e-6).

Then the render time of 4 views at 256² of a 10-part object (Workbench, warm process).

Targets (2-core CPU): 10k points < 20 ms and 100k < 300 ms per prediction with the ground
truth cached; 4 views < 250 ms.

Run: ``python benchmarks/metrics_bench.py`` (``--quick`` estimates the plain baseline of
the two worst cases at 100k from 2 % of its queries instead of waiting minutes for it).
Writes ``benchmarks/results/metrics_bench.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from scipy.spatial import cKDTree  # noqa: E402

from tests.helpers import meshes  # noqa: E402
from tests.helpers.reference_metrics import reference_metrics  # noqa: E402
from worker.metrics import METRIC_NAMES, compute_metrics, prepare_ground_truth  # noqa: E402
from worker.sampling import SampleStream, sample_surface, stream_seed  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "metrics_bench.json"
WORST = {"tiny_inside_sphere", "sphere_inside_huge"}


def cases() -> dict[str, tuple[meshes.Mesh, meshes.Mesh]]:
    """name → (ground truth, prediction)."""
    parts = meshes.parts_object(10, seed=0)
    near = (parts[0] * 1.02 + np.array([0.03, -0.02, 0.01]), parts[1])
    sphere = meshes.sphere(0.5, 4)
    return {
        "typical_near_miss": (parts, near),
        "wrong_object": (parts, meshes.parts_object(10, seed=1)),
        "far_translated": (parts, (parts[0] + np.array([8.0, 3.0, -2.0]), parts[1])),
        "tiny_inside_sphere": (sphere, (sphere[0] * 0.01, sphere[1])),
        "sphere_inside_huge": (sphere, (sphere[0] * 20.0, sphere[1])),
    }


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median wall time of ``repeat`` calls, and the last result."""
    times = []
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def max_relative_difference(a: dict[str, float], b: dict[str, float]) -> float:
    worst = 0.0
    for name in METRIC_NAMES:
        x, y = a[name], b[name]
        scale = max(abs(x), abs(y))
        if scale > 0:
            worst = max(worst, abs(x - y) / scale)
    return worst


def estimated_baseline(pred: meshes.Mesh, gt: Any, fraction: float) -> float:
    """Seconds the plain implementation would take, from a fraction of its queries."""
    v, f = np.asarray(pred[0], dtype=np.float64), pred[1]
    stream = stream_seed(gt.seed, SampleStream.PREDICTION)
    sample = sample_surface(gt.transform.apply(v), f, gt.points, stream)
    total = 0.0
    for data, queries in ((gt.sample.points, sample.points), (sample.points, gt.sample.points)):
        start = time.perf_counter()
        tree = cKDTree(data)
        total += time.perf_counter() - start
        part = queries[:: int(1 / fraction)]
        start = time.perf_counter()
        tree.query(part, k=1)
        total += (time.perf_counter() - start) * len(queries) / len(part)
    return total


def bench_metrics(
    points: list[int], repeat: int, quick: bool, console: Console
) -> list[dict[str, Any]]:
    rows = []
    compute_metrics(*meshes.unit_cube(), prepare_ground_truth(*meshes.unit_cube(), points=200))
    for n in points:
        for name, (gt_mesh, pred) in cases().items():
            console.log(f"{name} at {n} points")
            gt = prepare_ground_truth(*gt_mesh, points=n, seed=0)
            reps = 1 if name in WORST and n >= 100_000 else repeat
            compute_metrics(*pred, gt)  # warm (numba load, caches)
            cached, ours = timed(lambda gt=gt, pred=pred: compute_metrics(*pred, gt), reps)
            uncached, _ = timed(
                lambda gt_mesh=gt_mesh, pred=pred, n=n: compute_metrics(
                    *pred, prepare_ground_truth(*gt_mesh, points=n, seed=0)
                ),
                reps,
            )
            if quick and name in WORST and n >= 100_000:
                baseline, agreement = estimated_baseline(pred, gt, 0.02), None
            else:
                baseline, ref = timed(lambda gt=gt, pred=pred: reference_metrics(*pred, gt), 1)
                agreement = max_relative_difference(ours, ref)
            rows.append(
                {
                    "case": name,
                    "points": n,
                    "ours_cached_s": cached,
                    "ours_uncached_s": uncached,
                    "scipy_s": baseline,
                    "scipy_estimated": agreement is None,
                    "speedup": baseline / cached,
                    "max_rel_diff": agreement,
                    "agree_1e-6": None if agreement is None else agreement <= 1e-6,
                    "f_score_0.05": ours["f_score_0.05"],
                }
            )
    return rows


def bench_render(repeat: int) -> dict[str, Any]:
    from llm3d.config import RenderConfig
    from worker.render import render_views

    vertices, faces = meshes.parts_object(10, seed=0)
    out = ROOT / "benchmarks" / "results" / "render_views"
    config = RenderConfig()
    render_views(vertices, faces, out, config=config)  # first render starts the GL context
    seconds, paths = timed(lambda: render_views(vertices, faces, out, config=config), repeat)
    return {
        "object": "10 parts",
        "faces": len(faces),
        "views": len(paths),
        "resolution": config.resolution,
        "engine": config.engine,
        "aa": config.workbench_aa,
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="estimate the slowest baselines")
    parser.add_argument("--no-render", action="store_true")
    args = parser.parse_args()
    console = Console(width=150)

    rows = bench_metrics(args.points, args.repeat, args.quick, console)
    table = Table(title="metrics per prediction (median wall time)")
    for column in (
        "case",
        "points",
        "ours cached",
        "ours uncached",
        "plain scipy",
        "speedup",
        "max rel diff",
        "F@0.05",
    ):
        table.add_column(column, justify="right" if column != "case" else "left")
    for r in rows:
        diff = "n/a (est.)" if r["max_rel_diff"] is None else f"{r['max_rel_diff']:.1e}"
        table.add_row(
            r["case"],
            f"{r['points']:,}",
            f"{r['ours_cached_s'] * 1000:.1f} ms",
            f"{r['ours_uncached_s'] * 1000:.1f} ms",
            f"{r['scipy_s'] * 1000:.1f} ms" + (" (est.)" if r["scipy_estimated"] else ""),
            f"{r['speedup']:.1f}x",
            diff,
            f"{r['f_score_0.05']:.3f}",
        )
    console.print(table)
    result: dict[str, Any] = {"metrics": rows}
    if not args.no_render:
        render = bench_render(args.repeat)
        result["render"] = render
        console.print(
            f"render: {render['views']} views at {render['resolution']}² of a {render['object']} "
            f"object ({render['faces']} triangles, {render['engine']}, AA {render['aa']}): "
            f"{render['seconds'] * 1000:.0f} ms (median of {args.repeat})"
        )
    bad = [r for r in rows if r["agree_1e-6"] is False]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    console.print(f"wrote {RESULTS.relative_to(ROOT)}")
    if bad:
        console.print(f"[bold red]{len(bad)} cases disagree with the plain implementation[/]")
        sys.exit(1)


if __name__ == "__main__":
    main()
