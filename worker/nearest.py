"""Exact nearest-neighbour search for the metrics, fast also for far-off predictions.

A k-d tree answers a query quickly when the query lies near the data. When a prediction
is far from the ground truth (wrong scale, wrong place) many data points are almost
equally far from each query, the tree cannot prune, and a plain query degrades towards a
scan of all points (a tiny prediction at the centre of a spherical ground truth took
~55 s at 100 000 points). :class:`NearestIndex` therefore answers in two passes:

1. a **bounded** pass, ``distance_upper_bound`` = the largest F-score threshold, which
   resolves every query with a neighbour that close (the F-score-relevant ones) cheaply;
2. an **exact far pass** for the rest (see :func:`_far_nearest`): the k-d tree again when a
   timed probe says it is fast, else a tree over directions seen from the queries
   (:mod:`worker.nearest_far`), which stays fast where boxes cannot prune (a tiny
   prediction inside a sphere: 100 000 points in ~0.4 s instead of ~60 s).

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
    """

    def __init__(self, points: npt.ArrayLike, *, leafsize: int = 16) -> None:
        self.points: FloatArray = np.ascontiguousarray(points, dtype=np.float64).reshape(-1, 3)
        self._tree = KDTree(self.points, leafsize=leafsize) if len(self.points) else None

    def __len__(self) -> int:
        return int(self.points.shape[0])

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
        n = len(self.points)
        if bound is None:
            _, found = self._tree.query(q, k=1)
            index = found.astype(np.int64)
        else:
            _, found = self._tree.query(q, k=1, distance_upper_bound=float(bound))
            index = found.astype(np.int64)
            far = index >= n
            if far.any():
                index[far] = _far_nearest(self._tree, self.points, q[far])
        diff = q - self.points[index]
        with np.errstate(over="ignore"):
            d2 = np.einsum("ij,ij->i", diff, diff)
        return d2, index


#: Far queries answered by the k-d tree on a sample first, to time it.
PROBE_SIZE = 64
#: Cost model of the direction tree (seconds per data point to build, per query to answer).
DIRECTION_TREE_BUILD_S = 1e-6
DIRECTION_TREE_QUERY_S = 3e-6


def _far_nearest(tree: KDTree, points: FloatArray, queries: FloatArray) -> IntArray:
    """Exact nearest neighbours of the queries that have none within the first bound.

    Usually the k-d tree answers these quickly too. When the prediction sits near the
    centre of a curved ground truth (or the other way round) it degrades to a scan of all
    points per query, so a spread-out sample of the queries is timed first; if the
    extrapolated time beats the cost model of :func:`worker.nearest_far.far_nearest`, the
    k-d tree answers the rest, else the direction tree does. Both are exact: only the time
    depends on the choice.
    """
    m = len(queries)
    if m <= PROBE_SIZE:
        _, found = tree.query(queries, k=1)
        return np.asarray(found, dtype=np.int64)
    step = m // PROBE_SIZE
    probe = np.arange(0, step * PROBE_SIZE, step)
    start = time.perf_counter()
    tree.query(queries[probe], k=1)
    elapsed = time.perf_counter() - start
    estimate = elapsed * m / PROBE_SIZE
    direction_tree = DIRECTION_TREE_BUILD_S * len(points) + DIRECTION_TREE_QUERY_S * m
    if estimate <= direction_tree:
        _, found = tree.query(queries, k=1)
        return np.asarray(found, dtype=np.int64)
    from worker.nearest_far import far_nearest  # numba: imported (and compiled) on first need

    logger.debug(
        "far queries: k-d tree ~%.3fs for %d, direction tree instead (~%.3fs)",
        estimate,
        m,
        direction_tree,
    )
    return far_nearest(points, queries)
