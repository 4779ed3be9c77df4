"""The part fitter for meshes of several pieces: arrays, mirrors and multi-part programs.

A mesh is split into its connected pieces (vertices welded by position first). When the
pieces are congruent copies laid out in a row, on an axis-aligned grid or around an
axis, one piece is fitted and the program repeats it with ``linear_array``,
``grid_array`` or ``radial_array`` (the house style for symmetric parts); otherwise
(up to :data:`MAX_PARTS` pieces) each piece is fitted on its own and written as its own
``# part_k`` (no Blender).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from datagen.families import vec
from datagen.fit_single import Scored, fit_single, rank_results
from datagen.shapes import rotation_xyz
from worker.metrics import compute_metrics, prepare_ground_truth

__all__ = ["MAX_PARTS", "components", "fit_pieces", "shape_key"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Mesh = tuple[FloatArray, IntArray]

MAX_PARTS = 6
MAX_PIECES = 64
ARRAY_RANK = 9
PARTS_RANK = 10


def components(vertices: FloatArray, faces: IntArray) -> list[Mesh]:
    """The connected pieces of a mesh (vertices at the same position count as one)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    scale = float(np.ptp(vertices, axis=0).max()) or 1.0
    keys = np.round(vertices / (scale * 1e-6)).astype(np.int64)
    _, welded = np.unique(keys, axis=0, return_inverse=True)
    welded = welded.reshape(-1)
    wf = welded[faces]
    n = int(welded.max()) + 1
    rows = np.concatenate([wf[:, 0], wf[:, 1], wf[:, 2]])
    cols = np.concatenate([wf[:, 1], wf[:, 2], wf[:, 0]])
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    count, labels = connected_components(graph, directed=False)
    face_label = labels[wf[:, 0]]
    pieces: list[Mesh] = []
    for k in range(count):
        sel = faces[face_label == k]
        if not len(sel):
            continue
        used, local = np.unique(sel, return_inverse=True)
        pieces.append((vertices[used], local.reshape(-1, 3).astype(np.int64)))
    pieces.sort(key=lambda m: tuple(np.round(m[0].mean(axis=0), 4)))
    return pieces


def shape_key(mesh: Mesh) -> FloatArray:
    """Rotation-invariant size of a piece: the spread of its vertices along its own axes."""
    centred = mesh[0] - mesh[0].mean(axis=0)
    values = np.sort(np.linalg.svd(centred, compute_uv=False)) / np.sqrt(len(centred))
    return np.asarray(values, dtype=np.float64)


def _congruent(pieces: Sequence[Mesh], tol: float) -> bool:
    first = pieces[0]
    key = shape_key(first)
    return all(
        len(p[1]) == len(first[1]) and np.abs(shape_key(p) - key).max() < tol for p in pieces
    )


def _centre(mesh: Mesh) -> FloatArray:
    return np.asarray((mesh[0].min(axis=0) + mesh[0].max(axis=0)) / 2, dtype=np.float64)


def _linear(pieces: Sequence[Mesh], tol: float) -> tuple[int, FloatArray] | None:
    """Index of the first piece and the step, when the centres are evenly spaced on a line."""
    c = np.array([_centre(p) for p in pieces])
    direction = c[-1] - c[0]
    if np.linalg.norm(direction) < tol:
        return None
    order = np.argsort((c - c[0]) @ direction)
    steps = np.diff(c[order], axis=0)
    if np.abs(steps - steps.mean(axis=0)).max() > tol:
        return None
    return int(order[0]), steps.mean(axis=0)


def _grid(pieces: Sequence[Mesh], tol: float) -> tuple[int, list[int], list[float]] | None:
    """First piece, counts and spacing when the centres fill an axis-aligned grid."""
    c = np.array([_centre(p) for p in pieces])
    counts, spacing = [], []
    for axis in range(3):
        values = np.sort(c[:, axis])
        levels = [values[0]]
        for x in values[1:]:
            if x - levels[-1] > tol:
                levels.append(x)
        steps = np.diff(levels)
        if len(steps) and np.abs(steps - steps.mean()).max() > tol:
            return None
        counts.append(len(levels))
        spacing.append(float(steps.mean()) if len(steps) else 0.0)
    if int(np.prod(counts)) != len(pieces):
        return None
    first = int(np.argmin(np.sum((c - c.min(axis=0)) ** 2, axis=1)))
    return first, counts, spacing


def _radial(pieces: Sequence[Mesh], tol: float) -> tuple[str, FloatArray] | None:
    """Axis name and centre when the pieces sit evenly around a world axis."""
    c = np.array([_centre(p) for p in pieces])
    if len(c) < 3:
        return None
    m = c.mean(axis=0)
    radius = np.linalg.norm(c - m, axis=1)
    if radius.min() < tol or np.ptp(radius) > tol:
        return None
    _, _, vt = np.linalg.svd(c - m)
    normal = vt[2]
    axis = int(np.argmax(np.abs(normal)))
    if abs(normal[axis]) < 0.995:
        return None
    return "XYZ"[axis], m


def _rename(body: str, k: int) -> str:
    return re.sub(r"\b(p|profile|outline)\b", lambda m: f"{m.group(1)}{k}", body)


def _best(mesh: Mesh, **options: Any) -> Scored:
    gt = prepare_ground_truth(*mesh, points=options["points"], seed=options["seed"],
                              unit_cube_points=256)  # fmt: skip
    return rank_results(fit_single(*mesh, gt, **options), 0.005)[0]


def _score(twins: Sequence[Mesh], gt: Any) -> dict[str, float]:
    verts, faces, offset = [], [], 0
    for v, f in twins:
        verts.append(v)
        faces.append(f + offset)
        offset += len(v)
    return compute_metrics(np.concatenate(verts), np.concatenate(faces), gt)


def fit_pieces(vertices: FloatArray, faces: IntArray, gt: Any, **options: Any) -> list[Scored]:
    """Array/mirror or multi-part programs for a mesh of several pieces ([] for one piece)."""
    pieces = components(vertices, faces)
    if not 1 < len(pieces) <= MAX_PIECES:
        return []
    scale = float(np.ptp(vertices, axis=0).max())
    tol = 0.01 * scale
    out: list[Scored] = []
    if _congruent(pieces, tol):
        pattern = _array_pattern(pieces, tol)
        if pattern is not None:
            first, call, moves = pattern
            part = _best(pieces[first], **options)
            twins = [m(part.twin) for m in moves]
            metrics = _score(twins, gt)
            body = f"{part.body}\n{call}"
            params = {"piece": part.params, "piece_family": part.family, "count": len(pieces)}
            out.append(Scored(metrics["f_score_0.05"], "array", body, params, metrics,
                              twins[0], ARRAY_RANK))  # fmt: skip
    if len(pieces) <= MAX_PARTS and not (out and out[0].score >= 0.995):
        fitted = [_best(piece, **options) for piece in pieces]
        lines = []
        for k, part in enumerate(fitted, 1):
            label = {"box": "block", "revolve": "turned body", "extrude": "plate"}.get(
                part.family, part.family
            )
            lines.append(f"# part_{k}: {label}\n{_rename(part.body, k)}")
        metrics = _score([p.twin for p in fitted], gt)
        params = {"parts": [{"family": p.family, **p.params} for p in fitted]}
        out.append(Scored(metrics["f_score_0.05"], "parts", "\n".join(lines), params, metrics,
                          fitted[0].twin, PARTS_RANK))  # fmt: skip
    return out


def _translate(offset: FloatArray) -> Any:
    return lambda mesh: (mesh[0] + offset, mesh[1])


def _array_pattern(pieces: Sequence[Mesh], tol: float) -> tuple[int, str, list[Any]] | None:
    """(first piece, the array call, the transforms of the copies) of a repeated piece."""
    count = len(pieces)
    grid = _grid(pieces, tol)
    if grid is not None and sum(n > 1 for n in grid[1]) >= 2:
        first, counts, spacing = grid
        sp = [round(s, 2) for s in spacing]
        n3 = counts if counts[2] > 1 else counts[:2]
        s3 = sp if counts[2] > 1 else sp[:2]
        call = f"grid_array(p, counts={vec(n3)}, spacing={vec(s3)})"
        moves = [
            _translate(np.array([i * sp[0], j * sp[1], k * sp[2]]))
            for k in range(counts[2])
            for j in range(counts[1])
            for i in range(counts[0])
        ]
        return first, call, moves
    line = _linear(pieces, tol)
    if line is not None:
        first, step = line
        st = np.round(step, 2)
        call = f"linear_array(p, count={count}, offset={vec(list(st))})"
        return first, call, [_translate(st * i) for i in range(count)]
    radial = _radial(pieces, tol)
    if radial is not None:
        axis, centre = radial
        ctr = np.round(centre, 2)
        call = f"radial_array(p, count={count}, axis='{axis}', center={vec(list(ctr))})"
        moves = []
        for i in range(count):
            angles = [0.0, 0.0, 0.0]
            angles["XYZ".index(axis)] = 360.0 * i / count
            rot = rotation_xyz(angles)
            moves.append(lambda mesh, r=rot: ((mesh[0] - ctr) @ r.T + ctr, mesh[1]))
        return 0, call, moves
    return None
