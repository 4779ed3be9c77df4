"""The part fitter's catch-all for shapes no single family describes: a visual hull (no Blender).

A scanned toy, an animal or a bent CAD part is not a box, a lathe or one extruded outline.
Seen along each world axis its surface samples draw a silhouette (traced, concave parts
included); the silhouette extruded along that axis is a prism that holds the whole shape,
and the intersection of two or three such prisms (``bpy_lib``'s exact ``intersection``)
is the shape's visual hull: the object as its three shadows allow. :func:`hull_candidates`
writes one program a choice of axes, and builds each one's numpy twin by carving: every
prism's surface is tessellated finely and only the facets inside all the other prisms are
kept, which is the intersection's surface up to one facet's size.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from datagen.families import MIN_SIZE, num, vec
from datagen.shapes import earclip, grid_outline

__all__ = ["HullCandidate", "hull_candidates", "silhouette"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Mesh = tuple[FloatArray, IntArray]

#: Silhouette raster (cells along the longer side) and the outline's most points.
RESOLUTION = 80
MAX_POINTS = 40
#: Each prism reaches this share of the size past the samples, so that no two prisms
#: share a cap plane (coplanar faces are where exact booleans are fragile).
PAD = 0.02
#: Facet size of the carved twin, as a share of the size.
FACET = 1 / 40
#: Cells of the raster that answers "inside the outline?" for the twin (longer side).
RASTER = 256

#: Directions of the silhouettes: the world axes, then the diagonals (integer vectors, as
#: the program writes them; ``bpy_lib`` normalises a direction).
AXES: dict[str, tuple[int, int, int]] = {"x": (1, 0, 0), "y": (0, 1, 0), "z": (0, 0, 1)}
BODY_DIAGONALS = {"xyz": (1, 1, 1), "xy_z": (1, 1, -1), "x_yz": (1, -1, 1), "_xyz": (-1, 1, 1)}
FACE_DIAGONALS = {
    "xy": (1, 1, 0), "x_y": (1, -1, 0), "xz": (1, 0, 1),
    "x_z": (1, 0, -1), "yz": (0, 1, 1), "y_z": (0, 1, -1),
}  # fmt: skip
#: The sets of directions tried, simplest first.
CHOICES: tuple[tuple[str, ...], ...] = (
    ("x", "y"), ("x", "z"), ("y", "z"), ("x", "y", "z"),
    ("x", "y", "z", *BODY_DIAGONALS), ("x", "y", "z", *FACE_DIAGONALS),
    ("x", "y", "z", *BODY_DIAGONALS, *FACE_DIAGONALS),
)  # fmt: skip
DIRECTIONS = {**AXES, **BODY_DIAGONALS, **FACE_DIAGONALS}


@dataclass(frozen=True)
class _Prism:
    name: str
    basis: FloatArray  # rows: the extrusion direction d, then e1, e2 (orthonormal)
    outline: FloatArray  # (k, 2) in (e1, e2), counter-clockwise
    lo: float  # start along d
    depth: float

    def lift(self, uv: FloatArray, w: FloatArray) -> FloatArray:
        d, e1, e2 = self.basis
        return np.asarray(w[:, None] * d + uv[:, :1] * e1 + uv[:, 1:2] * e2, dtype=np.float64)

    def contains(self, points: FloatArray) -> npt.NDArray[np.bool_]:
        """Whether ``(n, 3)`` points are inside (the outline looked up in a fine raster)."""
        local = points @ self.basis.T
        inside = (local[:, 0] >= self.lo) & (local[:, 0] <= self.lo + self.depth)
        origin, cell, mask = self._raster
        ij = np.floor((local[:, 1:] - origin) / cell).astype(np.int64)
        ok = (
            inside & (ij >= 0).all(axis=1) & (ij[:, 0] < mask.shape[0]) & (ij[:, 1] < mask.shape[1])
        )
        inside[ok] = mask[ij[ok, 0], ij[ok, 1]]
        inside[~ok] = False
        return inside

    @functools.cached_property
    def _raster(self) -> tuple[FloatArray, float, npt.NDArray[np.bool_]]:
        lo, hi = self.outline.min(axis=0), self.outline.max(axis=0)
        cell = float((hi - lo).max()) / RASTER
        n = np.ceil((hi - lo) / cell).astype(int) + 1
        gu = lo[0] + (np.arange(n[0]) + 0.5) * cell
        gv = lo[1] + (np.arange(n[1]) + 0.5) * cell
        centres = np.stack(np.meshgrid(gu, gv, indexing="ij"), axis=-1).reshape(-1, 2)
        mask = _in_polygon(centres, self.outline).reshape(n[0], n[1])
        return lo, cell, mask

    def text(self, first: bool) -> str:
        corner = self.lift(self.outline, np.full(len(self.outline), self.lo))
        pts = ", ".join(vec([round(float(x), 2) for x in p]) for p in corner)
        target = "p" if first else f"cut_{self.name}"
        return (
            f"side_{self.name} = polyline(points=[{pts}], closed=True)\n"
            f"{target} = extrude(side_{self.name}, depth={num(max(self.depth, MIN_SIZE))}, "
            f"direction={vec(list(DIRECTIONS[self.name]))})"
        )

    def surface(self, step: float) -> FloatArray:
        """Facets ``(n, 3, 3)`` of the prism's surface, none longer than about ``step``."""
        tris: list[FloatArray] = []
        n_w = max(1, math.ceil(self.depth / step))
        w = self.lo + self.depth * np.arange(n_w + 1) / n_w
        ring = np.roll(self.outline, -1, axis=0)
        for a, b in zip(self.outline, ring, strict=True):
            n_u = max(1, math.ceil(float(np.linalg.norm(b - a)) / step))
            t = np.arange(n_u + 1) / n_u
            edge = a[None, :] + t[:, None] * (b - a)[None, :]
            d = self.basis[0]
            flat = self.lift(edge, np.zeros(len(edge)))
            grid = w[:, None, None] * d[None, None, :] + flat[None, :, :]  # (w, u, 3)
            p00, p01 = grid[:-1, :-1], grid[:-1, 1:]
            p10, p11 = grid[1:, :-1], grid[1:, 1:]
            tris.append(np.stack([p00, p01, p11], axis=2).reshape(-1, 3, 3))
            tris.append(np.stack([p00, p11, p10], axis=2).reshape(-1, 3, 3))
        for tri in earclip(self.outline):
            corners = self.outline[tri]
            longest = max(float(np.linalg.norm(corners[i] - corners[i - 1])) for i in range(3))
            small = _subdivide(corners, max(1, math.ceil(longest / step)))
            for x in (self.lo, self.lo + self.depth):
                flat = small.reshape(-1, 2)
                tris.append(self.lift(flat, np.full(len(flat), x)).reshape(-1, 3, 3))
        return np.concatenate(tris)


@dataclass(frozen=True)
class HullCandidate:
    """One visual hull: its program body, parameters, numpy twin and number of prisms."""

    body: str
    params: dict[str, Any]
    twin: Mesh
    prisms: int


def _basis(name: str) -> FloatArray:
    d = np.asarray(DIRECTIONS[name], dtype=np.float64)
    d /= np.linalg.norm(d)
    if name in AXES:  # the axes keep the plane's natural (u, v): X -> (Y, Z), Y -> (X, Z)
        axis = "xyz".index(name)
        u, v = (np.eye(3)[i] for i in range(3) if i != axis)
        return np.stack([d, u, v])
    helper = np.array([0.0, 0.0, 1.0]) if abs(d[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    e1 = np.cross(helper, d)
    e1 /= np.linalg.norm(e1)
    return np.stack([d, e1, np.cross(d, e1)])


def hull_candidates(samples: FloatArray) -> list[HullCandidate]:
    """Visual hulls of surface samples ``(n, 3)``, one a set of directions in :data:`CHOICES`.

    Returns [] when the samples are too few for silhouettes. A direction along which the
    part is flat, or too long for one ``extrude`` (depth at most 2), is left out.
    """
    lo, hi = samples.min(axis=0), samples.max(axis=0)
    size = float((hi - lo).max())
    if not size > 0 or len(samples) < 100:
        return []
    pad = PAD * size
    prisms: dict[str, _Prism] = {}
    for name in DIRECTIONS:
        basis = _basis(name)
        local = samples @ basis.T
        w_lo, w_hi = float(local[:, 0].min()), float(local[:, 0].max())
        if w_hi - w_lo < 0.02 * size:  # flat along this direction
            continue
        outline = silhouette(local[:, 1:])
        if outline is None:
            continue
        outline = _rounded_outline(outline)
        if outline is None:
            continue
        start = round(w_lo - pad, 2)
        depth = round(w_hi + pad - start, 2)
        prism = _Prism(name, basis, outline, start, depth)
        corner = prism.lift(outline, np.full(len(outline), start))
        if not 0 < depth <= 2.0 or np.abs(corner).max() > 1.99:
            continue
        prisms[name] = prism
    out: list[HullCandidate] = []
    seen: set[tuple[str, ...]] = set()
    surfaces: dict[str, tuple[FloatArray, FloatArray]] = {}
    for choice in CHOICES:
        chosen = [prisms[n] for n in choice if n in prisms]
        key = tuple(p.name for p in chosen)
        if len(chosen) < 2 or key in seen:
            continue
        seen.add(key)
        for prism in chosen:
            if prism.name not in surfaces:
                facets = prism.surface(FACET * size)
                surfaces[prism.name] = facets, facets.mean(axis=1)
        twin = _carve(chosen, surfaces)
        if twin is None:
            continue
        lines = [prism.text(k == 0) for k, prism in enumerate(chosen)]
        cuts = ", ".join(f"cut_{p.name}" for p in chosen[1:])
        lines.append(f"intersection(p, {cuts})")
        params = {
            "directions": [list(DIRECTIONS[p.name]) for p in chosen],
            "outline_points": [len(p.outline) for p in chosen],
        }
        out.append(HullCandidate("\n".join(lines), params, twin, len(chosen)))
    return out


def silhouette(
    uv: FloatArray, res: int = RESOLUTION, max_points: int = MAX_POINTS
) -> FloatArray | None:
    """A polygon ``(k, 2)`` (counter-clockwise) that holds the projected samples ``uv``.

    The samples are rasterised (``res`` cells along the longer side), closed and filled;
    the boundary is traced and simplified with Douglas-Peucker at half a cell, so a
    sample is never more than about a cell outside the polygon (a prism of it cuts the
    part by at most that). None when the samples do not span an area.
    """
    from scipy import ndimage

    lo, hi = uv.min(axis=0), uv.max(axis=0)
    span = float((hi - lo).max())
    if not span > 0 or float((hi - lo).min()) <= 0:
        return None
    cell, pad = span / res, 3
    shape = np.ceil((hi - lo) / cell).astype(int) + 1 + 2 * pad
    idx = np.floor((uv - lo) / cell).astype(int) + pad
    occupied = np.zeros(shape, dtype=bool)
    occupied[idx[:, 0], idx[:, 1]] = True
    occupied = ndimage.binary_fill_holes(ndimage.binary_closing(occupied, iterations=2))
    labels, count = ndimage.label(occupied)
    if count > 1:  # stray cells: keep the largest region, grown over its neighbours
        sizes = ndimage.sum(occupied, labels, range(1, count + 1))
        occupied = labels == 1 + int(np.argmax(sizes))
    loop = grid_outline(occupied, lo, cell, pad)
    if loop is None:
        return None
    tol = 0.5 * cell
    simple = _douglas_peucker(loop, tol)
    while len(simple) > max_points:
        tol *= 1.3
        simple = _douglas_peucker(loop, tol)
    return simple if len(simple) >= 3 else None


def _douglas_peucker(loop: FloatArray, tol: float) -> FloatArray:
    """A closed loop simplified so that every dropped point is within ``tol`` of the result."""
    far = int(np.argmax(np.linalg.norm(loop - loop[0], axis=1)))
    keep = np.zeros(len(loop), dtype=bool)
    keep[[0, far]] = True
    stack = [(0, far), (far, len(loop))]
    while stack:
        i, j = stack.pop()
        if j - i < 2:
            continue
        a, b = loop[i], loop[j % len(loop)]
        inner = loop[i + 1 : j]
        ab = b - a
        length = float(np.linalg.norm(ab))
        if length > 0:
            rel = inner - a
            dist = np.abs(rel[:, 0] * ab[1] - rel[:, 1] * ab[0]) / length
        else:
            dist = np.linalg.norm(inner - a, axis=1)
        k = int(np.argmax(dist))
        if dist[k] > tol:
            m = i + 1 + k
            keep[m] = True
            stack += [(i, m), (m, j)]
    return loop[keep]


def _rounded_outline(outline: FloatArray) -> FloatArray | None:
    """The outline as the program writes it: two decimals, no repeated points, still CCW."""
    pts = np.round(outline, 2)
    keep = [0]
    for k in range(1, len(pts)):
        if np.abs(pts[k] - pts[keep[-1]]).max() > 0:
            keep.append(k)
    pts = pts[keep]
    if len(pts) > 1 and not np.abs(pts[0] - pts[-1]).max():
        pts = pts[:-1]
    if len(pts) < 3:
        return None
    u, v = pts[:, 0], pts[:, 1]
    area = 0.5 * float(np.sum(u * np.roll(v, -1) - np.roll(u, -1) * v))
    if area <= 0:
        return None
    return np.asarray(pts, dtype=np.float64)


def _carve(prisms: list[_Prism], surfaces: dict[str, tuple[FloatArray, FloatArray]]) -> Mesh | None:
    """The facets of each prism inside all the others, as one triangle soup."""
    kept: list[FloatArray] = []
    for k, prism in enumerate(prisms):
        facets, centroid = surfaces[prism.name]
        for j, other in enumerate(prisms):
            if j != k:
                inside = other.contains(centroid)
                facets, centroid = facets[inside], centroid[inside]
        kept.append(facets)
    soup = np.concatenate(kept)
    if len(soup) < 4:
        return None
    vertices = soup.reshape(-1, 3)
    return vertices, np.arange(len(vertices), dtype=np.int64).reshape(-1, 3)


def _subdivide(corners: FloatArray, n: int) -> FloatArray:
    """A triangle ``(3, d)`` cut into ``n²`` similar triangles ``(n², 3, d)``."""
    weights = _pattern(n)  # (n², 3, 3) barycentric weights of each small triangle's corners
    return np.asarray(weights @ corners, dtype=np.float64)


@functools.cache
def _pattern(n: int) -> FloatArray:
    out = []
    for i in range(n):
        for j in range(n - i):
            p, q, r = (i, j), (i + 1, j), (i, j + 1)
            out.append([p, q, r])
            if j < n - i - 1:
                out.append([q, (i + 1, j + 1), r])
    ij = np.asarray(out, dtype=np.float64) / n  # (n², 3, 2): steps along b - a and c - a
    return np.stack([1 - ij[..., 0] - ij[..., 1], ij[..., 0], ij[..., 1]], axis=-1)


def _in_polygon(points: FloatArray, polygon: FloatArray) -> npt.NDArray[np.bool_]:
    """Even-odd test of ``(n, 2)`` points against a closed ``(k, 2)`` polygon."""
    x, y = points[:, 0][:, None], points[:, 1][:, None]
    a = polygon[None, :, :]
    b = np.roll(polygon, -1, axis=0)[None, :, :]
    ay, by = a[..., 1], b[..., 1]
    straddles = (ay > y) != (by > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        cross_x = a[..., 0] + (y - ay) * (b[..., 0] - a[..., 0]) / (by - ay)
    hits = straddles & (x < cross_x)
    return np.asarray(hits.sum(axis=1) % 2 == 1)
