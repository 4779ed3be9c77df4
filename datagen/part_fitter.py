"""Stage 4: find a ``bpy_lib`` program that reproduces a part mesh (no Blender here).

Template matching over families, then parameter optimisation:

1. Frames: the world axes, and the mesh's principal axes when they differ (a rotated
   part). Axial families (cylinder, cone, capsule, torus, revolve, extrude) try each axis
   of a frame as their own Z.
2. Initial parameters from area-uniform surface samples in that frame (extents, radial
   distances per height, the convex outline).
3. The few best starts by a fast two-sided mean distance are refined with Nelder-Mead
   (centre and shape parameters); profiles and outlines come straight from the samples.
4. Every refined candidate is scored with :func:`worker.metrics.compute_metrics` (DESIGN
   §3, in the GT frame); the best F@0.05 wins, the simplest family on ties (within
   ``tie``). With an executor, the winning program is run in Blender and its real score
   reported (falling back to the next candidate if it fails).

The numpy twins of the shapes are in :mod:`datagen.shapes`; single shapes are fitted by
:mod:`datagen.fit_single`, meshes of several pieces by :mod:`datagen.fit_composite`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy.typing as npt

from datagen.fit_composite import fit_pieces
from datagen.fit_input import FrameTransform, prepare_mesh
from datagen.fit_single import FAMILY_RANK, LABELS, fit_single, rank_results, wrap_program
from llm3d.schemas import ExecStatus
from worker.metrics import compute_metrics, prepare_ground_truth
from worker.types import ExecResult

__all__ = ["FAMILY_RANK", "FitResult", "Runner", "fit_mesh"]

logger = logging.getLogger(__name__)

#: With a runner: at most this many programs are run, best twin first, until one scores in
#: Blender within VERIFY_SLACK of its twin (an exact boolean can fail on near-coplanar
#: faces); the best verified program wins.
VERIFY_RUNS = 4
VERIFY_SLACK = 0.03


class Runner(Protocol):
    """What runs a fitted program to verify it: an :class:`~worker.execution.executor.Executor`."""

    def run(self, code: str, *, timeout_s: float | None = None) -> ExecResult: ...


@dataclass
class FitResult:
    """The fitted program and how well it reproduces the mesh."""

    program: str
    family: str
    params: dict[str, Any]
    f_score: float
    metrics: dict[str, float]
    verified: bool = False
    seconds: float = 0.0
    tried: dict[str, float] = field(default_factory=dict)
    transform: FrameTransform = field(default_factory=FrameTransform)

    def as_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "transform": self.transform.as_dict(),
            "f_score_0.05": round(self.f_score, 4),
            "verified_in_blender": self.verified,
            "params": self.params,
            "metrics": {k: round(v, 6) for k, v in self.metrics.items()},
            "tried": {k: round(v, 4) for k, v in self.tried.items()},
            "seconds": round(self.seconds, 3),
            "program": self.program,
        }


def fit_mesh(
    vertices: npt.ArrayLike,
    faces: npt.ArrayLike,
    *,
    families: Sequence[str] | None = None,
    points: int = 4000,
    seed: int = 0,
    refine_top: int = 6,
    max_evals: int = 120,
    tie: float = 0.005,
    composite: bool = True,
    runner: Runner | None = None,
    frame: str = "auto",
) -> FitResult:
    """Fit a ``bpy_lib`` program to a mesh; see the module docstring.

    Parameters
    ----------
    vertices : (n, 3) float
    faces : (m, 3) int
    families : sequence of str, optional
        Families to try (default all of :data:`FAMILY_RANK`).
    points : int
        Surface samples of the final scoring (the objective uses a quarter of them).
    seed : int
    refine_top : int
        Families refined with Nelder-Mead (the best by the fast objective).
    max_evals : int
        Objective evaluations per refinement.
    tie : float
        F@0.05 differences up to this are ties (the simpler program wins).
    composite : bool
        Also try a mesh of several pieces as one part and an array/mirror pattern, or as
        several parts (:mod:`datagen.fit_composite`).
    runner : Executor-like, optional
        When given, the winning program is run in Blender and its real metrics reported.
    frame : {"auto", "keep", "normalise"}
        Where the program builds the part (:func:`datagen.fit_input.prepare_mesh`): ``auto``
        moves and scales a mesh into ``bpy_lib``'s frame when it lies outside ``[-1, 1]³``
        or is too small for two decimals; ``keep`` fits it where it is (the parts of one
        object); ``normalise`` always. The transform is in :attr:`FitResult.transform`, and
        the scores compare the program with the mesh in that frame (F@0.05 is measured in
        the ground truth's own normalised frame, so it does not change).

    Raises
    ------
    ValueError
        For an unknown family or frame.
    MeshError
        For an unusable mesh: empty, no faces, NaN, no face with area (one line).
    RuntimeError
        When a runner is given and no candidate program runs.
    """
    started = time.perf_counter()
    names = list(families) if families else list(FAMILY_RANK)
    unknown = [n for n in names if n not in FAMILY_RANK]
    if unknown:
        raise ValueError(f"unknown families {unknown}; known: {', '.join(FAMILY_RANK)}")
    v, f, transform = prepare_mesh(vertices, faces, frame=frame)
    gt = prepare_ground_truth(v, f, points=points, seed=seed, unit_cube_points=512)
    options = dict(families=names, points=points, seed=seed, refine_top=refine_top,
                   max_evals=max_evals)  # fmt: skip
    results = fit_single(v, f, gt, **options)  # type: ignore[arg-type]
    if composite and rank_results(results, tie)[0].score < 1.0 - tie:
        results.extend(fit_pieces(v, f, gt, **options))
    tried: dict[str, float] = {}
    for r in results:
        tried[r.family] = max(tried.get(r.family, 0.0), r.score)
    verified: FitResult | None = None
    runs = 0
    for best in rank_results(results, tie):
        code = wrap_program(best.body, LABELS.get(best.family, best.family))
        if runner is None:
            return FitResult(code, best.family, best.params, best.score, best.metrics, False,
                             time.perf_counter() - started, tried, transform)  # fmt: skip
        if runs >= VERIFY_RUNS:
            break
        runs += 1
        result = runner.run(code)
        if result.status is not ExecStatus.OK:
            logger.warning("fitted %s program failed in Blender (%s); trying the next",
                           best.family, result.error)  # fmt: skip
            continue
        real = compute_metrics(result.vertices, result.faces, gt)
        if verified is None or real["f_score_0.05"] > verified.f_score:
            verified = FitResult(code, best.family, best.params, real["f_score_0.05"], real,
                                 True, 0.0, tried, transform)  # fmt: skip
        if real["f_score_0.05"] >= best.score - VERIFY_SLACK:
            break  # Blender built what the twin promised
        logger.info("fitted %s program scores %.3f in Blender, %.3f as its twin; trying the next",
                    best.family, real["f_score_0.05"], best.score)  # fmt: skip
    if verified is not None:
        verified.seconds = time.perf_counter() - started
        return verified
    raise RuntimeError("no fitted program ran in Blender; see the warnings above")
