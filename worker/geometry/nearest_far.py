"""Exact nearest neighbours for queries far from the data: a tree over directions.

Why a plain k-d tree is slow here: its nodes are boxes in space. Seen from a query near
the centre of a curved shell (a tiny prediction inside a spherical ground truth, or the
ground truth inside a huge prediction), every box of the shell reaches inward past the
best distance found, nothing is pruned, and each query scans every point — O(n·m).

This module indexes the data *as seen from the queries' centre* ``c``: every point ``g``
becomes a direction ``u = (g - c) / |g - c|`` and a range ``r = |g - c|``, and a k-d tree is
built over the directions. A node knows the cone holding its directions (axis ``v``, half
angle ``α``) and its range interval ``[r0, r1]``; for a query ``q' = q - c`` at angle ``θ``
from ``v`` the exact lower bound of the squared distance to any point of the node is::

    min over r in [r0, r1] of  r² - 2 r |q'| cos(max(0, θ - α)) + |q'|²

which is tight for shells around ``c`` (``r0 ≈ r1``) and for data far from ``c`` (small
cones), exactly the cases where boxes fail. The search is the usual depth-first,
closer-child-first descent with pruning; leaf distances are computed exactly from the
Cartesian coordinates, and a node is pruned only when its bound exceeds the best distance by
more than a rounding margin, so the result is the exact nearest neighbour.

Compiled with numba (cached on disk); the queries run in parallel.
"""

from __future__ import annotations

import math
import threading

import numba
import numpy as np
import numpy.typing as npt

__all__ = ["DirectionTree", "far_nearest", "warm_up"]

LEAF_SIZE = 32
# numba's default (workqueue) threading layer aborts the process when two Python threads
# launch parallel kernels at once; the API scores from many threads, so calls take turns.
_PARALLEL_LOCK = threading.Lock()
_SLACK = 1e-12  # rounding margin of a bound, relative to its largest term


@numba.njit(cache=True)
def _build(
    u: npt.NDArray[np.float64], r: npt.NDArray[np.float64], leaf_size: int
) -> tuple[
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
]:  # pragma: no cover - compiled
    """Build the direction tree.

    Returns ``perm`` (point order), ``nodes`` (k, 4) int: start, end, left, right (-1 for
    leaves), ``cone`` (k, 5): axis v (3), cos α, sin α, and ``ranges`` (k, 2): r0, r1.
    """
    n = u.shape[0]
    perm = np.arange(n)
    max_nodes = 2 * (n // max(1, leaf_size // 2) + 1) + 1
    nodes = np.full((max_nodes, 4), -1, dtype=np.int64)
    cone = np.zeros((max_nodes, 5))
    ranges = np.zeros((max_nodes, 2))
    stack = np.zeros(max_nodes, dtype=np.int64)
    count = 1
    nodes[0, 0] = 0
    nodes[0, 1] = n
    top = 1
    stack[0] = 0
    while top > 0:
        top -= 1
        node = stack[top]
        start = nodes[node, 0]
        end = nodes[node, 1]
        # bounds of the node: mean direction, widest angle, range interval
        vx = 0.0
        vy = 0.0
        vz = 0.0
        r0 = np.inf
        r1 = 0.0
        lo = np.full(3, np.inf)
        hi = np.full(3, -np.inf)
        for k in range(start, end):
            i = perm[k]
            vx += u[i, 0]
            vy += u[i, 1]
            vz += u[i, 2]
            r0 = min(r0, r[i])
            r1 = max(r1, r[i])
            for d in range(3):
                lo[d] = min(lo[d], u[i, d])
                hi[d] = max(hi[d], u[i, d])
        norm = math.sqrt(vx * vx + vy * vy + vz * vz)
        if norm > 1e-12:
            vx /= norm
            vy /= norm
            vz /= norm
            cos_a = 1.0
            for k in range(start, end):
                i = perm[k]
                cos_a = min(cos_a, u[i, 0] * vx + u[i, 1] * vy + u[i, 2] * vz)
        else:  # directions cancel out: the cone is the whole sphere
            vx, vy, vz, cos_a = 1.0, 0.0, 0.0, -1.0
        cos_a = max(-1.0, min(1.0, cos_a))
        cone[node, 0] = vx
        cone[node, 1] = vy
        cone[node, 2] = vz
        cone[node, 3] = cos_a
        cone[node, 4] = math.sqrt(max(0.0, 1.0 - cos_a * cos_a))
        ranges[node, 0] = r0
        ranges[node, 1] = r1
        if end - start <= leaf_size:
            continue
        dim = 0
        for d in range(1, 3):
            if hi[d] - lo[d] > hi[dim] - lo[dim]:
                dim = d
        # split at the median along dim in O(n): values below it, then ties, then above
        mid = start + (end - start) // 2
        segment = perm[start:end].copy()
        values = u[segment, dim]
        median = np.partition(values.copy(), mid - start)[mid - start]
        k = start
        for j in range(segment.shape[0]):
            if values[j] < median:
                perm[k] = segment[j]
                k += 1
        for j in range(segment.shape[0]):
            if values[j] == median:
                perm[k] = segment[j]
                k += 1
        for j in range(segment.shape[0]):
            if values[j] > median:
                perm[k] = segment[j]
                k += 1
        left = count
        right = count + 1
        count += 2
        nodes[node, 2] = left
        nodes[node, 3] = right
        nodes[left, 0] = start
        nodes[left, 1] = mid
        nodes[right, 0] = mid
        nodes[right, 1] = end
        stack[top] = left
        stack[top + 1] = right
        top += 2
    return perm, nodes[:count], cone[:count], ranges[:count]


@numba.njit(inline="always")
def _bound(
    node: int,
    qx: float,
    qy: float,
    qz: float,
    qn: float,
    cone: npt.NDArray[np.float64],
    ranges: npt.NDArray[np.float64],
) -> float:  # pragma: no cover - compiled
    """Lower bound of the squared distance from q' (norm qn) to any point of ``node``,
    less a rounding margin (so it never exceeds the true minimum)."""
    if qn > 0.0:
        cos_t = (qx * cone[node, 0] + qy * cone[node, 1] + qz * cone[node, 2]) / qn
        cos_t = max(-1.0, min(1.0, cos_t))
        cos_a = cone[node, 3]
        if cos_t >= cos_a:  # the query's direction is inside the cone
            cos_best = 1.0
        else:
            sin_t = math.sqrt(max(0.0, 1.0 - cos_t * cos_t))
            cos_best = cos_t * cos_a + sin_t * cone[node, 4]
        k = qn * cos_best
    else:
        k = 0.0
    r0 = float(ranges[node, 0])
    r1 = float(ranges[node, 1])
    r = min(max(k, r0), r1)
    # minus a rounding margin: the terms are up to (r1 + |q'|)² and may cancel
    extent = r1 + qn
    return r * r - 2.0 * r * k + qn * qn - _SLACK * extent * extent


@numba.njit(parallel=True, cache=True)
def _query(
    queries: npt.NDArray[np.float64],
    centre: npt.NDArray[np.float64],
    points: npt.NDArray[np.float64],
    perm: npt.NDArray[np.int64],
    nodes: npt.NDArray[np.int64],
    cone: npt.NDArray[np.float64],
    ranges: npt.NDArray[np.float64],
) -> npt.NDArray[np.int64]:  # pragma: no cover - compiled
    m = queries.shape[0]
    out = np.empty(m, dtype=np.int64)
    depth = 2 * 64 + 4
    for j in numba.prange(m):
        px = queries[j, 0]
        py = queries[j, 1]
        pz = queries[j, 2]
        qx = px - centre[0]
        qy = py - centre[1]
        qz = pz - centre[2]
        qn = math.sqrt(qx * qx + qy * qy + qz * qz)
        best = np.inf
        best_i = -1
        stack = np.empty(depth, dtype=np.int64)
        bounds = np.empty(depth)
        top = 1
        stack[0] = 0
        bounds[0] = 0.0
        while top > 0:
            top -= 1
            node = stack[top]
            if bounds[top] > best:
                continue
            left = nodes[node, 2]
            if left < 0:
                for k in range(nodes[node, 0], nodes[node, 1]):
                    i = perm[k]
                    dx = px - points[i, 0]
                    dy = py - points[i, 1]
                    dz = pz - points[i, 2]
                    d2 = dx * dx + dy * dy + dz * dz
                    if d2 < best or best_i < 0:
                        best = d2
                        best_i = i
                continue
            right = nodes[node, 3]
            b_left = _bound(left, qx, qy, qz, qn, cone, ranges)
            b_right = _bound(right, qx, qy, qz, qn, cone, ranges)
            # push the farther child first, so the closer one is searched first
            if b_left <= b_right:
                stack[top] = right
                bounds[top] = b_right
                stack[top + 1] = left
                bounds[top + 1] = b_left
            else:
                stack[top] = left
                bounds[top] = b_left
                stack[top + 1] = right
                bounds[top + 1] = b_right
            top += 2
        out[j] = best_i
    return out


class DirectionTree:
    """The direction tree of ``points`` seen from ``centre`` (see the module docstring).

    Parameters
    ----------
    points : (n, 3) float64
        The data, n ≥ 1.
    centre : (3,) float64
        Where the directions are seen from: the centre of the queries it will answer.
    """

    def __init__(self, points: npt.NDArray[np.float64], centre: npt.NDArray[np.float64]) -> None:
        self.points = np.ascontiguousarray(points, dtype=np.float64)
        self.centre = np.ascontiguousarray(centre, dtype=np.float64)
        rel = self.points - self.centre
        r = np.sqrt(np.einsum("ij,ij->i", rel, rel))
        u = np.zeros_like(rel)
        nonzero = r > 0
        u[nonzero] = rel[nonzero] / r[nonzero, None]
        u[~nonzero, 0] = 1.0
        self._perm, self._nodes, self._cone, self._ranges = _build(u, r, LEAF_SIZE)

    def query(self, queries: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        """Index of the exact nearest point of each ``(m, 3)`` query."""
        q = np.ascontiguousarray(queries, dtype=np.float64)
        with _PARALLEL_LOCK:
            result: npt.NDArray[np.int64] = _query(
                q, self.centre, self.points, self._perm, self._nodes, self._cone, self._ranges
            )
        return result


def far_nearest(
    points: npt.NDArray[np.float64], queries: npt.NDArray[np.float64]
) -> npt.NDArray[np.int64]:
    """Index of the exact nearest point of each query (both ``(n, 3)`` float64, n ≥ 1).

    Built for queries far from ``points`` (see the module docstring); correct for any.
    """
    queries = np.ascontiguousarray(queries, dtype=np.float64)
    centre = (queries.min(axis=0) + queries.max(axis=0)) / 2.0
    return DirectionTree(points, centre).query(queries)


def warm_up() -> None:
    """Compile (first run on a machine, seconds) or load (later runs) the kernels now.

    Services can call this at start-up so that the first far-off prediction they score
    does not pay for it.
    """
    rng = np.random.default_rng(0)
    far_nearest(rng.random((64, 3)), rng.random((8, 3)) + 5.0)
