"""Candidate shapes of the part fitter: frames, initial parameters, profiles, outlines (no Blender).

A :class:`Candidate` is a family, a frame (world-from-local rotation), a centre and shape
parameters; :func:`starts` derives one per family, frame and axis from surface samples:
box extents, radii, a lathe profile (outer and, for hollow parts, inner radius per
height), a convex or traced (concave) outline for extrusions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from datagen.shapes import (
    box_mesh,
    extrude_mesh,
    grid_outline,
    helix_tube_mesh,
    lathe_mesh,
    profile_capsule,
    profile_cone,
    profile_cylinder,
    profile_sphere,
    profile_torus,
    rotation_xyz,
)

__all__ = ["PHASE_OFFSET", "Candidate", "deform_z", "simplify", "starts", "traced_outline"]

FloatArray = npt.NDArray[np.float64]
Mesh = tuple[FloatArray, npt.NDArray[np.int64]]

#: The spring's phase is stored shifted so that the optimiser's relative steps stay small.
PHASE_OFFSET = 4 * np.pi

_TO_Z = {  # rotations taking local Z onto a frame axis (as a program would write them)
    "Z": np.eye(3),
    "X": rotation_xyz((0, 90, 0)),
    "Y": rotation_xyz((-90, 0, 0)),
}


@dataclass
class Candidate:
    family: str
    frame: FloatArray  # world_from_local rotation
    centre: FloatArray  # world position of the local origin
    shape: FloatArray  # the family's shape parameters
    extra: dict[str, Any] = field(default_factory=dict)
    deform: tuple[str, float] | None = None  # ("twist", degrees) or ("taper", factor), axis Z

    def mesh(self) -> Mesh:
        v, f = _local_mesh(self.family, self.shape, self.extra)
        world = v @ self.frame.T + self.centre
        if self.deform is not None:
            world = deform_z(world, *self.deform)
        return world, f


def deform_z(vertices: FloatArray, method: str, amount: float) -> FloatArray:
    """Numpy twin of ``bpy_lib``'s ``twist``/``taper`` along Z (about the part's box centre)."""
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    span = float(hi[2] - lo[2])
    if span < 1e-9:
        return vertices
    mid = (lo + hi) / 2
    t = (vertices[:, 2] - lo[2]) / span
    out = vertices.copy()
    da, db = vertices[:, 0] - mid[0], vertices[:, 1] - mid[1]
    if method == "taper":
        scale = 1.0 + (amount - 1.0) * t
        out[:, 0], out[:, 1] = mid[0] + da * scale, mid[1] + db * scale
    else:
        phi = np.radians(amount) * t
        out[:, 0] = mid[0] + da * np.cos(phi) - db * np.sin(phi)
        out[:, 1] = mid[1] + da * np.sin(phi) + db * np.cos(phi)
    return out


def _local_mesh(family: str, s: FloatArray, extra: dict[str, Any]) -> Mesh:
    s = np.maximum(s, 1e-3) if family != "revolve" else s
    if family == "box":
        return box_mesh(s)
    if family == "cylinder":
        return lathe_mesh(profile_cylinder(s[0], s[1]))
    if family == "cone":
        return lathe_mesh(profile_cone(s[0], s[1], s[2]))
    if family == "capsule":
        return lathe_mesh(profile_capsule(s[0], max(s[1], 2 * s[0])))
    if family == "torus":
        return lathe_mesh(profile_torus(s[0], min(s[1], s[0] * 0.99)), closed=True, segments=48)
    if family in ("sphere", "ellipsoid"):
        v, f = lathe_mesh(profile_sphere(1.0))
        radii = np.array([s[0], s[0], s[0]]) if family == "sphere" else s[:3]
        return v * radii, f
    if family == "revolve":
        return lathe_mesh(extra["profile"] * s[0], closed=extra["closed"])
    if family == "spring":  # shape: radius, pitch, turns, wire, phase + PHASE_OFFSET
        return helix_tube_mesh(s[0], s[1], s[2], s[3], s[4] - PHASE_OFFSET)
    if family == "extrude":
        v, f = extrude_mesh(extra["outline"] * s[0], extra["depth"] * s[1])
        return v - np.array([0, 0, extra["depth"] * s[1] / 2]), f
    raise ValueError(f"unknown family {family!r}")


def _cross2(a: FloatArray, b: FloatArray) -> FloatArray:
    return np.asarray(a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0], dtype=np.float64)


# -- initial guesses ----------------------------------------------------------------------


def _frames(points: FloatArray) -> list[FloatArray]:
    frames = [np.eye(3)]
    centred = points - points.mean(axis=0)
    _, vectors = np.linalg.eigh(centred.T @ centred)
    pca = vectors[:, ::-1]
    if np.linalg.det(pca) < 0:
        pca[:, 2] *= -1
    # snap to the world axes when it is (nearly) a permutation of them
    if np.abs(np.abs(pca).max(axis=0) - 1).max() > 0.02:
        frames.append(pca)
    return frames


def starts(points: FloatArray, families: Sequence[str]) -> list[Candidate]:
    out: list[Candidate] = []
    for frame in _frames(points):
        for axis, to_z in _TO_Z.items():
            rot = frame @ to_z
            local = points @ rot  # world -> local
            lo, hi = local.min(axis=0), local.max(axis=0)
            mid = (lo + hi) / 2
            centre = rot @ mid
            q = local - mid
            ext = hi - lo
            radial = np.hypot(q[:, 0], q[:, 1])
            r_max = float(np.percentile(radial, 99.5))
            if axis == "Z":
                if "box" in families:
                    out.append(Candidate("box", rot, centre, ext.copy()))
                if "sphere" in families:
                    out.append(Candidate("sphere", rot, centre, np.array([ext.max() / 2])))
                if "ellipsoid" in families:
                    out.append(Candidate("ellipsoid", rot, centre, ext / 2))
            if "cylinder" in families:
                out.append(Candidate("cylinder", rot, centre, np.array([r_max, ext[2]])))
            if "capsule" in families:
                out.append(Candidate("capsule", rot, centre, np.array([r_max, ext[2]])))
            if "cone" in families:
                band = max(ext[2] * 0.1, 1e-6)
                low = radial[q[:, 2] < -ext[2] / 2 + band]
                high = radial[q[:, 2] > ext[2] / 2 - band]
                r1 = float(low.max()) if len(low) else r_max
                r2 = float(high.max()) if len(high) else 0.0
                if r2 > r1:  # wider at the top: turn the cone over
                    flip = rot @ np.diag([1.0, -1.0, -1.0])
                    out.append(Candidate("cone", flip, centre, np.array([r2, r1, ext[2]])))
                else:
                    out.append(Candidate("cone", rot, centre, np.array([r1, r2, ext[2]])))
            if "torus" in families:
                minor = ext[2] / 2
                out.append(
                    Candidate("torus", rot, centre, np.array([max(r_max - minor, minor), minor]))
                )
            if "revolve" in families:
                profile, closed = _fit_profile(q, radial)
                out.append(
                    Candidate(
                        "revolve", rot, centre, np.array([1.0]),
                        {"profile": profile, "closed": closed},
                    )
                )  # fmt: skip
            if "spring" in families:
                spring = _fit_spring(q, radial)
                if spring is not None:
                    out.append(Candidate("spring", rot, centre, spring))
            if "extrude" in families:
                for outline in (_convex_outline(q[:, :2]), traced_outline(q[:, :2])):
                    if outline is None:
                        continue
                    out.append(
                        Candidate(
                            "extrude", rot, centre, np.array([1.0, 1.0]),
                            {"outline": outline, "depth": float(ext[2])},
                        )
                    )  # fmt: skip
    return out


def _fit_profile(q: FloatArray, radial: FloatArray, bins: int = 14) -> tuple[FloatArray, bool]:
    """A lathe profile ``(r, z)`` from samples: outer radius per height (and inner if hollow)."""
    z = q[:, 2]
    lo, hi = float(z.min()), float(z.max())
    edges = np.linspace(lo, hi, bins + 1)
    outer, inner, zs = [], [], []
    for k in range(bins):
        sel = (z >= edges[k]) & (z <= edges[k + 1])
        if not sel.any():
            continue
        outer.append(float(radial[sel].max()))
        inner.append(float(radial[sel].min()))
        zs.append(float((edges[k] + edges[k + 1]) / 2))
    zc = np.array([lo, *zs, hi])
    r_out = np.array([outer[0], *outer, outer[-1]])
    r_in = np.array([inner[0], *inner, inner[-1]])
    mid = slice(2, -2) if len(r_in) > 6 else slice(None)
    hollow = bool(np.median(r_in[mid]) > 0.25 * np.median(r_out[mid]))
    if hollow:
        pts = np.concatenate([np.stack([r_out, zc], 1), np.stack([r_in, zc], 1)[::-1]])
        return simplify(pts, closed=True), True
    pts = np.concatenate([[[0.0, lo]], np.stack([r_out, zc], 1), [[0.0, hi]]])
    return simplify(pts, closed=False), False


def _fit_spring(q: FloatArray, radial: FloatArray) -> FloatArray | None:
    """Radius, pitch, turns, wire and (shifted) phase of a helical tube about local Z."""
    lo_r, hi_r = np.percentile(radial, [2, 98])
    radius, wire = (lo_r + hi_r) / 2, max((hi_r - lo_r) / 2, 0.005)
    z_ext = float(np.ptp(q[:, 2]))
    if radius <= 0 or wire > 0.45 * radius or z_ext < 3 * wire:
        return None
    theta = np.arctan2(q[:, 1], q[:, 0])
    best = (0.0, 0.0)
    for pitch in np.linspace(2.05 * wire, max(z_ext - 2 * wire, 2.1 * wire), 160):
        strength = float(np.abs(np.mean(np.exp(1j * (2 * np.pi * q[:, 2] / pitch - theta)))))
        if strength > best[0]:
            best = (strength, float(pitch))
    strength, pitch = best
    if strength < 0.25:  # a thick wire spreads the phases: be lenient, the score decides
        return None
    const = float(np.angle(np.mean(np.exp(1j * (2 * np.pi * q[:, 2] / pitch - theta)))))
    turns = max((z_ext - 2 * wire) / pitch, 0.25)
    phase = float(np.mod(-np.pi * turns - const, 2 * np.pi))
    return np.array([radius, pitch, turns, wire, phase + PHASE_OFFSET])


def simplify(points: FloatArray, closed: bool, tol_frac: float = 0.01) -> FloatArray:
    """Drop points that lie within ``tol_frac`` × size of the line through their neighbours."""
    pts = [p for p in points]
    tol = tol_frac * float(np.ptp(points, axis=0).max() or 1.0)
    changed = True
    while changed and len(pts) > 3:
        changed = False
        for k in range(1 if not closed else 0, len(pts) - (0 if closed else 1)):
            a, b, c = pts[k - 1], pts[k], pts[(k + 1) % len(pts)]
            ab, ac = b - a, c - a
            length = float(np.linalg.norm(ac))
            dist = abs(ab[0] * ac[1] - ab[1] * ac[0]) / length if length > 0 else 0.0
            if dist < tol:
                del pts[k]
                changed = True
                break
    return np.array(pts)


def _convex_outline(uv: FloatArray, max_points: int = 16) -> FloatArray | None:
    from scipy.spatial import ConvexHull, QhullError

    try:
        hull = ConvexHull(uv)
    except (QhullError, ValueError):
        return None
    outline = uv[hull.vertices]  # counter-clockwise
    while len(outline) > max_points:  # Visvalingam: drop the point of least area
        prev, nxt = np.roll(outline, 1, axis=0), np.roll(outline, -1, axis=0)
        area = np.abs(_cross2(outline - prev, nxt - prev))
        outline = np.delete(outline, int(np.argmin(area)), axis=0)
    return simplify(outline, closed=True, tol_frac=0.005)


def traced_outline(uv: FloatArray, res: int = 48, max_points: int = 24) -> FloatArray | None:
    """The outer boundary of projected samples, concave parts included (raster + contour)."""
    from scipy import ndimage

    lo, hi = uv.min(axis=0), uv.max(axis=0)
    span = float((hi - lo).max())
    if span <= 0:
        return None
    cell, pad = span / res, 2
    shape = np.ceil((hi - lo) / cell).astype(int) + 1 + 2 * pad
    idx = np.floor((uv - lo) / cell).astype(int) + pad
    occupied = np.zeros(shape, dtype=bool)
    occupied[idx[:, 0], idx[:, 1]] = True
    occupied = ndimage.binary_fill_holes(ndimage.binary_closing(occupied, iterations=1))
    loop = grid_outline(occupied, lo, cell, pad)
    if loop is None:
        return None
    loop = simplify(loop, closed=True, tol_frac=0.01)
    while len(loop) > max_points:
        prev, nxt = np.roll(loop, 1, axis=0), np.roll(loop, -1, axis=0)
        area = np.abs(_cross2(loop - prev, nxt - prev))
        loop = np.delete(loop, int(np.argmin(area)), axis=0)
    return loop
