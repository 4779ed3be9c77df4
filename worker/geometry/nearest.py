"""Exact nearest-neighbour search for the metrics, fast also for far-off predictions.

A k-d tree answers a query quickly when the query lies near the data. When a prediction
is far from the ground truth (wrong scale, wrong place) many data points are almost
equally far from each query, the tree cannot prune, and a plain query degrades towards a
scan of all points (a tiny prediction at the centre of a spherical ground truth took
~55 s at 100 000 points). :class:`NearestIndex` therefore answers in two passes:

1. a **bounded** pass, ``distance_upper_bound`` = the largest F-score threshold, which
   resolves every query with a neighbour that close (the F-score-relevant ones) cheaply;
2. an **exact far pass** for the rest (see :func:`_far_nearest`): the k-d tree again, or a
   tree over directions seen from the queries (:mod:`worker.geometry.nearest_far`), whichever
   answers a sample of them faster; the direction tree stays fast where boxes cannot
   prune (a tiny prediction inside a sphere: 100 000 points in ~0.4 s instead of ~60 s).

When most queries are far (a wrong object, what RL sends most early on) and none of them
form a shape the direction tree is for, the bounded pass is skipped: a probe of every
16th query decides, and one unbounded k-d tree pass answers all (the bounded pass would
cost almost as much as answering them and the far pass would answer them again).

Distances are recomputed in float64 from the coordinates of the pair found, so every
result is the exact squared Euclidean distance to the nearest point.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import numpy.typing as npt
from pykdtree.kdtree import KDTree

__all__ = ["NearestIndex"]

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class NearestIndex:
    """Exact nearest neighbours among a fixed ``(n, 3)`` point set.

    Parameters
    ----------
    points : (n, 3) float
        The data; copied to a contiguous float64 array. May be empty.
    leafsize : int
        Leaf size of the k-d tree.
    deduplicate : bool
        Search only distinct points (for data with many coincident points); the index
        returned is then that of the first occurrence.
    """

    def __init__(
        self, points: npt.ArrayLike, *, leafsize: int = 16, deduplicate: bool = False
    ) -> None:
        self.points: FloatArray = np.ascontiguousarray(points, dtype=np.float64).reshape(-1, 3)
        # Many coincident points are exact ties that no tree can prune (a point-like
        # prediction sampled at its few vertices): search the distinct ones only.
        self._first: IntArray | None = None
        searched = self.points
        if deduplicate and len(self.points):
            searched, first = np.unique(self.points, axis=0, return_index=True)
            self._first = first.astype(np.int64)
        self._searched: FloatArray = np.ascontiguousarray(searched)
        self._tree = KDTree(self._searched, leafsize=leafsize) if len(self._searched) else None

    def __len__(self) -> int:
        return int(self.points.shape[0])

    def arrays(self) -> list[npt.NDArray[np.generic]]:
        """The numpy arrays it holds (they may share memory with the caller's)."""
        held: list[npt.NDArray[np.generic]] = [self.points, self._searched]
        if self._first is not None:
            held.append(self._first)
        return held

    @property
    def tree_nbytes(self) -> int:
        """The k-d tree's own memory (C structures numpy does not see), estimated.

        pykdtree keeps a 4-byte index per point and a node of ~64 bytes per 8 points.
        """
        return len(self._searched) * (4 + 8)

    def _bounded_then_far(self, q: FloatArray, bound: float) -> IntArray:
        """Nearest neighbours by the two passes, or in one when most queries are far.

        A bounded query of a far point costs nearly as much as answering it, and the far
        pass then answers it again: for a wrong object (most points far, none of the
        shapes the direction tree is for) one unbounded k-d tree pass is cheaper. Every
        ``ONE_PASS_PROBE_STRIDE``-th query is asked bounded first; when at least
        ``ONE_PASS_FAR_SHARE`` of them are far and the k-d tree answers far ones quickly
        (the same test as :func:`_far_nearest`'s), every query is answered unbounded;
        otherwise the probe's answers are kept and the others asked bounded. Exact either
        way: only the time differs.
        """
        n = len(self._searched)
        tree = self._tree
        assert tree is not None
        index: IntArray
        if len(q) < ONE_PASS_MIN_QUERIES:
            _, found = tree.query(q, k=1, distance_upper_bound=bound)
            index = np.asarray(found, dtype=np.int64)
        else:
            probe = np.ascontiguousarray(q[::ONE_PASS_PROBE_STRIDE])
            _, probe_found = tree.query(probe, k=1, distance_upper_bound=bound)
            far_probe = probe_found >= n
            if far_probe.mean() >= ONE_PASS_FAR_SHARE and _kd_is_fast_for(
                tree, self._searched, probe[far_probe]
            ):
                _, found = tree.query(q, k=1)
                return np.asarray(found, dtype=np.int64)
            index = np.empty(len(q), dtype=np.int64)
            index[::ONE_PASS_PROBE_STRIDE] = probe_found
            rest = np.ones(len(q), dtype=bool)
            rest[::ONE_PASS_PROBE_STRIDE] = False
            _, found = tree.query(np.ascontiguousarray(q[rest]), k=1, distance_upper_bound=bound)
            index[rest] = found
        far = index >= n
        if far.any():
            index[far] = _far_nearest(tree, self._searched, q[far])
        return index

    def nearest(
        self, queries: npt.ArrayLike, *, bound: float | None = None
    ) -> tuple[FloatArray, IntArray]:
        """Squared distance to, and index of, the nearest data point of each query.

        Parameters
        ----------
        queries : (q, 3) float
        bound : float, optional
            Distance of the first, bounded pass; queries without a neighbour that close
            go to the exact far pass. ``None`` queries everything unbounded.

        Returns
        -------
        d2 : (q,) float64
            Exact squared distances (``inf`` for every query when the index is empty).
        index : (q,) int64
            Index into ``points`` (``-1`` when the index is empty).
        """
        q = np.ascontiguousarray(queries, dtype=np.float64).reshape(-1, 3)
        if self._tree is None:
            return np.full(len(q), np.inf), np.full(len(q), -1, dtype=np.int64)
        if len(q) == 0:
            return np.zeros(0), np.zeros(0, dtype=np.int64)
        if bound is None:
            _, found = self._tree.query(q, k=1)
            index = found.astype(np.int64)
        else:
            index = self._bounded_then_far(q, float(bound))
        if self._first is not None:
            index = self._first[index]
        diff = q - self.points[index]
        with np.errstate(over="ignore"):
            d2 = np.einsum("ij,ij->i", diff, diff)
        return d2, index


#: Queries of at least this many go through the one-pass test of
#: :meth:`NearestIndex._bounded_then_far`: every ``ONE_PASS_PROBE_STRIDE``-th is probed,
#: and when ``ONE_PASS_FAR_SHARE`` of those are far, all are answered in one pass.
ONE_PASS_MIN_QUERIES = 2048
ONE_PASS_PROBE_STRIDE = 16
ONE_PASS_FAR_SHARE = 0.25

#: Fewer far queries than this go straight to the k-d tree.
MIN_FAR_FOR_CHOICE = 256
#: Far queries whose extent and the data's differ by this factor or more, or that are
#: separated from the data by half their own extent, go to the direction tree.
SIZE_RATIO = 4.0
SEPARATION = 0.5
#: Otherwise a sample of this many far queries is timed with the k-d tree ...
PROBE_SIZE = 64
#: ... and only when it takes longer than this is the direction tree built and compared.
FAST_KD_PROBE_S = 5e-3


def _prefer_direction_tree(kd_time: float, direction_time: float) -> bool:
    """Whether the direction tree answered the probe clearly (2×) faster than the k-d tree."""
    return 2.0 * direction_time < kd_time


def _direction_tree_geometry(points: FloatArray, queries: FloatArray) -> bool:
    """Far queries that form a small group amid large data (or a large one around small
    data), or a group beside the data: the cases the direction tree is built for."""
    q_lo, q_hi = queries.min(axis=0), queries.max(axis=0)
    d_lo, d_hi = points.min(axis=0), points.max(axis=0)
    query_extent = float((q_hi - q_lo).max())
    data_extent = float((d_hi - d_lo).max())
    gap = float(np.linalg.norm(np.maximum(0.0, np.maximum(d_lo - q_hi, q_lo - d_hi))))
    small, large = sorted((query_extent, data_extent))
    return small * SIZE_RATIO <= large or gap >= SEPARATION * query_extent


def _kd_is_fast_for(tree: KDTree, points: FloatArray, far_queries: FloatArray) -> bool:
    """Whether the k-d tree answers these far queries quickly: not a shape the direction
    tree is for, and a probe of them answered within ``FAST_KD_PROBE_S``."""
    if len(far_queries) == 0:
        return True
    if _direction_tree_geometry(points, far_queries):
        return False
    probe = np.ascontiguousarray(
        far_queries[:: max(1, len(far_queries) // PROBE_SIZE)][:PROBE_SIZE]
    )
    start = time.perf_counter()
    tree.query(probe, k=1)
    return time.perf_counter() - start <= FAST_KD_PROBE_S * len(probe) / PROBE_SIZE


def _far_nearest(tree: KDTree, points: FloatArray, queries: FloatArray) -> IntArray:
    """Exact nearest neighbours of the queries that have none within the first bound.

    A k-d tree prunes badly for queries near a centre of curvature of the data (a tiny
    prediction inside a spherical ground truth: ~60 s at 100 000 points; the ground truth
    inside a huge sphere) and for a group of queries far from the data. The direction
    tree of :mod:`worker.geometry.nearest_far` is fast there, but slower than the k-d tree for far
    queries spread among the data (a wrong object). So groups of those shapes go to the
    direction tree; for the others a sample is timed with the k-d tree, and only when it
    is slow is the direction tree built, timed on the same sample and used if clearly
    faster. Both trees are exact: the choice (which may depend on timing) only changes the
    time, never the result.
    """
    m = len(queries)
    if m < MIN_FAR_FOR_CHOICE:
        _, found = tree.query(queries, k=1)
        return np.asarray(found, dtype=np.int64)
    from worker.geometry.nearest_far import DirectionTree  # numba: loaded on first need

    centre = (queries.min(axis=0) + queries.max(axis=0)) / 2.0
    if _direction_tree_geometry(points, queries):
        logger.debug("%d far queries: compact, surrounding or separated: direction tree", m)
        return DirectionTree(points, centre).query(queries)
    probe = queries[:: max(1, m // PROBE_SIZE)][:PROBE_SIZE]
    start = time.perf_counter()
    tree.query(probe, k=1)
    kd_time = time.perf_counter() - start
    if kd_time > FAST_KD_PROBE_S:
        direction_tree = DirectionTree(points, centre)
        start = time.perf_counter()
        direction_tree.query(probe)
        direction_time = time.perf_counter() - start
        if _prefer_direction_tree(kd_time, direction_time):
            logger.debug(
                "%d far queries: direction tree (probe %.2f ms vs k-d %.2f ms)",
                m,
                direction_time * 1e3,
                kd_time * 1e3,
            )
            return direction_tree.query(queries)
    _, found = tree.query(queries, k=1)
    return np.asarray(found, dtype=np.int64)
