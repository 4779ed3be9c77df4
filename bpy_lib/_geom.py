"""Pure numpy geometry used by the builders: no Blender here.

Faces are kept as *face groups*: a list of ``(m, k)`` int arrays, each row one polygon of
``k`` corners, so quads, triangles and n-gon caps stay vectorised until the mesh is written.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
FaceGroups = list[IntArray]

#: Points closer than this to an axis count as on it (they become a single pole vertex).
EPS = 1e-7


def pack(groups: FaceGroups) -> tuple[IntArray, IntArray]:
    """Flatten face groups into Blender's ``(corner vertex indices, polygon starts)``."""
    groups = [g for g in groups if len(g)]
    if not groups:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    corners = np.concatenate([g.ravel() for g in groups])
    sizes = np.concatenate([np.full(len(g), g.shape[1], np.int64) for g in groups])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    return corners.astype(np.int64), starts


def unpack(corners: IntArray, starts: IntArray) -> FaceGroups:
    """Inverse of :func:`pack`: group polygons by corner count (order kept within a size)."""
    if len(starts) == 0:
        return []
    totals = np.diff(np.append(starts, len(corners)))
    groups: FaceGroups = []
    for k in np.unique(totals):
        sel = starts[totals == k]
        idx = sel[:, None] + np.arange(k)[None, :]
        groups.append(corners[idx].astype(np.int64))
    return groups


def signed_volume(verts: FloatArray, groups: FaceGroups) -> float:
    """Volume enclosed by the faces (positive when they face outwards), by fan triangles."""
    total = 0.0
    for g in groups:
        a = verts[g[:, 0]]
        for t in range(1, g.shape[1] - 1):
            b = verts[g[:, t]]
            c = verts[g[:, t + 1]]
            total += float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum())
    return total / 6.0


def orient_outward(verts: FloatArray, groups: FaceGroups) -> FaceGroups:
    """Reverse every face when the surface's signed volume about the origin is negative."""
    if signed_volume(verts, groups) < 0.0:
        return [g[:, ::-1].copy() for g in groups]
    return groups


def newell_normal(pts: FloatArray) -> FloatArray:
    """Area-weighted normal of a closed polygon ``(n, 3)``; zero for a degenerate one."""
    nxt = np.roll(pts, -1, axis=0)
    n = np.array(
        [
            np.sum((pts[:, 1] - nxt[:, 1]) * (pts[:, 2] + nxt[:, 2])),
            np.sum((pts[:, 2] - nxt[:, 2]) * (pts[:, 0] + nxt[:, 0])),
            np.sum((pts[:, 0] - nxt[:, 0]) * (pts[:, 1] + nxt[:, 1])),
        ]
    )
    return n


def lathe(
    uv: FloatArray, closed: bool, segments: int, angle_deg: float = 360.0
) -> tuple[FloatArray, FaceGroups]:
    """Surface of revolution of a ``(u, v)`` profile about the Z axis.

    Parameters
    ----------
    uv : (n, 2) float
        Profile points: ``u`` the distance from the axis (>= 0), ``v`` the height.
    closed : bool
        Whether the profile's last point connects back to its first.
    segments : int
        Steps around the axis.
    angle_deg : float
        Sweep angle; 360 closes the surface around, less leaves two flat ends, capped when
        the profile is closed or both its ends lie on the axis.

    Returns
    -------
    verts : (m, 3) float
    groups : face groups, oriented outwards.
    """
    n = len(uv)
    pole = uv[:, 0] < EPS
    solid = closed or bool(pole[0] and pole[-1])
    if solid:
        # A counter-clockwise (u, v) outline makes every side face point outwards.
        u, v = uv[:, 0], uv[:, 1]
        if float(np.sum(u * np.roll(v, -1) - np.roll(u, -1) * v)) < 0.0:
            uv = uv[::-1].copy()
    full = abs(abs(angle_deg) - 360.0) < 1e-9
    cols = segments if full else segments + 1
    angles = np.radians(angle_deg) * np.arange(cols) / segments
    pole = uv[:, 0] < EPS
    idx = np.zeros((n, cols), np.int64)
    verts_list: list[FloatArray] = []
    count = 0
    cos, sin = np.cos(angles), np.sin(angles)
    for i in range(n):
        u, v = uv[i]
        if pole[i]:
            verts_list.append(np.array([[0.0, 0.0, v]]))
            idx[i, :] = count
            count += 1
        else:
            ring = np.stack([u * cos, u * sin, np.full(cols, v)], axis=1)
            verts_list.append(ring)
            idx[i, :] = count + np.arange(cols)
            count += cols
    verts = np.concatenate(verts_list, axis=0)
    j0 = np.arange(segments)
    j1 = (j0 + 1) % cols
    rows = n if closed else n - 1
    quads: list[IntArray] = []
    tris: list[IntArray] = []
    for i in range(rows):
        k = (i + 1) % n
        if pole[i] and pole[k]:
            continue
        if pole[i]:
            tris.append(np.stack([idx[i, j0], idx[k, j1], idx[k, j0]], axis=1))
        elif pole[k]:
            tris.append(np.stack([idx[i, j0], idx[i, j1], idx[k, j0]], axis=1))
        else:
            quads.append(np.stack([idx[i, j0], idx[i, j1], idx[k, j1], idx[k, j0]], axis=1))
    groups: FaceGroups = []
    if quads:
        groups.append(np.concatenate(quads))
    if tris:
        groups.append(np.concatenate(tris))
    if not full and solid:
        # The outline itself closes both ends; at angle 0 it faces -Y, against the sweep.
        for col in (0, cols - 1):
            cap = _dedupe_cycle(idx[:, col])
            if len(cap) >= 3:
                groups.append(cap[None, ::-1].copy() if col else cap[None, :])
    return verts, groups if solid else orient_outward(verts, groups)


def _dedupe_cycle(ring: IntArray) -> IntArray:
    """Drop repeated consecutive indices of a closed cycle (pole vertices)."""
    keep = ring != np.roll(ring, 1)
    out = ring[keep] if keep.any() else ring[:1]
    return out.astype(np.int64)


def rotation_matrix(angles_deg: tuple[float, float, float]) -> FloatArray:
    """Rotation of Euler angles in degrees, XYZ order (X applied first), as Blender uses."""
    ax, ay, az = (math.radians(a) for a in angles_deg)
    cx, sx, cy, sy, cz, sz = (
        math.cos(ax),
        math.sin(ax),
        math.cos(ay),
        math.sin(ay),
        math.cos(az),
        math.sin(az),
    )
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return np.asarray(rz @ ry @ rx, dtype=np.float64)


def quaternion_matrix(q: tuple[float, ...]) -> FloatArray:
    """Rotation of a quaternion ``[w, x, y, z]`` (normalised here)."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / float(np.linalg.norm(q))
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def axis_angle_matrix(axis: FloatArray, angle_rad: float) -> FloatArray:
    """Rotation by ``angle_rad`` about the unit vector ``axis`` (Rodrigues)."""
    x, y, z = axis
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    out: FloatArray = np.eye(3) + math.sin(angle_rad) * k + (1 - math.cos(angle_rad)) * (k @ k)
    return out


def align_matrix(src: FloatArray, dst: FloatArray) -> FloatArray:
    """The smallest rotation that turns unit vector ``src`` into unit vector ``dst``."""
    c = float(np.clip(np.dot(src, dst), -1.0, 1.0))
    axis = np.cross(src, dst)
    s = float(np.linalg.norm(axis))
    if s < 1e-12:
        if c > 0:
            return np.eye(3)
        # Opposite: turn half a circle about any axis perpendicular to src.
        helper = np.array([1.0, 0.0, 0.0]) if abs(src[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
        perp = np.cross(src, helper)
        return axis_angle_matrix(perp / np.linalg.norm(perp), math.pi)
    return axis_angle_matrix(axis / s, math.atan2(s, c))


AXES = {"X": 0, "Y": 1, "Z": 2}


def axis_vector(axis: str) -> FloatArray:
    """Unit vector of ``'X'``, ``'Y'`` or ``'Z'``."""
    v = np.zeros(3)
    v[AXES[axis]] = 1.0
    return v


def z_to_axis(axis: str) -> FloatArray:
    """Rotation taking +Z to the named axis (identity for Z), keeping a right-handed frame."""
    if axis == "Z":
        return np.eye(3)
    if axis == "X":
        return np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    return np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])


def prism(loop: FloatArray, vector: FloatArray, closed: bool) -> tuple[FloatArray, FaceGroups]:
    """Extrude a polyline ``(n, 3)`` by ``vector``: side quads, plus n-gon caps when closed.

    Closed results are oriented outwards; an open ribbon keeps the profile's direction.
    """
    n = len(loop)
    verts = np.concatenate([loop, loop + vector[None, :]], axis=0)
    i = np.arange(n if closed else n - 1)
    j = (i + 1) % n
    groups: FaceGroups = [np.stack([i, j, j + n, i + n], axis=1).astype(np.int64)]
    if closed:
        groups.append(np.arange(n, dtype=np.int64)[None, ::-1].copy())
        groups.append(np.arange(n, 2 * n, dtype=np.int64)[None, :])
        centre = verts.mean(axis=0)
        if signed_volume(verts - centre, groups) < 0.0:
            groups = [g[:, ::-1].copy() for g in groups]
    return verts, groups
