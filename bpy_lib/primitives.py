"""Primitives: box, cylinder, cone, sphere, torus, capsule, wedge, prism, plane.

Each is centred on ``location`` (its pivot), built along +Z, then turned by ``rotation``
(Euler XYZ in degrees) and returns the new part's name.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import bpy
import numpy as np

from bpy_lib import _mesh
from bpy_lib import _validate as check
from bpy_lib._geom import FaceGroups, FloatArray, lathe, rotation_matrix
from bpy_lib._geom import prism as _prism

Vec = Sequence[float]
ORIGIN = (0.0, 0.0, 0.0)

__all__ = ["box", "capsule", "cone", "cylinder", "plane", "prism", "sphere", "torus", "wedge"]


def _place(
    fn: str,
    verts: FloatArray,
    groups: FaceGroups,
    location: object,
    rotation: object,
    name: object,
) -> str:
    loc = check.vec3(fn, "location", location)
    rot = check.vector(fn, "rotation", rotation, 3, -check.ANGLE, check.ANGLE)
    new_name = check.name(fn, name)
    if any(rot):
        verts = verts @ rotation_matrix((rot[0], rot[1], rot[2])).T
    return _mesh.new_object(fn, new_name, verts, groups, loc)


def box(
    size: Vec | float,
    location: Vec = ORIGIN,
    rotation: Vec = ORIGIN,
    round: float = 0.0,
    name: str | None = None,
) -> str:
    """Box of size [x, y, z]; round > 0 rounds its edges with that radius."""
    fn = "box"
    sx, sy, sz = check.size3(fn, "size", size)
    r = check.number(fn, "round", round, 0.0, min(sx, sy, sz) / 2.0)
    hx, hy, hz = sx / 2, sy / 2, sz / 2
    verts = np.array(
        [[x, y, z] for z in (-hz, hz) for y in (-hy, hy) for x in (-hx, hx)], dtype=np.float64
    )
    faces = np.array(
        [[0, 2, 3, 1], [4, 5, 7, 6], [0, 1, 5, 4], [2, 6, 7, 3], [0, 4, 6, 2], [1, 3, 7, 5]],
        dtype=np.int64,
    )
    handle = _place(fn, verts, [faces], location, rotation, name)
    if r > 0.0:
        _round_edges(handle, r, fn)
    return handle


def _round_edges(handle: str, radius: float, fn: str) -> None:
    obj = bpy.data.objects[handle]
    mod = obj.modifiers.new("round", "BEVEL")
    bevel = mod  # typed as Modifier by the stubs; the BEVEL settings below exist on it
    bevel.width = radius  # type: ignore[attr-defined]
    bevel.segments = 4  # type: ignore[attr-defined]
    bevel.limit_method = "ANGLE"  # type: ignore[attr-defined]
    bevel.harden_normals = False  # type: ignore[attr-defined]
    _mesh.apply_modifier(obj, mod, fn)


def cylinder(
    radius: float,
    depth: float,
    location: Vec = ORIGIN,
    rotation: Vec = ORIGIN,
    segments: int = 32,
    name: str | None = None,
) -> str:
    """Cylinder of radius and depth (height) along Z."""
    fn = "cylinder"
    r = check.length(fn, "radius", radius, 1.0)
    d = check.length(fn, "depth", depth)
    n = check.segments(fn, "segments", segments)
    uv = np.array([[0.0, -d / 2], [r, -d / 2], [r, d / 2], [0.0, d / 2]])
    verts, groups = lathe(uv, False, n)
    return _place(fn, verts, groups, location, rotation, name)


def cone(
    radius1: float,
    depth: float,
    radius2: float = 0.0,
    location: Vec = ORIGIN,
    rotation: Vec = ORIGIN,
    segments: int = 32,
    name: str | None = None,
) -> str:
    """Cone or frustum along Z: radius1 at the bottom, radius2 (0 = pointed) at the top."""
    fn = "cone"
    r1 = check.number(fn, "radius1", radius1, 0.0, 1.0)
    r2 = check.number(fn, "radius2", radius2, 0.0, 1.0)
    d = check.length(fn, "depth", depth)
    n = check.segments(fn, "segments", segments)
    if r1 == 0.0 and r2 == 0.0:
        raise ValueError(f"{fn}(radius1, radius2): at least one radius must be > 0")
    uv = np.array([[0.0, -d / 2], [r1, -d / 2], [r2, d / 2], [0.0, d / 2]])
    verts, groups = lathe(uv, False, n)
    return _place(fn, verts, groups, location, rotation, name)


def _arc_uv(radius: float, z: float, a0: float, a1: float, steps: int) -> FloatArray:
    t = np.linspace(math.radians(a0), math.radians(a1), steps + 1)
    uv = np.stack([radius * np.cos(t), z + radius * np.sin(t)], axis=1)
    uv[:, 0] = np.where(np.abs(uv[:, 0]) < 1e-12, 0.0, np.maximum(uv[:, 0], 0.0))
    return uv


def sphere(
    radius: float,
    location: Vec = ORIGIN,
    rotation: Vec = ORIGIN,
    segments: int = 32,
    rings: int = 16,
    name: str | None = None,
) -> str:
    """UV sphere of radius; scale() it for an ellipsoid."""
    fn = "sphere"
    r = check.length(fn, "radius", radius, 1.0)
    n = check.segments(fn, "segments", segments)
    m = check.segments(fn, "rings", rings, 2)
    verts, groups = lathe(_arc_uv(r, 0.0, -90.0, 90.0, m), False, n)
    return _place(fn, verts, groups, location, rotation, name)


def torus(
    major_radius: float,
    minor_radius: float,
    location: Vec = ORIGIN,
    rotation: Vec = ORIGIN,
    segments: int = 48,
    minor_segments: int = 16,
    name: str | None = None,
) -> str:
    """Torus (ring) in the XY plane: tube of minor_radius around a circle of major_radius."""
    fn = "torus"
    big = check.length(fn, "major_radius", major_radius, 1.0)
    small = check.number(fn, "minor_radius", minor_radius, 0.0, big, open_lo=True)
    if small >= big:
        raise ValueError(f"{fn}(minor_radius): must be smaller than major_radius ({big:g})")
    n = check.segments(fn, "segments", segments)
    m = check.segments(fn, "minor_segments", minor_segments)
    t = 2 * np.pi * np.arange(m) / m
    uv = np.stack([big + small * np.cos(t), small * np.sin(t)], axis=1)
    verts, groups = lathe(uv, True, n)
    return _place(fn, verts, groups, location, rotation, name)


def capsule(
    radius: float,
    depth: float,
    location: Vec = ORIGIN,
    rotation: Vec = ORIGIN,
    segments: int = 32,
    name: str | None = None,
) -> str:
    """Capsule along Z: a cylinder with hemispherical ends; depth is the total length."""
    fn = "capsule"
    r = check.length(fn, "radius", radius, 1.0)
    d = check.length(fn, "depth", depth)
    n = check.segments(fn, "segments", segments)
    if d < 2 * r:
        raise ValueError(f"{fn}(depth): must be at least 2 * radius ({2 * r:g}), got {d:g}")
    half = d / 2 - r
    rings = max(4, n // 4)
    bottom = _arc_uv(r, -half, -90.0, 0.0, rings)
    top = _arc_uv(r, half, 0.0, 90.0, rings)
    uv = np.concatenate([bottom, top[1:]] if half == 0.0 else [bottom, top])
    verts, groups = lathe(uv, False, n)
    return _place(fn, verts, groups, location, rotation, name)


def wedge(
    size: Vec | float,
    location: Vec = ORIGIN,
    rotation: Vec = ORIGIN,
    name: str | None = None,
) -> str:
    """Wedge (ramp) in a box of size [x, y, z]: full height at -X sloping to 0 at +X."""
    fn = "wedge"
    sx, sy, sz = check.size3(fn, "size", size)
    tri = np.array(
        [[-sx / 2, -sy / 2, -sz / 2], [sx / 2, -sy / 2, -sz / 2], [-sx / 2, -sy / 2, sz / 2]]
    )
    verts, groups = _prism(tri, np.array([0.0, sy, 0.0]), True)
    return _place(fn, verts, groups, location, rotation, name)


def prism(
    sides: int,
    radius: float,
    depth: float,
    location: Vec = ORIGIN,
    rotation: Vec = ORIGIN,
    name: str | None = None,
) -> str:
    """Regular prism along Z with sides (3-64) and circumradius; first corner on +X."""
    fn = "prism"
    k = check.integer(fn, "sides", sides, 3, 64)
    r = check.length(fn, "radius", radius, 1.0)
    d = check.length(fn, "depth", depth)
    t = 2 * np.pi * np.arange(k) / k
    loop = np.stack([r * np.cos(t), r * np.sin(t), np.full(k, -d / 2)], axis=1)
    verts, groups = _prism(loop, np.array([0.0, 0.0, d]), True)
    return _place(fn, verts, groups, location, rotation, name)


def plane(
    size: Vec | float,
    location: Vec = ORIGIN,
    rotation: Vec = ORIGIN,
    name: str | None = None,
) -> str:
    """Flat rectangle of size [x, y] in the XY plane, facing +Z (no thickness)."""
    fn = "plane"
    if isinstance(size, int | float):
        sx = sy = check.length(fn, "size", size)
    else:
        sx, sy = check.vector(fn, "size", size, 2, 0.0, check.LENGTH, positive=True)
    verts = np.array(
        [[-sx / 2, -sy / 2, 0], [sx / 2, -sy / 2, 0], [sx / 2, sy / 2, 0], [-sx / 2, sy / 2, 0]],
        dtype=np.float64,
    )
    return _place(fn, verts, [np.array([[0, 1, 2, 3]], np.int64)], location, rotation, name)
