"""Stage 4's core: fit one ``bpy_lib`` shape family to a mesh (no Blender here).

:func:`fit_single` does steps 1–4 of :mod:`datagen.part_fitter` for single shapes and scores
each refined candidate; :mod:`datagen.fit_composite` builds on it for meshes of several
pieces; :func:`datagen.part_fitter.fit_mesh` chooses between them and verifies the winner.
The numpy twins of the shapes are in :mod:`datagen.shapes`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from datagen.families import MIN_SIZE, num, vec
from datagen.fit_candidates import PHASE_OFFSET, Candidate, starts
from datagen.fit_hull import hull_candidates
from datagen.shapes import euler_xyz, rotation_xyz
from worker.geometry.sampling import sample_surface
from worker.metrics import compute_metrics

__all__ = [
    "FAMILY_RANK",
    "LABELS",
    "Scored",
    "fit_single",
    "rank_results",
    "wrap_program",
]

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
Mesh = tuple[FloatArray, npt.NDArray[np.int64]]

#: Simplicity order: on a tie, the family earlier here wins.
FAMILY_RANK = {
    "box": 0,
    "sphere": 1,
    "cylinder": 2,
    "cone": 3,
    "capsule": 4,
    "torus": 5,
    "ellipsoid": 6,
    "extrude": 7,
    "revolve": 8,
    "spring": 9,
    "hull": 12,
}

#: Below this F@0.05 the single families leave room, and the visual hull is tried too.
HULL_BELOW = 0.97
#: Surface samples that draw the hull's silhouettes (dense enough for an 80-cell raster).
HULL_SAMPLES = 12_000


#: Added to a family's rank when a deformer follows it (a plain shape wins a tie).
DEFORMED_RANK = 20


# -- optimisation -------------------------------------------------------------------------


class _Objective:
    """Mean two-sided distance between a candidate's samples and the mesh's (fast)."""

    def __init__(self, gt_points: FloatArray, scale: float, seed: int) -> None:
        from scipy.spatial import cKDTree

        self.gt = gt_points
        self.tree = cKDTree(gt_points)
        self.scale = scale
        self.seed = seed

    def __call__(self, mesh: Mesh) -> float:
        # scipy's single-threaded tree: pykdtree's OpenMP threads thrash on a busy machine
        from scipy.spatial import cKDTree

        v, f = mesh
        if not np.isfinite(v).all():
            return float("inf")
        sample = sample_surface(v, f, len(self.gt), self.seed).points
        d1, _ = self.tree.query(sample, k=1)
        d2, _ = cKDTree(sample).query(self.gt, k=1)
        return float(d1.mean() + d2.mean()) / self.scale


def _refine(cand: Candidate, objective: _Objective, max_evals: int) -> Candidate:
    """Nelder-Mead over the centre, the shape scales and the deformer's amount (if any)."""
    from scipy.optimize import minimize

    n_shape = len(cand.shape)
    amount0 = cand.deform[1] if cand.deform else None
    x0 = np.concatenate([np.zeros(3), np.ones(n_shape), [] if amount0 is None else [1.0]])
    base = cand.shape.copy()
    size = objective.scale

    def unpack(x: FloatArray) -> Candidate:
        centre = cand.centre + cand.frame @ (x[:3] * size)
        shape = base * np.abs(x[3 : 3 + n_shape])
        deform = None if cand.deform is None else (cand.deform[0], float((amount0 or 0.0) * x[-1]))
        return Candidate(cand.family, cand.frame, centre, shape, cand.extra, deform)

    def loss(x: FloatArray) -> float:
        return objective(unpack(x).mesh())

    result = minimize(
        loss,
        x0,
        method="Nelder-Mead",
        options={"maxfev": max_evals, "xatol": 1e-3, "fatol": 1e-5},
    )
    best = unpack(result.x)
    return best if result.fun <= loss(x0) else cand


def _with_deformer(cand: Candidate, objective: _Objective, max_evals: int) -> Candidate | None:
    """The candidate with the best twist or taper about Z (coarse scan, then refined)."""
    trials: list[tuple[str, float]] = [
        ("twist", float(a)) for a in (-90, -60, -45, -30, -15, 15, 30, 45, 60, 90)
    ]
    trials += [("taper", f) for f in (0.3, 0.5, 0.7, 1.3, 1.6)]
    if cand.family == "box":  # the low end is not deformed: size the box by its bottom slice
        z = objective.gt[:, 2]
        lo, hi = float(z.min()), float(z.max())
        band = objective.gt[z < lo + 0.1 * (hi - lo)]
        if len(band) >= 8:
            b_lo, b_hi = band.min(axis=0), band.max(axis=0)
            centre = np.array([(b_lo[0] + b_hi[0]) / 2, (b_lo[1] + b_hi[1]) / 2, (lo + hi) / 2])
            shape = np.array([b_hi[0] - b_lo[0], b_hi[1] - b_lo[1], hi - lo])
            cand = Candidate("box", cand.frame, centre, shape, cand.extra)
    plain = objective(cand.mesh())
    scored = []
    for method, amount in trials:
        trial = Candidate(cand.family, cand.frame, cand.centre, cand.shape, cand.extra,
                          (method, float(amount)))  # fmt: skip
        scored.append((objective(trial.mesh()), trial))
    value, best = min(scored, key=lambda t: t[0])
    if value >= plain * 0.9:
        return None
    return _refine(best, objective, max_evals)


# -- programs -----------------------------------------------------------------------------


def _rotation_text(frame: FloatArray) -> str | None:
    angles = [round(a, 2) for a in euler_xyz(frame)]
    return None if all(abs(a) < 0.01 for a in angles) else vec(angles)


def program_of(cand: Candidate) -> tuple[str, dict[str, Any]]:
    """The program body (no header) of a candidate and its parameters (two decimals)."""
    # every shape parameter is a size, a radius, a depth, a pitch or a count (the spring's
    # phase is read from cand.shape): at two decimals a thin part's size would read 0, which
    # bpy_lib rejects, so each is at least MIN_SIZE
    s = [max(round(float(x), 2), MIN_SIZE) for x in cand.shape]
    loc = [round(float(x), 2) for x in cand.centre]
    rot = _rotation_text(cand.frame)
    placed = f", location={vec(loc)}" + (f", rotation={rot}" if rot else "")
    params: dict[str, Any] = {"location": loc, "rotation": euler_xyz(cand.frame)}
    fam = cand.family
    if fam == "box":
        body = f"p = box(size={vec(s)}{placed})"
        params["size"] = s
    elif fam == "cylinder":
        body = f"p = cylinder(radius={num(s[0])}, depth={num(s[1])}{placed})"
        params.update(radius=s[0], depth=s[1])
    elif fam == "cone":
        body = f"p = cone(radius1={num(s[0])}, radius2={num(s[1])}, depth={num(s[2])}{placed})"
        params.update(radius1=s[0], radius2=s[1], depth=s[2])
    elif fam == "capsule":
        depth = max(s[1], round(2 * s[0] + 0.01, 2))
        body = f"p = capsule(radius={num(s[0])}, depth={num(depth)}{placed})"
        params.update(radius=s[0], depth=depth)
    elif fam == "torus":
        minor = min(s[1], round(s[0] * 0.95, 2))
        body = f"p = torus(major_radius={num(s[0])}, minor_radius={num(minor)}{placed})"
        params.update(major_radius=s[0], minor_radius=minor)
    elif fam == "sphere":
        body = f"p = sphere(radius={num(s[0])}, location={vec(loc)})"
        params["radius"] = s[0]
    elif fam == "ellipsoid":
        r = max(s[:3])
        factor = [max(round(x / r, 2), MIN_SIZE) for x in s[:3]]
        body = f"p = sphere(radius={num(r)}, location={vec(loc)})\nscale(p, {vec(factor)})"
        if rot:
            body += f"\nrotate(p, {rot})"
        params.update(radius=r, scale=factor)
    elif fam == "spring":
        radius, pitch, turns, wire = s[0], s[1], round(float(cand.shape[2]), 2), s[3]
        phase = round(float(np.degrees(cand.shape[4] - PHASE_OFFSET)), 2)
        base = [loc[0], loc[1], round(loc[2] - pitch * turns / 2, 2)]
        body = (
            f"coil = helix(radius={num(radius)}, pitch={num(pitch)}, turns={num(turns)}, "
            f"center={vec(base)})\np = sweep(coil, radius={num(wire)}, segments=8)"
        )
        if abs(phase) >= 0.01:
            body += f"\nrotate(p, [0, 0, {num(phase)}], pivot={vec(loc)})"
        if rot:
            body += f"\nrotate(p, {rot}, pivot={vec(loc)})"
        params.update(radius=radius, pitch=pitch, turns=turns, wire=wire, phase=phase)
    else:
        body, extra = _sweep_program(cand, rot, loc)
        params.update(extra)
    if cand.deform is not None:
        method, amount = cand.deform
        if method == "twist":
            amount = round(amount)
            body += f"\ntwist(p, angle={int(amount)})"
        else:
            amount = round(amount, 2)
            body += f"\ntaper(p, factor={num(amount)})"
        params[method] = amount
    return body, params


def _distinct(points: list[list[float]]) -> list[list[float]]:
    """Points with repeats removed (two decimals can merge neighbours; bpy_lib refuses repeats)."""
    out: list[list[float]] = []
    for point in points:
        if point not in out:
            out.append(point)
    return out


def _sweep_program(
    cand: Candidate, rot: str | None, loc: list[float]
) -> tuple[str, dict[str, Any]]:
    if cand.family == "revolve":
        pts = cand.extra["profile"] * cand.shape[0]
        pts = _distinct([[round(max(float(r), 0.0), 2), round(float(z), 2)] for r, z in pts])
        closed = ", closed=True" if cand.extra["closed"] else ""
        lines = [
            f"profile = polyline(points=[{', '.join(vec(p) for p in pts)}], plane='XZ'{closed})",
            "p = revolve(profile, segments=32)",
        ]
        shift = np.zeros(3)
        params: dict[str, Any] = {"profile": pts}
    else:
        pts = cand.extra["outline"] * cand.shape[0]
        pts = _distinct([[round(float(u), 2), round(float(v), 2)] for u, v in pts])
        depth = max(round(cand.extra["depth"] * cand.shape[1], 2), MIN_SIZE)
        lines = [
            f"outline = polyline(points=[{', '.join(vec(p) for p in pts)}], closed=True)",
            f"p = extrude(outline, depth={num(depth)})",
        ]
        shift = np.array([0.0, 0.0, -depth / 2])
        params = {"outline": pts, "depth": depth}
    if rot:
        lines.append(f"rotate(p, {rot}, pivot=[0, 0, 0])")
    offset = np.asarray(loc) + cand.frame @ shift
    if np.abs(offset).max() >= 0.005:
        lines.append(f"move(p, {vec([round(float(x), 2) for x in offset])})")
    return "\n".join(lines), params


# -- the fitter ---------------------------------------------------------------------------


@dataclass
class Scored:
    """One fitted program body, its parameters and its score against the mesh."""

    score: float
    family: str
    body: str
    params: dict[str, Any]
    metrics: dict[str, float]
    twin: Mesh
    rank: int = 0


def wrap_program(body: str, label: str = "part") -> str:
    """A complete program around a fitted body (house style)."""
    if body.lstrip().startswith("# part_"):
        return f"from bpy_lib import *\n\n{body.rstrip()}\nexport_scene()\n"
    return f"from bpy_lib import *\n\n# part_1: {label}\n{body.rstrip()}\nexport_scene()\n"


LABELS = {"box": "block", "revolve": "turned body", "extrude": "plate", "hull": "body"}


def fit_single(
    vertices: FloatArray,
    faces: npt.NDArray[np.int64],
    gt: Any,
    *,
    families: Sequence[str],
    points: int,
    seed: int,
    refine_top: int,
    max_evals: int,
) -> list[Scored]:
    """Every family's best refined candidate for one connected shape, scored against ``gt``."""
    sample = sample_surface(vertices, faces, max(points, 4000), seed + 1).points
    scale = float(np.ptp(vertices, axis=0).max())
    objective = _Objective(sample[: max(points // 4, 500)], scale, seed)
    begun = starts(sample, families)
    scored = sorted(((objective(c.mesh()), k) for k, c in enumerate(begun)), key=lambda t: t[0])
    best_per_family: dict[str, tuple[float, int]] = {}
    for value, k in scored:
        best_per_family.setdefault(begun[k].family, (value, k))
    out: list[Scored] = []
    for _, k in sorted(best_per_family.values())[:refine_top]:
        cand = begun[k]
        evals = max_evals if cand.family not in ("revolve", "extrude") else max_evals // 2
        cand = _refine(cand, objective, evals)
        body, params = program_of(cand)
        # score the program as written (two decimals), not the unrounded candidate
        twin = _candidate_from_params(cand, params).mesh()
        metrics = compute_metrics(*twin, gt)
        out.append(
            Scored(metrics["f_score_0.05"], cand.family, body, params, metrics, twin,
                   FAMILY_RANK[cand.family])
        )  # fmt: skip
    ranked = rank_results(out, 0.005)
    if ranked and ranked[0].score < 0.99:
        tops = [r.family for r in ranked[:2]]
        for family in list(dict.fromkeys(["box", *tops]))[:3]:  # a twisted box hides well
            # bpy_lib's deformers leave the low end in place: start from the upright shape
            upright = [c for c in begun if c.family == family and np.allclose(c.frame, np.eye(3))]
            if not upright:
                continue
            base = min(upright, key=lambda c: objective(c.mesh()))
            deformed = _with_deformer(base, objective, max_evals)
            if deformed is None:
                continue
            body, params = program_of(deformed)
            twin = _candidate_from_params(deformed, params).mesh()
            metrics = compute_metrics(*twin, gt)
            out.append(
                Scored(metrics["f_score_0.05"], deformed.family, body, params, metrics, twin,
                       FAMILY_RANK[deformed.family] + DEFORMED_RANK)
            )  # fmt: skip
    best = max((r.score for r in out), default=0.0)
    if "hull" in families and best < HULL_BELOW:
        dense = sample_surface(vertices, faces, HULL_SAMPLES, seed + 2).points
        for hull in hull_candidates(dense):
            metrics = compute_metrics(*hull.twin, gt)
            out.append(Scored(metrics["f_score_0.05"], "hull", hull.body, hull.params, metrics,
                              hull.twin, FAMILY_RANK["hull"] + hull.prisms))  # fmt: skip
    return out


def rank_results(results: Sequence[Scored], tie: float) -> list[Scored]:
    """Best F@0.05 first; within ``tie`` of the best, the simplest (lowest rank) first; the
    rest by score (the order in which a failing program's substitutes are tried)."""
    if not results:
        return []
    top = max(r.score for r in results)
    return sorted(
        results,
        key=lambda r: (r.score < top - tie, r.rank if r.score >= top - tie else 0, -r.score),
    )


def _candidate_from_params(cand: Candidate, params: dict[str, Any]) -> Candidate:
    """The candidate as its two-decimal program builds it."""
    frame = rotation_xyz([round(a, 2) for a in params["rotation"]])
    if cand.family == "cone" or cand.family in ("revolve", "extrude"):
        frame = cand.frame  # these keep the exact frame (their rotation text is rounded alike)
    centre = np.asarray(params["location"], dtype=np.float64)
    fam = cand.family
    if fam == "box":
        shape = np.array(params["size"])
    elif fam in ("cylinder", "capsule"):
        shape = np.array([params["radius"], params["depth"]])
    elif fam == "cone":
        shape = np.array([params["radius1"], params["radius2"], params["depth"]])
    elif fam == "torus":
        shape = np.array([params["major_radius"], params["minor_radius"]])
    elif fam == "sphere":
        shape = np.array([params["radius"]])
    elif fam == "ellipsoid":
        shape = np.array(params["scale"]) * params["radius"]
    elif fam == "spring":
        phase = np.radians(params["phase"]) + PHASE_OFFSET
        shape = np.array(
            [params["radius"], params["pitch"], params["turns"], params["wire"], phase]
        )
        centre = np.asarray(params["location"], dtype=np.float64)
        return Candidate(fam, cand.frame, centre, shape, cand.extra)
    else:
        return cand
    deform = None
    if cand.deform is not None:
        deform = (cand.deform[0], float(params[cand.deform[0]]))
    return Candidate(fam, frame, centre, shape.astype(np.float64), cand.extra, deform)
