"""Sweeps: extrude, revolve, sweep along a path, loft between profiles.

Each reads curves (see :mod:`bpy_lib.curves`), leaves them in place for reuse, and returns
a new part. Closed profiles give closed solids (capped); open profiles give surfaces that
:func:`bpy_lib.modifiers.solidify` can thicken.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from bpy_lib import _mesh
from bpy_lib import _validate as check
from bpy_lib._geom import (
    EPS,
    FaceGroups,
    FloatArray,
    IntArray,
    align_matrix,
    axis_angle_matrix,
    lathe,
    newell_normal,
    orient_outward,
    prism,
    rotation_matrix,
    z_to_axis,
)
from bpy_lib.curves import curve_data

Vec = Sequence[float]
ORIGIN = (0.0, 0.0, 0.0)

__all__ = ["extrude", "loft", "revolve", "sweep"]


def _new_part(
    fn: str, world: FloatArray, groups: FaceGroups, pivot: FloatArray, name: str | None
) -> str:
    loc = (float(pivot[0]), float(pivot[1]), float(pivot[2]))
    return _mesh.new_object(fn, name, world - pivot[None, :], groups, loc)


def _plane_normal(pts: FloatArray) -> FloatArray | None:
    n = newell_normal(pts - pts.mean(axis=0))
    size = float(np.linalg.norm(n))
    if size < 1e-10:
        return None
    n = n / size
    k = int(np.argmax(np.abs(n)))
    return n if n[k] > 0 else -n


def extrude(
    profile: str,
    depth: float,
    direction: Vec | None = None,
    name: str | None = None,
) -> str:
    """Extrude a curve by depth along direction (default: its plane's normal, +Z for 'XY')."""
    fn = "extrude"
    world, _, closed = curve_data(fn, "profile", profile)
    d = check.number(fn, "depth", depth, -check.LENGTH, check.LENGTH, nonzero=True)
    new_name = check.name(fn, name)
    if direction is None:
        normal = _plane_normal(world)
        if normal is None:
            raise ValueError(
                f"{fn}(direction): the profile {profile!r} is a straight line, so it has no "
                "plane normal; give direction=[x, y, z]"
            )
    else:
        normal = check.direction(fn, "direction", direction)
    verts, groups = prism(world, normal * d, closed)
    pivot = _mesh.location(_mesh.get(fn, "profile", profile, (_mesh.CURVE,)))
    return _new_part(fn, verts, groups, pivot, new_name)


def revolve(
    profile: str,
    axis: str = "Z",
    angle: float = 360.0,
    center: Vec = ORIGIN,
    segments: int = 32,
    name: str | None = None,
) -> str:
    """Spin a curve drawn on one side of the axis (through center) by angle degrees (lathe)."""
    fn = "revolve"
    world, _, closed = curve_data(fn, "profile", profile)
    ax = check.choice(fn, "axis", axis, ("X", "Y", "Z"))
    a = check.number(fn, "angle", angle, -360.0, 360.0, nonzero=True)
    c = np.array(check.vec3(fn, "center", center))
    n = check.segments(fn, "segments", segments)
    new_name = check.name(fn, name)
    frame = z_to_axis(ax)
    q = (world - c) @ frame  # coordinates in a frame whose Z is the axis
    u = np.hypot(q[:, 0], q[:, 1])
    off = u > EPS
    if not off.any():
        raise ValueError(f"{fn}(profile): the profile {profile!r} lies on the axis; move it off")
    phi = np.arctan2(q[off, 1], q[off, 0])
    phi0 = float(phi[int(np.argmax(u[off]))])
    spread = np.abs(np.angle(np.exp(1j * (phi - phi0))))
    if spread.max() > 1e-3:
        raise ValueError(
            f"{fn}(profile): {profile!r} must lie in a plane through the {ax} axis, on one side "
            f"of it (e.g. drawn with plane='XZ' and u >= 0 for axis 'Z')"
        )
    uv = np.stack([u, q[:, 2]], axis=1)
    verts, groups = lathe(uv, closed, n, a)
    if a < 0:
        groups = [g[:, ::-1].copy() for g in groups]
    spin = rotation_matrix((0.0, 0.0, math.degrees(phi0)))
    world_verts = verts @ spin.T @ frame.T + c
    return _new_part(fn, world_verts, groups, c, new_name)


def _refine(pts: FloatArray, closed: bool, target: int) -> FloatArray:
    """Add points on the longest edges until there are ``target``; corners are kept."""
    n = len(pts)
    if n >= target:
        return pts
    nxt = np.roll(pts, -1, axis=0) if closed else pts[1:]
    seg = nxt - pts[: len(nxt)]
    lengths = np.linalg.norm(seg, axis=1)
    pieces = np.ones(len(seg), np.int64)
    for _ in range(target - n):
        pieces[int(np.argmax(lengths / pieces))] += 1
    out: list[FloatArray] = []
    for k in range(len(seg)):
        t = np.arange(pieces[k])[:, None] / pieces[k]
        out.append(pts[k][None, :] + t * seg[k][None, :])
    if not closed:
        out.append(pts[-1:])
    return np.concatenate(out)


def _align_loop(prev: FloatArray, cur: FloatArray, closed: bool) -> FloatArray:
    """Turn ``cur`` to run like ``prev``: same direction and best matching start point."""
    a = prev - prev.mean(axis=0)
    b = cur - cur.mean(axis=0)
    if not closed:
        straight = np.sum((a - b) ** 2)
        flipped = np.sum((a - b[::-1]) ** 2)
        return cur if straight <= flipped else cur[::-1].copy()
    na, nb = newell_normal(a), newell_normal(b)
    if float(np.dot(na, nb)) < 0:
        cur, b = cur[::-1].copy(), b[::-1].copy()
    costs = [float(np.sum((a - np.roll(b, -s, axis=0)) ** 2)) for s in range(len(b))]
    return np.roll(cur, -int(np.argmin(costs)), axis=0)


def _bridge(rings: int, m: int, ring_closed: bool, wrap: bool) -> IntArray:
    """Quads joining consecutive rings of ``m`` points (and the last to the first if wrap)."""
    i = np.arange(m if ring_closed else m - 1)
    j = (i + 1) % m
    quads = []
    for r in range(rings if wrap else rings - 1):
        a, b = r * m, ((r + 1) % rings) * m
        quads.append(np.stack([a + i, a + j, b + j, b + i], axis=1))
    return np.concatenate(quads).astype(np.int64)


def loft(profiles: Sequence[str], caps: bool = True, name: str | None = None) -> str:
    """Skin a surface through 2-16 curves in order (all closed or all open); caps closes ends."""
    fn = "loft"
    if isinstance(profiles, str) or not isinstance(profiles, Sequence):
        raise TypeError(f"{fn}(profiles): expected a list of 2 to 16 curve names, got {profiles!r}")
    if not 2 <= len(profiles) <= 16:
        raise ValueError(f"{fn}(profiles): expected 2 to 16 curves, got {len(profiles)}")
    do_caps = check.flag(fn, "caps", caps)
    new_name = check.name(fn, name)
    data = [curve_data(fn, "profiles", p) for p in profiles]
    closed = {d[2] for d in data}
    if len(closed) != 1:
        raise ValueError(f"{fn}(profiles): mix of closed and open curves; use one kind")
    is_closed = closed.pop()
    m = max(len(d[0]) for d in data)
    loops = [_refine(d[0], is_closed, m) for d in data]
    for k in range(1, len(loops)):
        loops[k] = _align_loop(loops[k - 1], loops[k], is_closed)
    verts = np.concatenate(loops)
    groups: FaceGroups = [_bridge(len(loops), m, is_closed, False)]
    if is_closed and do_caps:
        # Caps face against the loft at the start and along it at the end, like the sides
        # for loops that turn counter-clockwise about the loft direction; else all flip.
        groups.append(np.arange(m, dtype=np.int64)[None, ::-1].copy())
        groups.append(np.arange((len(loops) - 1) * m, len(loops) * m, dtype=np.int64)[None, :])
        groups = orient_outward(verts - verts.mean(axis=0), groups)
    pivot = _mesh.location(_mesh.get(fn, "profiles", profiles[0], (_mesh.CURVE,)))
    return _new_part(fn, verts, groups, pivot, new_name)


def _profile_uv(
    fn: str, profile: str | None, radius: object, segments: object
) -> tuple[FloatArray, bool]:
    if profile is None:
        r = check.length(fn, "radius", radius, 1.0)
        n = check.segments(fn, "segments", segments)
        t = 2 * np.pi * np.arange(n) / n
        return np.stack([r * np.cos(t), r * np.sin(t)], axis=1), True
    _, local, closed = curve_data(fn, "profile", profile)
    normal = _plane_normal(local) if len(local) >= 3 else None
    drop = 2 if normal is None else int(np.argmax(np.abs(normal)))
    keep = [k for k in range(3) if k != drop]
    return local[:, keep], closed


def _frames(
    path: FloatArray, closed: bool
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Tangent, side (u) and up (v) axes, and the mitre (bend direction × extra stretch)."""
    n = len(path)
    nxt = np.roll(path, -1, axis=0)
    seg = (nxt - path) if closed else (path[1:] - path[:-1])
    d = seg / np.linalg.norm(seg, axis=1)[:, None]
    if closed:
        d_in, d_out = np.roll(d, 1, axis=0), d
    else:
        d_in = np.concatenate([d[:1], d])
        d_out = np.concatenate([d, d[-1:]])
    t = d_in + d_out
    t /= np.linalg.norm(t, axis=1)[:, None]
    bend = d_out - d_in
    cosang = np.clip(np.einsum("ij,ij->i", t, d_in), 0.25, 1.0)
    norms = np.linalg.norm(bend, axis=1)
    k = np.where(norms[:, None] > 1e-9, bend / np.maximum(norms, 1e-12)[:, None], 0.0)
    # Mitre: in the plane normal to the mean tangent the section is stretched along the
    # bend direction k by 1 / cos(half the turn), so straight runs keep their thickness.
    mitre = k * (1.0 / cosang - 1.0)[:, None]
    ref = np.array([0.0, 0.0, 1.0]) if abs(t[0, 2]) < 0.99 else np.array([0.0, 1.0, 0.0])
    up = np.zeros((n, 3))
    up[0] = ref - np.dot(ref, t[0]) * t[0]
    up[0] /= np.linalg.norm(up[0])
    for i in range(1, n):
        b = align_matrix(t[i - 1], t[i]) @ up[i - 1]
        b -= np.dot(b, t[i]) * t[i]
        up[i] = b / np.linalg.norm(b)
    if closed and n > 2:
        back = align_matrix(t[-1], t[0]) @ up[-1]
        err = math.atan2(float(np.dot(np.cross(back, up[0]), t[0])), float(np.dot(back, up[0])))
        for i in range(1, n):
            up[i] = axis_angle_matrix(t[i], err * i / n) @ up[i]
    side = np.cross(up, t)
    return t, side, up, mitre


def _scales(fn: str, scales: object) -> FloatArray:
    if scales is None:
        return np.ones(2)
    allowed = "a list of 2 to 32 numbers in (0, 10]"
    if isinstance(scales, str) or not isinstance(scales, Sequence | np.ndarray):
        raise TypeError(f"{fn}(scales): expected {allowed}, got {scales!r}")
    if not 2 <= len(scales) <= 32:
        raise ValueError(f"{fn}(scales): expected {allowed}, got {len(scales)} numbers")
    return np.array(check.vector(fn, "scales", scales, len(scales), 0.0, 10.0, positive=True))


def sweep(
    path: str,
    profile: str | None = None,
    radius: float = 0.05,
    segments: int = 16,
    twist: float = 0.0,
    scales: Sequence[float] | None = None,
    caps: bool = True,
    name: str | None = None,
) -> str:
    """Move a section along a path: a round tube of radius, or profile (read relative to its center); twist in degrees, scales=[start, ..., end] sizes.

    ``twist`` turns the section by that many degrees from start to end; ``scales`` lists
    section sizes at evenly spaced stations along the path (``[1, 0.5]`` halves it by the
    end, ``[0.5, 1, 0.5]`` bulges), linearly in between.
    """
    fn = "sweep"
    pts, _, path_closed = curve_data(fn, "path", path)
    uv, prof_closed = _profile_uv(fn, profile, radius, segments)
    tw = math.radians(check.angle(fn, "twist", twist))
    stations = _scales(fn, scales)
    do_caps = check.flag(fn, "caps", caps)
    new_name = check.name(fn, name)
    tangent, side, up, mitre = _frames(pts, path_closed)
    del tangent
    steps = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    along = np.concatenate([[0.0], np.cumsum(steps)]) / max(float(steps.sum()), 1e-12)
    m = len(uv)
    rings = []
    for i, p in enumerate(pts):
        a = tw * along[i]
        s = float(np.interp(along[i], np.linspace(0.0, 1.0, len(stations)), stations))
        u = s * (uv[:, 0] * math.cos(a) - uv[:, 1] * math.sin(a))
        v = s * (uv[:, 0] * math.sin(a) + uv[:, 1] * math.cos(a))
        offs = u[:, None] * side[i][None, :] + v[:, None] * up[i][None, :]
        stretch = float(np.linalg.norm(mitre[i]))
        if stretch > 0.0:
            k = mitre[i] / stretch
            offs += stretch * np.outer(offs @ k, k)
        rings.append(p[None, :] + offs)
    verts = np.concatenate(rings)
    groups: FaceGroups = [_bridge(len(pts), m, prof_closed, path_closed)]
    if prof_closed and not path_closed and do_caps:
        groups.append(np.arange(m, dtype=np.int64)[None, ::-1].copy())
        groups.append(np.arange((len(pts) - 1) * m, len(pts) * m, dtype=np.int64)[None, :])
    if prof_closed and (path_closed or do_caps):
        groups = orient_outward(verts - verts.mean(axis=0), groups)
    pivot = _mesh.location(_mesh.get(fn, "path", path, (_mesh.CURVE,)))
    return _new_part(fn, verts, groups, pivot, new_name)
