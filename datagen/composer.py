"""Composed objects (issue 19, point 2): 2–6 generated parts that touch or stack (no Blender).

The middle curriculum tier: random compositions of the single parts of ``parts.jsonl``
(drawn so that their complexity stays within the medium band of
:func:`datagen.object_assembler.difficulty`: 6 parts only where no operation adds weight, so
in practice 2–5)
(:mod:`datagen.part_generator`, which records each part's box). Object ``i`` of a build
seeded with ``s`` draws its part count, its parts and their places from
:func:`datagen.families.sample_rng` ``(s, i)``. Each part is scaled to a random size, then
put against a face of a part already placed (on top of it, or beside it along x or y) with
its centre over that part's face and the two boxes overlapping by a share of the thinner
one, so every part touches the composition (its boxes form one connected group; nothing
floats apart). The whole is scaled and centred into bpy_lib's frame, and the program
applies each part's place as ``scale(p, ...)`` and ``move(p, ...)`` after its body
(generated parts name their main handle ``p``).

Only solid parts are drawn: a part whose operations leave its box mostly empty (arrays of
legs or slats, springs, rings, thin shells) can have its box touch another part while its
mesh does not, so those stay single parts (:data:`SPARSE_OPS`). Boxes still differ from shapes (a
wedge, a tilted disc), so the builder runs each composition and leaves out, as
``floating``, one whose pieces do not all touch (:func:`touching_groups`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from datagen.families import sample_rng
from datagen.object_assembler import MEDIUM_MAX, OP_WEIGHTS, ObjectProgram, part_body
from datagen.templates import Part

__all__ = [
    "SPARSE_OPS",
    "Placement",
    "compose_object",
    "place_boxes",
    "solid_parts",
    "touching_groups",
]

#: Directions a new part is put against an earlier one: on top, or beside it.
_DIRECTIONS = ((2, 1.0), (0, 1.0), (0, -1.0), (1, 1.0), (1, -1.0))
#: Share of the thinner box (along the contact axis) the two boxes overlap by.
_OVERLAP = 0.3
#: Half-size of the composition in bpy_lib's frame.
_HALF = 0.9
_SALT = 0xC0_3905ED
#: Operations whose parts are not drawn for compositions (their boxes are mostly empty).
SPARSE_OPS = frozenset(
    {"linear_array", "radial_array", "grid_array", "helix", "sweep", "torus", "solidify"}
)

#: Operations every composed part's placing adds (``scale(p, ...)``, ``move(p, ...)``).
_PLACING_OPS = ("move", "scale")

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Placement:
    """Where one part goes: ``scale(p, factor, pivot=centre)`` then ``move(p, offset)``."""

    factor: float
    pivot: tuple[float, float, float]
    offset: tuple[float, float, float]
    lo: tuple[float, float, float]  # the placed box, in bpy_lib's frame
    hi: tuple[float, float, float]


def place_boxes(extents: FloatArray, rng: np.random.Generator) -> tuple[FloatArray, FloatArray]:
    """Centres and extents of boxes stacked or set side by side, each touching an earlier one.

    Parameters
    ----------
    extents : (n, 3) float
        The boxes' sizes (already scaled).
    rng : numpy Generator

    Returns
    -------
    centres : (n, 3) float
    extents : (n, 3) float
        Unchanged; returned for symmetry.
    """
    e = np.asarray(extents, dtype=np.float64).reshape(-1, 3)
    centres = np.zeros_like(e)
    for k in range(1, len(e)):
        j = int(rng.integers(0, k))
        axis, sign = _DIRECTIONS[int(rng.integers(0, len(_DIRECTIONS)))]
        c = centres[j].copy()
        overlap = _OVERLAP * min(e[j, axis], e[k, axis])
        c[axis] += sign * ((e[j, axis] + e[k, axis]) / 2 - overlap)
        for lateral in {0, 1, 2} - {axis}:
            # the centre stays over the smaller of the two faces: a real contact patch
            slack = min(e[j, lateral], e[k, lateral]) / 8
            c[lateral] += rng.uniform(-slack, slack)
        centres[k] = c
    return centres, e


def _placements(
    boxes: Sequence[tuple[FloatArray, FloatArray]], rng: np.random.Generator
) -> list[Placement]:
    """Scale factors and offsets that put the parts' boxes into one touching group in frame."""
    lo = np.array([b[0] for b in boxes], dtype=np.float64)
    hi = np.array([b[1] for b in boxes], dtype=np.float64)
    size = np.maximum(hi - lo, 1e-3)
    factors = rng.uniform(0.4, 1.0, len(boxes)) / size.max(axis=1)
    centres, scaled = place_boxes(size * factors[:, None], rng)
    union_lo = (centres - scaled / 2).min(axis=0)
    union_hi = (centres + scaled / 2).max(axis=0)
    g = 2 * _HALF / float((union_hi - union_lo).max())
    shift = (union_lo + union_hi) / 2
    out = []
    for k in range(len(boxes)):
        pivot = (lo[k] + hi[k]) / 2
        target = (centres[k] - shift) * g
        half = scaled[k] * g / 2
        out.append(
            Placement(
                factor=float(factors[k] * g),
                pivot=_vec(pivot),
                offset=_vec(target - pivot),
                lo=_vec(target - half),
                hi=_vec(target + half),
            )
        )
    return out


def _vec(x: FloatArray) -> tuple[float, float, float]:
    return (float(x[0]), float(x[1]), float(x[2]))


def _num(x: float) -> str:
    return f"{round(x, 3):g}"


def solid_parts(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of ``parts.jsonl`` a composition may draw (none of :data:`SPARSE_OPS`)."""
    return [r for r in rows if not SPARSE_OPS & set(r.get("ops") or ())]


def _draw(
    rows: Sequence[dict[str, Any]], count: int, rng: np.random.Generator
) -> list[dict[str, Any]]:
    """Up to ``count`` parts in a random order, leaving out any that would lift the
    composition past the middle tier (complexity above ``MEDIUM_MAX``: part count plus the
    weights of the operations used, the placing ``scale``/``move`` included). At least two."""
    chosen: list[dict[str, Any]] = []
    ops = set(_PLACING_OPS)
    order = [rows[int(k)] for k in rng.permutation(len(rows))]
    for row in order:
        with_row = ops | set(row.get("ops") or ())
        if len(chosen) + 1 + sum(OP_WEIGHTS.get(o, 0.0) for o in with_row) > MEDIUM_MAX:
            continue
        chosen.append(row)
        ops = with_row
        if len(chosen) == count:
            break
    # parts too heavy for any pair: the first two drawn (a hard composition, rare)
    return chosen if len(chosen) >= 2 else order[:2]


def compose_object(
    rows: Sequence[dict[str, Any]], seed: int, index: int, *, max_parts: int = 6
) -> ObjectProgram:
    """Composed object ``index``: 2 to ``max_parts`` parts of ``rows`` (solid parts of
    ``parts.jsonl``).

    Raises
    ------
    ValueError
        When there are fewer than two parts to draw from.
    """
    if len(rows) < 2:
        raise ValueError(f"composing needs at least 2 generated parts, got {len(rows)}")
    rng = sample_rng(seed, _SALT + index)
    count = int(rng.integers(2, max(2, min(max_parts, len(rows))) + 1))
    chosen = _draw(rows, count, rng)
    boxes = [(np.asarray(r["bbox"][0], float), np.asarray(r["bbox"][1], float)) for r in chosen]
    parts = []
    for row, place in zip(chosen, _placements(boxes, rng), strict=True):
        body = part_body(str(row["code"]))
        pivot = ", ".join(map(_num, place.pivot))
        offset = ", ".join(map(_num, place.offset))
        code = (
            f"{body}\nscale(p, factor={_num(place.factor)}, pivot=[{pivot}])\n"
            f"move(p, offset=[{offset}])"
        )
        parts.append(Part(str(row.get("label") or row.get("family") or "part"), code))
    ids = [str(r["id"]) for r in chosen]
    return ObjectProgram(
        f"composed-{seed}-{index:05d}",
        "composed",
        "object",
        tuple(parts),
        {"source": "composed", "parts": ids},
    )


def touching_groups(vertices: npt.ArrayLike, faces: npt.ArrayLike, *, tol: float = 0.02) -> int:
    """Groups of a mesh's pieces that touch: 1 when nothing floats apart.

    Two connected pieces touch when their surfaces come within ``tol`` × the mesh's longest
    side (sampled, 800 points a piece).

    Parameters
    ----------
    vertices : (n, 3) float
    faces : (m, 3) int
    tol : float
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    from worker.geometry.sampling import sample_surface

    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]]])
    adjacency = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), (len(v), len(v)))
    labels = connected_components(adjacency, directed=False)[1][f[:, 0]]
    pieces = []
    for label in np.unique(labels):
        sub = f[labels == label]
        pieces.append(sample_surface(v, sub, 800, int(label)).points)
    if len(pieces) <= 1:
        return len(pieces)
    reach = tol * float(np.ptp(v, axis=0).max())
    trees = [cKDTree(p) for p in pieces]
    rows, cols = [], []
    for a in range(len(pieces)):
        for b in range(a + 1, len(pieces)):
            if float(trees[b].query(pieces[a], distance_upper_bound=reach)[0].min()) < reach:
                rows.append(a)
                cols.append(b)
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(pieces), len(pieces)))
    return int(connected_components(graph, directed=False)[0])
