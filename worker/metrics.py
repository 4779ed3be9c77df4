"""Mesh comparison metrics of DESIGN §3 (plain Python, no Blender).

Everything is measured in the **ground-truth frame**: both meshes are translated by the
centre of the ground truth's axis-aligned box and scaled by 1 / (its longest side); the
prediction gets the ground truth's transform, so a wrong size or place is an error.
Points are sampled uniformly by area, seeded (:func:`worker.geometry.sampling.sample_surface`), the
ground truth and the prediction each from its **own** stream derived from the seed
(:func:`worker.geometry.sampling.stream_seed`), as the CAD papers do: an exact copy scores the
sampling floor, not 0, and a copy of the ground truth's tessellation gets no advantage.

The names of the metrics, everywhere::

    chamfer_l2, f_score_0.01, f_score_0.02, f_score_0.05, precision_0.05, recall_0.05,
    hausdorff_90, normal_consistency, chamfer_unit_x1000

Nearest neighbours are exact (pykdtree, float64). Each direction is queried in two
passes: a bounded pass (``distance_upper_bound``) that resolves the points near the other
surface cheaply, then an exact pass for the few far points (see :mod:`worker.geometry.nearest`).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from llm3d.config import MetricsConfig
from llm3d.exceptions import MeshError
from worker.geometry.nearest import NearestIndex
from worker.geometry.sampling import (
    Normalisation,
    SampleStream,
    SurfaceSample,
    as_mesh_arrays,
    box_normalisation,
    is_finite_mesh,
    sample_surface,
    stream_seed,
)

__all__ = [
    "METRIC_NAMES",
    "METRIC_STAGES",
    "PRIMARY_THRESHOLD",
    "GroundTruth",
    "GroundTruthCache",
    "compute_metrics",
    "empty_metrics",
    "exact_copy_f_score",
    "metric_names",
    "prepare_ground_truth",
    "wants_unit_chamfer",
]

logger = logging.getLogger(__name__)

PRIMARY_THRESHOLD = 0.05
DEFAULT_THRESHOLDS: tuple[float, ...] = (0.01, 0.02, 0.05)
METRIC_NAMES: tuple[str, ...] = (
    "chamfer_l2",
    "f_score_0.01",
    "f_score_0.02",
    "f_score_0.05",
    "precision_0.05",
    "recall_0.05",
    "hausdorff_90",
    "normal_consistency",
    "chamfer_unit_x1000",
)

FloatArray = npt.NDArray[np.float64]


def _tau_name(tau: float) -> str:
    return f"{tau:g}" if len(f"{tau:g}") > 3 else f"{tau:.2f}"


def metric_names(
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS, *, unit_chamfer: bool = True
) -> tuple[str, ...]:
    """The metric names for the given F-score thresholds (the default gives METRIC_NAMES).

    ``unit_chamfer=False`` leaves out ``chamfer_unit_x1000`` (see :func:`wants_unit_chamfer`).
    """
    taus = sorted(set(thresholds) | {PRIMARY_THRESHOLD})
    return (
        "chamfer_l2",
        *(f"f_score_{_tau_name(t)}" for t in taus),
        f"precision_{_tau_name(PRIMARY_THRESHOLD)}",
        f"recall_{_tau_name(PRIMARY_THRESHOLD)}",
        "hausdorff_90",
        "normal_consistency",
        *(("chamfer_unit_x1000",) if unit_chamfer else ()),
    )


def wants_unit_chamfer(config: MetricsConfig, points: int) -> bool:
    """Whether a score taken with ``points`` samples reports ``chamfer_unit_x1000``.

    DESIGN §3: the unit-cube Chamfer is an *evaluation* metric, for comparison with
    published CAD-reconstruction results; no reward uses it. It costs a second sample,
    k-d tree and pair of searches (about a fifth of a training reward's CPU), so with
    ``metrics.unit_chamfer: auto`` (the default) it is computed for evaluation-grade scores
    (at least ``metrics.eval_points`` samples) and left out of training rewards;
    ``always`` / ``never`` force it on or off.
    """
    if config.unit_chamfer == "always":
        return True
    if config.unit_chamfer == "never":
        return False
    return points >= config.eval_points


@dataclass(eq=False)
class GroundTruth:
    """A ground truth prepared for scoring: its frame, sample and search structures.

    Build it with :func:`prepare_ground_truth`; it is immutable in use and shared between
    threads (the search structures are read-only).

    Attributes
    ----------
    transform : Normalisation
        The GT frame: applied to the ground truth and to every prediction.
    sample : SurfaceSample
        ``points`` surface samples in the GT frame, with face normals (the
        ``GROUND_TRUTH`` stream of ``seed``).
    index : NearestIndex
        Exact nearest-neighbour search over ``sample.points``.
    unit_sample : SurfaceSample
        ``unit_cube_points`` samples in the GT's own unit cube (for ``chamfer_unit_x1000``;
        the ``GROUND_TRUTH_UNIT`` stream of ``seed``).
    unit_index : NearestIndex
    points, seed : int
        The sample size and seed it was built with (predictions use the same by default,
        and are sampled from the seed's ``PREDICTION`` streams).
    """

    transform: Normalisation
    sample: SurfaceSample
    index: NearestIndex
    unit_sample: SurfaceSample
    unit_index: NearestIndex
    points: int
    seed: int
    n_vertices: int = 0
    n_faces: int = 0
    #: threshold → :func:`exact_copy_f_score`, filled on first use
    floors: dict[float, float] = field(default_factory=dict, repr=False)

    @property
    def nbytes(self) -> int:
        """Memory it holds: samples, normals, the indices' arrays and their k-d trees.

        Arrays that share a buffer (an index over a sample's own points) count once.
        """
        arrays = [
            self.sample.points,
            self.sample.normals,
            self.unit_sample.points,
            self.unit_sample.normals,
            *self.index.arrays(),
            *self.unit_index.arrays(),
        ]
        buffers: dict[int, int] = {}
        for array in arrays:
            owner = array
            while isinstance(owner.base, np.ndarray):
                owner = owner.base
            buffers[id(owner)] = owner.nbytes
        return sum(buffers.values()) + self.index.tree_nbytes + self.unit_index.tree_nbytes


def prepare_ground_truth(
    vertices: npt.ArrayLike,
    faces: npt.ArrayLike,
    *,
    points: int = 10_000,
    seed: int = 0,
    unit_cube_points: int = 8192,
) -> GroundTruth:
    """Normalise, sample and index a ground-truth mesh once, for many predictions.

    Parameters
    ----------
    vertices : (n, 3) float
    faces : (m, 3) int
    points : int
        Surface samples (``metrics.train_points`` or ``metrics.eval_points``).
    seed : int
        Sampling seed; the ground truth is sampled from its ``GROUND_TRUTH`` and
        ``GROUND_TRUTH_UNIT`` streams (:func:`worker.geometry.sampling.stream_seed`).
    unit_cube_points : int
        Samples of the unit-cube Chamfer (8 192 by DESIGN §3).

    Raises
    ------
    MeshError
        When the ground truth is unusable: no faces with area, non-finite vertices, or a
        bounding box of zero size. A ground truth must be a real surface.
    """
    v, f = as_mesh_arrays(vertices, faces)
    if not is_finite_mesh(v):
        raise MeshError("the ground truth has non-finite (NaN or inf) vertices; fix the mesh")
    transform = box_normalisation(v)
    normalised = transform.apply(v)
    sample = sample_surface(
        normalised, f, points, stream_seed(seed, SampleStream.GROUND_TRUTH), by_face=True
    )
    if not np.any(sample.normals):
        raise MeshError(
            "the ground truth has no surface area (no face with positive area); "
            "a ground truth must be a triangle mesh with real faces"
        )
    unit_sample = sample_surface(
        normalised,
        f,
        unit_cube_points,
        stream_seed(seed, SampleStream.GROUND_TRUTH_UNIT),
        by_face=True,
    )
    return GroundTruth(
        transform=transform,
        sample=sample,
        index=NearestIndex(sample.points),
        unit_sample=unit_sample,
        unit_index=NearestIndex(unit_sample.points),
        points=points,
        seed=seed,
        n_vertices=len(v),
        n_faces=len(f),
    )


def exact_copy_f_score(gt: GroundTruth, threshold: float) -> float:
    """The F-score at ``threshold`` that an exact copy of the ground truth is expected to get:
    the share of its samples whose nearest *other* sample lies within ``threshold``.

    Two independent samplings of one surface see the same spacing, so this is the sampling
    floor of F@threshold for this ground truth at its sample size (it is far below 1 for a
    small threshold on a large or thin object). Computed from the ground truth alone, once
    per threshold (cached on it; about 5 ms at 10 000 points).
    """
    key = float(threshold)
    floor = gt.floors.get(key)
    if floor is None:
        from pykdtree.kdtree import KDTree

        points = np.ascontiguousarray(gt.sample.points, dtype=np.float64)
        if len(points) < 2:
            floor = 1.0
        else:
            distances, _ = KDTree(points).query(points, k=2)
            floor = float(np.mean(distances[:, 1] <= key))
        gt.floors[key] = floor
    return floor


class GroundTruthCache:
    """A bounded, thread-safe LRU of prepared ground truths (DESIGN §3: built once per task).

    Parameters
    ----------
    maxsize : int
        Ground truths kept; the least recently used is dropped beyond it.
    max_bytes : int, optional
        Memory they may hold together (:attr:`GroundTruth.nbytes`); the least recently
        used are dropped beyond it, the newest is always kept. A ground truth sampled at
        100 000 points holds ~6 MB, at 10 000 ~1 MB: without this bound, 256 evaluation
        ground truths would hold ~1.6 GB in every worker process.
    """

    def __init__(self, maxsize: int = 256, max_bytes: int | None = None) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, got {maxsize}")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._items: OrderedDict[Hashable, GroundTruth] = OrderedDict()
        self._building: dict[Hashable, threading.Lock] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def get_or_build(self, key: Hashable, builder: Callable[[], GroundTruth]) -> GroundTruth:
        """Return the cached ground truth for ``key``, building it with ``builder()`` once.

        Threads asking for the same missing key wait for one build instead of each
        building it; different keys build in parallel. An exception from ``builder``
        propagates and nothing is cached.
        """
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return found
            key_lock = self._building.setdefault(key, threading.Lock())
        with key_lock:  # building takes milliseconds to seconds: outside the cache lock
            with self._lock:
                found = self._items.get(key)
                if found is not None:  # another thread built it meanwhile
                    self._items.move_to_end(key)
                    self.hits += 1
                    return found
                self.misses += 1
            try:
                built = builder()
            except BaseException:
                with self._lock:
                    self._building.pop(key, None)
                raise
            # Stored and unmarked as building in one step: a thread arriving in between
            # would otherwise find neither and build the same key again.
            with self._lock:
                self._building.pop(key, None)
                replaced = self._items.pop(key, None)  # a rebuild after a failed build raced
                if replaced is not None:
                    self.nbytes -= replaced.nbytes
                self._items[key] = built
                self.nbytes += built.nbytes
                while len(self._items) > 1 and (
                    len(self._items) > self.maxsize
                    or (self.max_bytes is not None and self.nbytes > self.max_bytes)
                ):
                    _, dropped = self._items.popitem(last=False)
                    self.nbytes -= dropped.nbytes
        return built

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._items.clear()
            self.nbytes = 0


def empty_metrics(
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS, *, unit_chamfer: bool = True
) -> dict[str, float]:
    """The metrics of a prediction with no points: no overlap, infinite distances."""
    out: dict[str, float] = {}
    for name in metric_names(thresholds, unit_chamfer=unit_chamfer):
        if name.startswith(("chamfer", "hausdorff")):
            out[name] = math.inf
        else:
            out[name] = 0.0
    return out


def _f_score(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0.0 else 2.0 * precision * recall / (precision + recall)


def _mean(values: FloatArray) -> float:
    with np.errstate(over="ignore"):
        return float(np.mean(values))


def _nearest_from(
    index: NearestIndex, sample: SurfaceSample, bound: float
) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    """Nearest neighbours of a sample's points; coincident points are searched once."""
    if not sample.on_vertices:
        return index.nearest(sample.points, bound=bound)
    distinct, inverse = np.unique(sample.points, axis=0, return_inverse=True)
    d2, found = index.nearest(distinct, bound=bound)
    inverse = inverse.reshape(-1)
    return d2[inverse], found[inverse]


#: The stages :func:`compute_metrics` times into ``timings=`` (in the order they run).
METRIC_STAGES: tuple[str, ...] = (
    "sampling",
    "nearest_pred_to_gt",
    "index_pred",
    "nearest_gt_to_pred",
    "scores",
    "normal_consistency",
    "unit_chamfer",
)


class _StageClock:
    """Adds the seconds since the previous lap to ``timings[stage]`` (a no-op without it)."""

    __slots__ = ("_last", "_timings")

    def __init__(self, timings: dict[str, float] | None) -> None:
        self._timings = timings
        self._last = time.perf_counter() if timings is not None else 0.0

    def lap(self, stage: str) -> None:
        if self._timings is None:
            return
        now = time.perf_counter()
        self._timings[stage] = self._timings.get(stage, 0.0) + now - self._last
        self._last = now


def compute_metrics(
    vertices: npt.ArrayLike,
    faces: npt.ArrayLike,
    gt: GroundTruth,
    *,
    points: int | None = None,
    seed: int | None = None,
    thresholds: Sequence[float] | None = None,
    unit_chamfer: bool = True,
    timings: dict[str, float] | None = None,
) -> dict[str, float]:
    """Compare a predicted mesh with a prepared ground truth (DESIGN §3).

    Parameters
    ----------
    vertices : (n, 3) float
        The prediction, in its own world coordinates (it is put in the GT frame here).
    faces : (m, 3) int
    gt : GroundTruth
        From :func:`prepare_ground_truth` (usually through a :class:`GroundTruthCache`).
    points : int, optional
        Samples on the prediction; default ``gt.points``.
    seed : int, optional
        Sampling seed; default ``gt.seed``. The prediction is sampled from the seed's
        ``PREDICTION`` (and ``PREDICTION_UNIT``) stream, independent of the ground truth's
        sample: a mesh compared with itself scores the sampling floor (small, not 0), and
        the same seed always gives the same numbers.
    thresholds : sequence of float, optional
        F-score distances; default 0.01, 0.02, 0.05 (0.05 is always included).
    unit_chamfer : bool
        Also compute ``chamfer_unit_x1000`` (an evaluation metric: see
        :func:`wants_unit_chamfer`); when False the key is left out.
    timings : dict, optional
        When given, seconds spent per stage are added to it (the benchmarks' profile):
        ``sampling`` (the prediction), ``nearest_pred_to_gt``, ``index_pred`` (the
        prediction's k-d tree), ``nearest_gt_to_pred``, ``scores`` (Chamfer, F, Hausdorff),
        ``normal_consistency``, ``unit_chamfer`` (its own sample, tree and searches).

    Returns
    -------
    dict of str to float
        The flat mapping of :data:`METRIC_NAMES`. A prediction with no vertices gets
        :func:`empty_metrics` (F = 0, distances ``inf``). A prediction with no surface
        area (a point, a line) is sampled at its vertices, with zero normals.

    Raises
    ------
    MeshError
        For malformed arrays or non-finite vertices (the reward calls that `degenerate`).
    """
    taus = sorted(set(thresholds if thresholds is not None else DEFAULT_THRESHOLDS))
    if PRIMARY_THRESHOLD not in taus:
        taus = sorted([*taus, PRIMARY_THRESHOLD])
    if any(not (t > 0) for t in taus):
        raise ValueError(f"thresholds must be positive distances, got {taus}")
    v, f = as_mesh_arrays(vertices, faces)
    if len(v) == 0:
        return empty_metrics(taus, unit_chamfer=unit_chamfer)
    if not is_finite_mesh(v):
        raise MeshError("the prediction has non-finite (NaN or inf) vertices")
    n_points = gt.points if points is None else points
    sample_seed = gt.seed if seed is None else seed
    bound = max(taus)

    clock = _StageClock(timings)
    pred = sample_surface(
        gt.transform.apply(v),
        f,
        n_points,
        stream_seed(sample_seed, SampleStream.PREDICTION),
        by_face=True,
    )
    clock.lap("sampling")
    d2_pg, idx_pg = _nearest_from(gt.index, pred, bound)
    clock.lap("nearest_pred_to_gt")
    pred_index = NearestIndex(pred.points, deduplicate=pred.on_vertices)
    clock.lap("index_pred")
    d2_gp, idx_gp = pred_index.nearest(gt.sample.points, bound=bound)
    clock.lap("nearest_gt_to_pred")
    d_pg = np.sqrt(d2_pg)
    d_gp = np.sqrt(d2_gp)

    out: dict[str, float] = {"chamfer_l2": 0.5 * (_mean(d2_pg) + _mean(d2_gp))}
    for tau in taus:
        precision = float(np.count_nonzero(d_pg < tau)) / len(d_pg)
        recall = float(np.count_nonzero(d_gp < tau)) / len(d_gp)
        out[f"f_score_{_tau_name(tau)}"] = _f_score(precision, recall)
        if tau == PRIMARY_THRESHOLD:
            out[f"precision_{_tau_name(tau)}"] = precision
            out[f"recall_{_tau_name(tau)}"] = recall
    out["hausdorff_90"] = max(float(np.percentile(d_pg, 90)), float(np.percentile(d_gp, 90)))
    clock.lap("scores")
    nc_pg = np.abs(np.einsum("ij,ij->i", pred.normals, gt.sample.normals[idx_pg]))
    nc_gp = np.abs(np.einsum("ij,ij->i", gt.sample.normals, pred.normals[idx_gp]))
    out["normal_consistency"] = 0.5 * (float(nc_pg.mean()) + float(nc_gp.mean()))
    clock.lap("normal_consistency")
    if unit_chamfer:
        out["chamfer_unit_x1000"] = _unit_chamfer_x1000(v, f, gt, sample_seed)
        clock.lap("unit_chamfer")
    return {name: out[name] for name in metric_names(taus, unit_chamfer=unit_chamfer)}


def _unit_chamfer_x1000(
    vertices: FloatArray, faces: npt.NDArray[np.int64], gt: GroundTruth, seed: int
) -> float:
    """Each mesh in its own unit cube, ``len(gt.unit_sample)`` points, sum of the two means ×1000."""
    try:
        own = box_normalisation(vertices)
    except MeshError:
        # A single point has no box: it stays a point at the origin of the unit cube.
        x, y, z = (float(c) for c in vertices[0])
        own = Normalisation(centre=(x, y, z), scale=1.0)
    sample = sample_surface(
        own.apply(vertices),
        faces,
        len(gt.unit_sample),
        stream_seed(seed, SampleStream.PREDICTION_UNIT),
        by_face=True,
    )
    d2_pg, _ = _nearest_from(gt.unit_index, sample, 0.05)
    d2_gp, _ = NearestIndex(sample.points, deduplicate=sample.on_vertices).nearest(
        gt.unit_sample.points, bound=0.05
    )
    return 1000.0 * (_mean(d2_pg) + _mean(d2_gp))


def metrics_config_points(config: MetricsConfig, kind: str) -> int:
    """``config.train_points`` or ``config.eval_points`` for ``kind`` in {"train", "eval"}."""
    if kind == "train":
        return config.train_points
    if kind == "eval":
        return config.eval_points
    raise ValueError(f"kind must be 'train' or 'eval', got {kind!r}")
