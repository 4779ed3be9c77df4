"""Arrays and patterns: linear, grid and radial copies merged into the part itself.

The part keeps its name and becomes the whole pattern (like Blender's Array modifier), so
one handle stands for all copies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from bpy_lib import _mesh
from bpy_lib import _validate as check
from bpy_lib._geom import FaceGroups, FloatArray, axis_angle_matrix, axis_vector

Vec = Sequence[float]
ORIGIN = (0.0, 0.0, 0.0)
#: A pattern may not grow a part past this many vertices.
MAX_VERTICES = 200_000

__all__ = ["grid_array", "linear_array", "radial_array"]


def _tile(fn: str, part: str, copies: list[FloatArray]) -> str:
    """Replace ``part`` by one copy of its mesh per ``(n, 3)`` local coordinate array."""
    obj = _mesh.get(fn, "part", part)
    verts, groups = _mesh.read(obj)
    n = len(verts)
    if n * len(copies) > MAX_VERTICES:
        raise ValueError(
            f"{fn}: {len(copies)} copies of {n} vertices exceed {MAX_VERTICES}; use fewer copies"
        )
    all_groups: FaceGroups = [
        np.concatenate([g + c * n for c in range(len(copies))]) for g in groups
    ]
    _mesh.write(obj, np.concatenate(copies), all_groups)
    return obj.name


def linear_array(part: str, count: int, offset: Vec) -> str:
    """count copies in a row (the original is the first), each offset [dx, dy, dz] from the last."""
    fn = "linear_array"
    obj = _mesh.get(fn, "part", part)
    k = check.integer(fn, "count", count, 1, 100)
    d = np.array(check.vec3(fn, "offset", offset))
    verts = _mesh.read_points(obj)
    return _tile(fn, part, [verts + i * d for i in range(k)])


def grid_array(part: str, counts: Sequence[int] | object, spacing: Vec) -> str:
    """Copies on a grid: counts [nx, ny] or [nx, ny, nz], spacing [dx, dy] or [dx, dy, dz]."""
    fn = "grid_array"
    obj = _mesh.get(fn, "part", part)
    if isinstance(counts, str) or not isinstance(counts, Sequence) or len(counts) not in (2, 3):
        raise TypeError(f"{fn}(counts): expected 2 or 3 whole numbers in [1, 50], got {counts!r}")
    ns = [check.integer(fn, "counts", c, 1, 50) for c in counts]
    sp = check.vector(fn, "spacing", spacing, len(ns))
    ns += [1] * (3 - len(ns))
    step = np.array(list(sp) + [0.0] * (3 - len(sp)))
    verts = _mesh.read_points(obj)
    copies = [
        verts + np.array([i, j, k]) * step
        for k in range(ns[2])
        for j in range(ns[1])
        for i in range(ns[0])
    ]
    return _tile(fn, part, copies)


def radial_array(
    part: str,
    count: int,
    axis: str = "Z",
    center: Vec = ORIGIN,
    angle: float = 360.0,
) -> str:
    """count copies turned about the axis through center, spread over angle degrees (360 = full circle)."""
    fn = "radial_array"
    obj = _mesh.get(fn, "part", part)
    k = check.integer(fn, "count", count, 1, 100)
    ax = axis_vector(check.choice(fn, "axis", axis, ("X", "Y", "Z")))
    c = np.array(check.vec3(fn, "center", center))
    a = check.number(fn, "angle", angle, -360.0, 360.0, nonzero=True)
    full = abs(abs(a) - 360.0) < 1e-9
    step = math.radians(a) / (k if full or k == 1 else k - 1)
    loc = _mesh.location(obj)
    world = _mesh.read_points(obj) + loc
    copies = [(world - c) @ axis_angle_matrix(ax, i * step).T + c - loc for i in range(k)]
    return _tile(fn, part, copies)
