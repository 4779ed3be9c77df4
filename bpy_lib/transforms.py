"""Transforms: move, rotate, scale, mirror, align, align_axis.

They change a part (or a curve) in place and return its name. Rotations and scales turn
about the part's pivot (where it was created) unless ``pivot`` names a world point.
"""

from __future__ import annotations

from collections.abc import Sequence

import bpy
import numpy as np

from bpy_lib import _mesh
from bpy_lib import _validate as check
from bpy_lib._geom import (
    AXES,
    FloatArray,
    align_matrix,
    axis_vector,
    quaternion_matrix,
    rotation_matrix,
)

Vec = Sequence[float]
ORIGIN = (0.0, 0.0, 0.0)
BOTH = (_mesh.PART, _mesh.CURVE)
ANCHORS = ("center", "bottom", "top", "min", "max")

__all__ = ["align", "align_axis", "mirror", "move", "rotate", "scale"]


def _apply(
    obj: bpy.types.Object, linear: FloatArray, pivot: FloatArray | None, flip: bool = False
) -> None:
    loc = _mesh.location(obj)
    _mesh.transform(obj, linear, flip)
    if pivot is not None:
        new = pivot + linear @ (loc - pivot)
        obj.location = (float(new[0]), float(new[1]), float(new[2]))


def _pivot(fn: str, pivot: object) -> FloatArray | None:
    return None if pivot is None else np.array(check.vec3(fn, "pivot", pivot))


def move(part: str, offset: Vec) -> str:
    """Translate a part by offset [dx, dy, dz]."""
    fn = "move"
    obj = _mesh.get(fn, "part", part, BOTH)
    d = check.vec3(fn, "offset", offset)
    obj.location = (obj.location[0] + d[0], obj.location[1] + d[1], obj.location[2] + d[2])
    return obj.name


def rotate(
    part: str,
    angles: Vec | None = None,
    quaternion: Vec | None = None,
    pivot: Vec | None = None,
) -> str:
    """Rotate by Euler angles [x, y, z] in degrees (XYZ order) or by quaternion [w, x, y, z]."""
    fn = "rotate"
    obj = _mesh.get(fn, "part", part, BOTH)
    if (angles is None) == (quaternion is None):
        raise ValueError(f"{fn}(angles, quaternion): give exactly one of them")
    if angles is not None:
        a = check.vector(fn, "angles", angles, 3, -check.ANGLE, check.ANGLE)
        linear = rotation_matrix((a[0], a[1], a[2]))
    else:
        q = check.vector(fn, "quaternion", quaternion, 4, -1.0, 1.0)
        if float(np.linalg.norm(q)) < 1e-6:
            raise ValueError(f"{fn}(quaternion): expected a non-zero [w, x, y, z], got {q}")
        linear = quaternion_matrix(q)
    _apply(obj, linear, _pivot(fn, pivot))
    return obj.name


def scale(part: str, factor: Vec | float, pivot: Vec | None = None) -> str:
    """Scale by one factor or per axis [sx, sy, sz] (each in (0, 10])."""
    fn = "scale"
    obj = _mesh.get(fn, "part", part, BOTH)
    s = check.size3(fn, "factor", factor, 10.0)
    _apply(obj, np.diag(s), _pivot(fn, pivot))
    return obj.name


def mirror(
    part: str,
    axis: str = "X",
    center: Vec = ORIGIN,
    copy: bool = True,
    name: str | None = None,
) -> str:
    """Mirror across the plane through center normal to axis; copy=True keeps the original and returns the copy."""
    fn = "mirror"
    obj = _mesh.get(fn, "part", part, BOTH)
    k = AXES[check.choice(fn, "axis", axis, ("X", "Y", "Z"))]
    c = np.array(check.vec3(fn, "center", center))
    if check.flag(fn, "copy", copy):
        obj = _mesh.duplicate(fn, obj, check.name(fn, name))
    elif name is not None:
        raise ValueError(
            f"{fn}(name): only a copy gets a new name; use copy=True or leave name out"
        )
    linear = np.eye(3)
    linear[k, k] = -1.0
    _apply(obj, linear, c, flip=_mesh.prop(obj, _mesh.KIND) == _mesh.PART)
    return obj.name


def _world_box(obj: bpy.types.Object) -> tuple[FloatArray, FloatArray]:
    pts = _mesh.world_points(obj)
    return pts.min(axis=0), pts.max(axis=0)


def align(part: str, point: Vec, anchor: str = "center") -> str:
    """Move a part so its box anchor ('center', 'bottom', 'top', 'min', 'max' corner) lands on point."""
    fn = "align"
    obj = _mesh.get(fn, "part", part, BOTH)
    p = np.array(check.vec3(fn, "point", point))
    which = check.choice(fn, "anchor", anchor, ANCHORS)
    lo, hi = _world_box(obj)
    ref = (lo + hi) / 2
    if which == "bottom":
        ref[2] = lo[2]
    elif which == "top":
        ref[2] = hi[2]
    elif which == "min":
        ref = lo
    elif which == "max":
        ref = hi
    d = p - ref
    obj.location = tuple(float(x) for x in _mesh.location(obj) + d)
    return obj.name


def align_axis(part: str, direction: Vec, axis: str = "Z") -> str:
    """Rotate a part about its pivot so that its axis ('X', 'Y', 'Z') points along direction."""
    fn = "align_axis"
    obj = _mesh.get(fn, "part", part, BOTH)
    dst = check.direction(fn, "direction", direction)
    src = axis_vector(check.choice(fn, "axis", axis, ("X", "Y", "Z")))
    _apply(obj, align_matrix(src, dst), None)
    return obj.name
