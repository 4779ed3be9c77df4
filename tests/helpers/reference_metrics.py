"""A plain, obviously-correct implementation of DESIGN §3 on scipy's cKDTree.

It scores the *same samples* as :func:`worker.metrics.compute_metrics` (the ground truth's
cached sample and the prediction sampled from the seed's prediction streams), so the two
must agree to rounding. Used by the tests and by ``benchmarks/metrics_bench.py`` as the baseline.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.spatial import cKDTree

from worker.geometry.sampling import (
    Normalisation,
    SampleStream,
    SurfaceSample,
    box_normalisation,
    sample_surface,
    stream_seed,
)
from worker.metrics import GroundTruth


def _directional(a: SurfaceSample, b: SurfaceSample) -> tuple[np.ndarray, np.ndarray]:
    """Nearest distance from each point of ``a`` to ``b`` and |n_a · n_nearest|."""
    distance, index = cKDTree(b.points).query(a.points, k=1)
    return distance, np.abs((a.normals * b.normals[index]).sum(axis=1))


def reference_metrics(
    vertices: npt.ArrayLike,
    faces: npt.ArrayLike,
    gt: GroundTruth,
    *,
    points: int | None = None,
    seed: int | None = None,
) -> dict[str, float]:
    """The nine metrics, computed the plain way with one unbounded cKDTree query each."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    seed = gt.seed if seed is None else seed
    pred_stream = stream_seed(seed, SampleStream.PREDICTION)
    pred = sample_surface(gt.transform.apply(v), f, points or gt.points, pred_stream)
    d_pg, n_pg = _directional(pred, gt.sample)
    d_gp, n_gp = _directional(gt.sample, pred)
    out = {"chamfer_l2": 0.5 * (np.mean(d_pg**2) + np.mean(d_gp**2))}
    for tau in (0.01, 0.02, 0.05):
        p, r = np.mean(d_pg < tau), np.mean(d_gp < tau)
        out[f"f_score_{tau:.2f}"] = 0.0 if p + r == 0 else 2 * p * r / (p + r)
        if tau == 0.05:
            out["precision_0.05"], out["recall_0.05"] = p, r
    out["hausdorff_90"] = max(np.percentile(d_pg, 90), np.percentile(d_gp, 90))
    out["normal_consistency"] = 0.5 * (n_pg.mean() + n_gp.mean())
    try:
        own = box_normalisation(v)
    except ValueError:
        own = Normalisation(centre=tuple(v[0]), scale=1.0)  # type: ignore[arg-type]
    unit_stream = stream_seed(seed, SampleStream.PREDICTION_UNIT)
    unit = sample_surface(own.apply(v), f, len(gt.unit_sample), unit_stream)
    u_pg, _ = _directional(unit, gt.unit_sample)
    u_gp, _ = _directional(gt.unit_sample, unit)
    out["chamfer_unit_x1000"] = 1000.0 * (np.mean(u_pg**2) + np.mean(u_gp**2))
    return {k: float(val) for k, val in out.items()}
