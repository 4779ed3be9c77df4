"""Exact nearest-neighbour search for the metrics, fast also for far-off predictions.

A k-d tree answers a query quickly when the query lies near the data. When a prediction
is far from the ground truth (wrong scale, wrong place) many data points are almost
equally far from each query, the tree cannot prune, and a plain query degrades towards a
scan of all points (a tiny prediction at the centre of a spherical ground truth took
~55 s at 100 000 points). :class:`NearestIndex` therefore answers in two passes:

1. a **bounded** pass, ``distance_upper_bound`` = the largest F-score threshold, which
   resolves every query with a neighbour that close (the F-score-relevant ones) cheaply;
2. an **exact far pass** for the rest (see :func:`_far_nearest`): the k-d tree again for
   spread-out far points, a tree over directions seen from the queries
   (:mod:`worker.nearest_far`) for a compact group of them, where boxes cannot prune
   (a tiny prediction inside a sphere: 100 000 points in ~0.4 s instead of ~60 s).

Distances are recomputed in float64 from the coordinates of the pair found, so every
result is the exact squared Euclidean distance to the nearest point.
"""

from __future__ import annotations

import logging

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
        n = len(self._searched)
        if bound is None:
            _, found = self._tree.query(q, k=1)
            index = found.astype(np.int64)
        else:
            _, found = self._tree.query(q, k=1, distance_upper_bound=float(bound))
            index = found.astype(np.int64)
            far = index >= n
            if far.any():
                index[far] = _far_nearest(self._tree, self._searched, q[far])
        if self._first is not None:
            index = self._first[index]
        diff = q - self.points[index]
        with np.errstate(over="ignore"):
            d2 = np.einsum("ij,ij->i", diff, diff)
        return d2, index


#: Far queries more compact than this share of the data's extent use the direction tree,
COMPACT_RATIO = 0.25
#: and so do far queries separated from the data by this share of their own extent.
SEPARATED_RATIO = 0.5


def _far_nearest(tree: KDTree, points: FloatArray, queries: FloatArray) -> IntArray:
    """Exact nearest neighbours of the queries that have none within the first bound.

    A k-d tree prunes badly for queries near a centre of curvature of the data (a tiny
    prediction inside a spherical ground truth: ~60 s at 100 000 points) and, less so, for
    a group of queries far from the data (every leaf facing them is nearly as close).
    Such groups — a bounding box smaller than :data:`COMPACT_RATIO` of the data's, or
    separated from the data's box by :data:`SEPARATED_RATIO` of its own size — go to the
    direction tree of :mod:`worker.nearest_far`; far queries spread among the data (a
    wrong object) to the k-d tree, which is faster for them. Both are exact: the choice
    only changes the time.
    """
    if len(queries) >= 64:
        q_lo, q_hi = queries.min(axis=0), queries.max(axis=0)
        d_lo, d_hi = points.min(axis=0), points.max(axis=0)
        query_extent = float((q_hi - q_lo).max())
        data_extent = float((d_hi - d_lo).max())
        gap = float(np.linalg.norm(np.maximum(0.0, np.maximum(d_lo - q_hi, q_lo - d_hi))))
        if query_extent <= COMPACT_RATIO * data_extent or gap >= SEPARATED_RATIO * query_extent:
            from worker.nearest_far import far_nearest  # numba: loaded on first need

            logger.debug("%d far queries: compact or separated group, direction tree", len(queries))
            return far_nearest(points, queries)
    _, found = tree.query(queries, k=1)
    return np.asarray(found, dtype=np.int64)
