"""Numpy twins of the ``bpy_lib`` shapes the part fitter tries (no Blender).

Each builder returns ``(vertices (n, 3), faces (m, 3))`` in a local frame whose Z is the
shape's axis, laid out as ``bpy_lib`` lays it out (same segment counts, the same centre),
so that a candidate scored here scores the same once its program runs in Blender.
:func:`euler_xyz` and :func:`rotation_xyz` convert between rotation matrices and the
``rotation=[x, y, z]`` degrees of ``bpy_lib`` (Blender's XYZ Euler: ``Rz @ Ry @ Rx``).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = [
    "box_mesh",
    "earclip",
    "euler_xyz",
    "extrude_mesh",
    "grid_outline",
    "helix_tube_mesh",
    "lathe_mesh",
    "profile_cone",
    "profile_cylinder",
    "profile_sphere",
    "profile_torus",
    "rotation_xyz",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Mesh = tuple[FloatArray, IntArray]


def rotation_xyz(angles_deg: tuple[float, float, float] | list[float]) -> FloatArray:
    """The matrix of Euler angles in degrees, XYZ order (X applied first), as Blender."""
    ax, ay, az = (math.radians(a) for a in angles_deg)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return np.asarray(rz @ ry @ rx, dtype=np.float64)


def euler_xyz(matrix: npt.ArrayLike) -> list[float]:
    """Euler XYZ degrees of a rotation matrix (inverse of :func:`rotation_xyz`)."""
    r = np.asarray(matrix, dtype=np.float64)
    sy = -float(np.clip(r[2, 0], -1.0, 1.0))
    ay = math.asin(sy)
    if abs(sy) < 1 - 1e-9:
        ax = math.atan2(r[2, 1], r[2, 2])
        az = math.atan2(r[1, 0], r[0, 0])
    else:  # gimbal lock: put everything in X
        ax = math.atan2(-r[1, 2], r[1, 1])
        az = 0.0
    return [math.degrees(ax), math.degrees(ay), math.degrees(az)]


def box_mesh(size: npt.ArrayLike) -> Mesh:
    """A box of ``size`` centred on the origin."""
    half = np.asarray(size, dtype=np.float64) / 2.0
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
    faces = np.array(
        [[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
         [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]],
        dtype=np.int64,
    )  # fmt: skip
    return corners * half, faces


def lathe_mesh(profile: npt.ArrayLike, *, closed: bool = False, segments: int = 32) -> Mesh:
    """Surface of revolution about Z of a ``(r, z)`` profile (``closed`` joins its ends)."""
    rz = np.asarray(profile, dtype=np.float64).reshape(-1, 2)
    n = len(rz)
    t = 2 * np.pi * np.arange(segments) / segments
    ring = np.stack([np.cos(t), np.sin(t)], axis=1)
    verts = np.concatenate([np.column_stack([r * ring, np.full(segments, z)]) for r, z in rz])
    i = np.arange(segments)
    j = (i + 1) % segments
    tris = []
    for k in range(n if closed else n - 1):
        a, b = k * segments, ((k + 1) % n) * segments
        tris.append(np.stack([a + i, a + j, b + j], axis=1))
        tris.append(np.stack([a + i, b + j, b + i], axis=1))
    faces = np.concatenate(tris).astype(np.int64)
    return verts, faces


def profile_cylinder(radius: float, depth: float) -> FloatArray:
    h = depth / 2
    return np.array([[0, -h], [radius, -h], [radius, h], [0, h]], dtype=np.float64)


def profile_cone(radius1: float, radius2: float, depth: float) -> FloatArray:
    h = depth / 2
    return np.array([[0, -h], [radius1, -h], [radius2, h], [0, h]], dtype=np.float64)


def profile_sphere(radius: float, rings: int = 16) -> FloatArray:
    a = np.linspace(-np.pi / 2, np.pi / 2, rings + 1)
    return np.stack([radius * np.cos(a), radius * np.sin(a)], axis=1)


def profile_capsule(radius: float, depth: float, rings: int = 8) -> FloatArray:
    h = max(depth / 2 - radius, 0.0)
    a = np.linspace(-np.pi / 2, 0, rings + 1)
    low = np.stack([radius * np.cos(a), -h + radius * np.sin(a)], axis=1)
    high = np.stack([radius * np.cos(-a[::-1]), h - radius * np.sin(-a[::-1])], axis=1)
    return np.concatenate([low, high])


def profile_torus(major: float, minor: float, segments: int = 16) -> FloatArray:
    a = 2 * np.pi * np.arange(segments) / segments
    return np.stack([major + minor * np.cos(a), minor * np.sin(a)], axis=1)


def earclip(outline: npt.ArrayLike) -> IntArray:
    """Triangles ``(k - 2, 3)`` of a simple counter-clockwise polygon (ear clipping)."""
    uv = np.asarray(outline, dtype=np.float64).reshape(-1, 2)
    index = list(range(len(uv)))
    tris: list[list[int]] = []

    def cross(o: int, a: int, b: int) -> float:
        return float(
            (uv[a, 0] - uv[o, 0]) * (uv[b, 1] - uv[o, 1])
            - (uv[a, 1] - uv[o, 1]) * (uv[b, 0] - uv[o, 0])
        )

    def inside(p: int, a: int, b: int, c: int) -> bool:
        return cross(a, b, p) >= 0 and cross(b, c, p) >= 0 and cross(c, a, p) >= 0

    guard = 0
    while len(index) > 3 and guard < 10 * len(uv):
        guard += 1
        for k in range(len(index)):
            a, b, c = index[k - 1], index[k], index[(k + 1) % len(index)]
            if cross(a, b, c) <= 1e-12:
                continue  # reflex or flat corner: not an ear
            if any(inside(p, a, b, c) for p in index if p not in (a, b, c)):
                continue
            tris.append([a, b, c])
            del index[k]
            break
        else:  # no ear (numerically degenerate outline): fan the rest
            tris.extend([index[0], index[j], index[j + 1]] for j in range(1, len(index) - 1))
            index = index[:0]
            break
    if len(index) == 3:
        tris.append(index)
    return np.array(tris, dtype=np.int64).reshape(-1, 3)


def extrude_mesh(outline: npt.ArrayLike, depth: float) -> Mesh:
    """A simple ``(k, 2)`` outline (counter-clockwise) extruded from z = 0 to z = depth."""
    uv = np.asarray(outline, dtype=np.float64).reshape(-1, 2)
    k = len(uv)
    bottom = np.column_stack([uv, np.zeros(k)])
    top = np.column_stack([uv, np.full(k, depth)])
    verts = np.concatenate([bottom, top])
    i = np.arange(k)
    j = (i + 1) % k
    sides = np.concatenate([np.stack([i, j, k + j], 1), np.stack([i, k + j, k + i], 1)])
    cap = earclip(uv)
    caps = np.concatenate([cap[:, ::-1], cap + k])
    return verts, np.concatenate([sides, caps]).astype(np.int64)


def helix_tube_mesh(
    radius: float, pitch: float, turns: float, wire: float, phase: float = 0.0, sides: int = 8
) -> Mesh:
    """A round tube of radius ``wire`` along a helix about Z, centred on the origin.

    The helix starts at angle ``phase`` (radians) at z = -pitch × turns / 2, with bpy_lib's
    24 points a turn; the tube is open at its ends (their area is negligible).
    """
    steps = max(2, round(24 * turns))
    t = np.linspace(0.0, 2 * np.pi * turns, steps + 1)
    height = pitch * turns
    centre = np.stack(
        [
            radius * np.cos(t + phase),
            radius * np.sin(t + phase),
            pitch * t / (2 * np.pi) - height / 2,
        ],
        axis=1,
    )
    tangent = np.stack(
        [
            -radius * np.sin(t + phase),
            radius * np.cos(t + phase),
            np.full_like(t, pitch / (2 * np.pi)),
        ],
        axis=1,
    )
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    normal = np.stack([np.cos(t + phase), np.sin(t + phase), np.zeros_like(t)], axis=1)
    binormal = np.cross(tangent, normal)
    a = 2 * np.pi * np.arange(sides) / sides
    ring = (
        np.cos(a)[None, :, None] * normal[:, None, :]
        + np.sin(a)[None, :, None] * binormal[:, None, :]
    )
    verts = (centre[:, None, :] + wire * ring).reshape(-1, 3)
    i = np.arange(sides)
    j = (i + 1) % sides
    tris = []
    for k in range(steps):
        a0, b0 = k * sides, (k + 1) * sides
        tris.append(np.stack([a0 + i, a0 + j, b0 + j], axis=1))
        tris.append(np.stack([a0 + i, b0 + j, b0 + i], axis=1))
    return verts, np.concatenate(tris).astype(np.int64)


def grid_outline(
    occupied: npt.NDArray[np.bool_], lo: npt.ArrayLike, cell: float, pad: int
) -> npt.NDArray[np.float64] | None:
    """The longest contour of an occupancy grid as a counter-clockwise loop in (u, v): cell
    ``(i, j)`` is centred at ``lo + (i - pad + 0.5, j - pad + 0.5) * cell``. ``None`` when
    the grid has no outline of at least three points."""
    from contourpy import contour_generator

    origin = np.asarray(lo, dtype=np.float64)
    centres_u = origin[0] + (np.arange(occupied.shape[0]) - pad + 0.5) * cell
    centres_v = origin[1] + (np.arange(occupied.shape[1]) - pad + 0.5) * cell
    lines = contour_generator(centres_u, centres_v, occupied.T.astype(float)).lines(0.5)
    if not lines:
        return None
    loop = np.asarray(max(lines, key=lambda line: len(line)), dtype=np.float64)
    if len(loop) > 1 and np.allclose(loop[0], loop[-1]):
        loop = loop[:-1]
    if len(loop) < 3:
        return None
    u, v = loop[:, 0], loop[:, 1]
    if float(np.sum(u * np.roll(v, -1) - np.roll(u, -1) * v)) < 0:
        loop = loop[::-1]
    return loop
