"""Curves and 2-D profiles: polyline, bezier, arc, circle, rectangle, rounded_rectangle, polygon.

A curve is a chain of points, open or closed, that extrude/sweep/revolve/loft turn into
surfaces; curves themselves export no faces and can be reused, moved and rotated. 2-D
shapes are drawn in ``plane`` ('XY', 'XZ' or 'YZ'): the point ``[u, v]`` lands at
``[u, v, 0]``, ``[u, 0, v]`` or ``[0, u, v]``, offset by ``center``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from bpy_lib import _mesh
from bpy_lib import _validate as check
from bpy_lib._geom import FloatArray

Vec = Sequence[float]
ORIGIN = (0.0, 0.0, 0.0)
PLANES = ("XY", "XZ", "YZ")

__all__ = [
    "arc",
    "bezier",
    "circle",
    "helix",
    "polygon",
    "polyline",
    "rectangle",
    "rounded_rectangle",
]


def _lift(uv: FloatArray, plane: str) -> FloatArray:
    out = np.zeros((len(uv), 3))
    if plane == "XY":
        out[:, 0], out[:, 1] = uv[:, 0], uv[:, 1]
    elif plane == "XZ":
        out[:, 0], out[:, 2] = uv[:, 0], uv[:, 1]
    else:
        out[:, 1], out[:, 2] = uv[:, 0], uv[:, 1]
    return out


def _make(
    fn: str,
    pts: FloatArray,
    closed: bool,
    name: object,
    center: tuple[float, float, float] = ORIGIN,
) -> str:
    new_name = check.name(fn, name)
    gaps = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    if len(gaps) and gaps.min() < 1e-6:
        i = int(np.argmin(gaps))
        raise ValueError(f"{fn}(points): points {i} and {i + 1} are the same; remove one")
    if closed and len(pts) > 2 and np.linalg.norm(pts[0] - pts[-1]) < 1e-6:
        pts = pts[:-1]  # a closed curve given with its first point repeated at the end
    if closed and len(pts) < 3:
        raise ValueError(f"{fn}(points): a closed curve needs at least 3 distinct points")
    n = len(pts)
    idx = np.arange(n if closed else n - 1)
    edges = np.stack([idx, (idx + 1) % n], axis=1)
    return _mesh.new_object(
        fn, new_name, pts, [], center, kind=_mesh.CURVE, edges=edges, closed=closed
    )


def _points_3d(fn: str, points: object, plane: object) -> FloatArray:
    pts = check.points(fn, "points", points)
    if pts.shape[1] == 2:
        return _lift(pts, check.choice(fn, "plane", plane, PLANES))
    return pts


def polyline(
    points: Sequence[Vec],
    closed: bool = False,
    plane: str = "XY",
    name: str | None = None,
) -> str:
    """Straight segments through points ([u, v] in plane, or [x, y, z]); closed joins the ends."""
    fn = "polyline"
    is_closed = check.flag(fn, "closed", closed)
    return _make(fn, _points_3d(fn, points, plane), is_closed, name)


def bezier(
    points: Sequence[Vec],
    resolution: int = 24,
    plane: str = "XY",
    name: str | None = None,
) -> str:
    """One open Bezier curve with 2-8 control points; passes through the first and last."""
    fn = "bezier"
    ctrl = _points_3d(fn, points, plane)
    if len(ctrl) > 8:
        raise ValueError(f"{fn}(points): expected 2 to 8 control points, got {len(ctrl)}")
    steps = check.segments(fn, "resolution", resolution, 2)
    deg = len(ctrl) - 1
    t = np.linspace(0.0, 1.0, steps + 1)[:, None]
    coeff = [math.comb(deg, k) * t**k * (1 - t) ** (deg - k) for k in range(deg + 1)]
    pts = sum(c * p[None, :] for c, p in zip(coeff, ctrl, strict=True))
    return _make(fn, np.asarray(pts, dtype=np.float64), False, name)


def _centered(
    fn: str, uv: FloatArray, center: object, plane: object, closed: bool, name: object
) -> str:
    c = check.vec3(fn, "center", center)
    pl = check.choice(fn, "plane", plane, PLANES)
    return _make(fn, _lift(uv, pl), closed, name, c)


def arc(
    radius: float,
    start_angle: float = 0.0,
    end_angle: float = 180.0,
    center: Vec = ORIGIN,
    plane: str = "XY",
    segments: int = 16,
    name: str | None = None,
) -> str:
    """Open circular arc from start_angle to end_angle (degrees, counter-clockwise from +u)."""
    fn = "arc"
    r = check.length(fn, "radius", radius, 1.0)
    a0 = check.angle(fn, "start_angle", start_angle)
    a1 = check.angle(fn, "end_angle", end_angle)
    n = check.segments(fn, "segments", segments, 1)
    if a0 == a1 or abs(a1 - a0) > 360.0:
        raise ValueError(f"{fn}(end_angle): must differ from start_angle by 0 to 360 degrees")
    t = np.radians(np.linspace(a0, a1, n + 1))
    uv = np.stack([r * np.cos(t), r * np.sin(t)], axis=1)
    return _centered(fn, uv, center, plane, False, name)


def circle(
    radius: float,
    center: Vec = ORIGIN,
    plane: str = "XY",
    segments: int = 32,
    name: str | None = None,
) -> str:
    """Closed circle of radius around center."""
    fn = "circle"
    r = check.length(fn, "radius", radius, 1.0)
    n = check.segments(fn, "segments", segments)
    t = 2 * np.pi * np.arange(n) / n
    uv = np.stack([r * np.cos(t), r * np.sin(t)], axis=1)
    return _centered(fn, uv, center, plane, True, name)


def rectangle(
    width: float,
    height: float,
    center: Vec = ORIGIN,
    plane: str = "XY",
    name: str | None = None,
) -> str:
    """Closed rectangle, width along u and height along v of its plane."""
    fn = "rectangle"
    w = check.length(fn, "width", width)
    h = check.length(fn, "height", height)
    uv = np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]])
    return _centered(fn, uv, center, plane, True, name)


def rounded_rectangle(
    width: float,
    height: float,
    radius: float,
    center: Vec = ORIGIN,
    plane: str = "XY",
    segments: int = 6,
    name: str | None = None,
) -> str:
    """Closed rectangle whose corners are quarter circles of radius (< half the shorter side)."""
    fn = "rounded_rectangle"
    w = check.length(fn, "width", width)
    h = check.length(fn, "height", height)
    r = check.number(fn, "radius", radius, 0.0, min(w, h) / 2, open_lo=True)
    n = check.segments(fn, "segments", segments, 1)
    corners = [(w / 2 - r, h / 2 - r), (-w / 2 + r, h / 2 - r), (-w / 2 + r, -h / 2 + r)]
    corners.append((w / 2 - r, -h / 2 + r))
    parts = []
    for k, (cx, cy) in enumerate(corners):
        t = np.radians(np.linspace(90.0 * k, 90.0 * (k + 1), n + 1))
        parts.append(np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1))
    uv = np.concatenate(parts)
    keep = np.linalg.norm(uv - np.roll(uv, 1, axis=0), axis=1) > 1e-9
    return _centered(fn, uv[keep], center, plane, True, name)


def polygon(
    sides: int,
    radius: float,
    center: Vec = ORIGIN,
    plane: str = "XY",
    name: str | None = None,
) -> str:
    """Closed regular polygon with sides (3-64) and circumradius; first corner on +u."""
    fn = "polygon"
    k = check.integer(fn, "sides", sides, 3, 64)
    r = check.length(fn, "radius", radius, 1.0)
    t = 2 * np.pi * np.arange(k) / k
    uv = np.stack([r * np.cos(t), r * np.sin(t)], axis=1)
    return _centered(fn, uv, center, plane, True, name)


def helix(
    radius: float,
    pitch: float,
    turns: float,
    center: Vec = ORIGIN,
    segments: int = 24,
    name: str | None = None,
) -> str:
    """Open helix around the Z axis through center, rising pitch per turn from center (springs, threads)."""
    fn = "helix"
    r = check.length(fn, "radius", radius, 1.0)
    p = check.length(fn, "pitch", pitch)
    n_turns = check.number(fn, "turns", turns, 0.0, 50.0, open_lo=True)
    per_turn = check.segments(fn, "segments", segments)
    c = check.vec3(fn, "center", center)
    if p * n_turns > 2 * check.LENGTH:
        raise ValueError(f"{fn}(turns): pitch * turns must be at most 4, got {p * n_turns:g}")
    steps = max(2, round(per_turn * n_turns))
    t = np.linspace(0.0, 2 * np.pi * n_turns, steps + 1)
    pts = np.stack([r * np.cos(t), r * np.sin(t), p * t / (2 * np.pi)], axis=1)
    return _make(fn, pts, False, name, c)


def curve_data(fn: str, arg: str, handle: object) -> tuple[FloatArray, FloatArray, bool]:
    """World points ``(n, 3)``, local points and closedness of a curve handle."""
    obj = _mesh.get(fn, arg, handle, (_mesh.CURVE,))
    local = _mesh.read_points(obj)
    return local + _mesh.location(obj), local, bool(_mesh.prop(obj, _mesh.CLOSED))
