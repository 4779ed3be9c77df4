"""The gated reward of DESIGN §4: the one place where the reward is defined.

============  =============================================  ===============================
gate          condition                                      gated reward
============  =============================================  ===============================
0             ``empty``                                      0.00
1             ``exec_failed``, ``refused``, ``timeout``      0.05
2             ``no_geometry``                                0.10
3             ``degenerate``                                 0.15
4             F@0.05 < 0.05                                  0.20
5             otherwise                                      0.30 + 0.70 · min(1, F@0.05 / 0.60)
============  =============================================  ===============================

Format score ∈ [0, 1] = mean of three checks (:func:`llm3d.program.format_checks`): the
program imports ``bpy_lib``, has at least one comment naming a part (``# part_1: wheel``),
and calls ``export_scene()``.
Reward = 0.9 · gated + 0.1 · format. ``infra_error`` (the worker failed, not the program)
has reward ``None``: the trainer must not learn from it.

Plain Python, no Blender. Used by the API, the verifiers rubric, training and evaluation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from llm3d.config import ExecutorConfig, MetricsConfig
from llm3d.exceptions import MeshError
from llm3d.program import format_checks
from llm3d.schemas import ExecStatus
from worker.geometry.sampling import is_finite_mesh
from worker.metrics import GroundTruth, compute_metrics, exact_copy_f_score, wants_unit_chamfer
from worker.types import ExecResult

__all__ = [
    "FORMAT_WEIGHT",
    "GATED_WEIGHT",
    "REWARD_VERSION",
    "REWARD_VERSIONS",
    "RewardBreakdown",
    "compute_reward",
    "gated_reward",
    "geometry_status",
]

#: Bump whenever the gate table, the format checks or the metrics change meaning.
#: gated-v2: the prediction is sampled from its own random stream, independent of the
#: ground truth's (DESIGN §3): every metric value, and so F@0.05 and the reward of most
#: predictions, moved; results cached under gated-v1 must not be served for gated-v2.
REWARD_VERSION = "gated-v2"
#: The reward variants (``reward.variant``) and their versions. ``gated`` is the seed's reward
#: (DESIGN §4), the default. ``gated-fine`` keeps every gate but lets the quality term keep
#: rising once F@0.05 saturates at 0.6: gate 5 is 0.30 + 0.70 · (½ · min(1, F@0.05 / 0.6) +
#: ½ · min(1, F@0.02 / full)), so GRPO's group advantages do not vanish when every sample is
#: the right kind of object. ``full`` is what an exact copy of this ground truth gets at this
#: sample size (:func:`worker.metrics.exact_copy_f_score`, which varies from 0.88 for a unit
#: cube to 1.0 at 10 000 points), less :data:`FLOOR_SLACK`: an exact copy scores 1.0.
REWARD_VERSIONS: dict[str, str] = {"gated": REWARD_VERSION, "gated-fine": "gated-fine-v1"}
F_FINE_KEY = "f_score_0.02"
F_FINE_THRESHOLD = 0.02
#: An exact copy's F@0.02 lies within 1 % of the estimated floor; 2 % slack keeps it at 1.0.
FLOOR_SLACK = 0.98
GATED_WEIGHT = 0.9
FORMAT_WEIGHT = 0.1
F_SCORE_KEY = "f_score_0.05"
F_SCORE_FLOOR = 0.05  # below it: gate 4
F_SCORE_FULL = 0.60  # at or above it: the full reward

_GATE_OF_STATUS: dict[ExecStatus, tuple[int, float]] = {
    ExecStatus.EMPTY: (0, 0.00),
    ExecStatus.REFUSED: (1, 0.05),
    ExecStatus.EXEC_FAILED: (1, 0.05),
    ExecStatus.TIMEOUT: (1, 0.05),
    ExecStatus.NO_GEOMETRY: (2, 0.10),
    ExecStatus.DEGENERATE: (3, 0.15),
}


def gated_reward(
    status: ExecStatus | str,
    f_score: float | None = None,
    *,
    variant: str = "gated",
    f_fine: float | None = None,
    f_fine_full: float = 1.0,
) -> tuple[int, float]:
    """The gate and the gated reward of a status (and, for ``ok``, its F@0.05; for the
    ``gated-fine`` variant also its F@0.02, ``f_fine``).

    Returns
    -------
    (gate, gated) : (int, float)

    Raises
    ------
    ValueError
        For ``infra_error`` (it has no reward) or ``ok`` without an F-score.
    """
    status = ExecStatus(status)
    if status in _GATE_OF_STATUS:
        return _GATE_OF_STATUS[status]
    if status is ExecStatus.INFRA_ERROR:
        raise ValueError("infra_error has no reward: it is never the program's fault")
    if f_score is None or not np.isfinite(f_score):
        raise ValueError(f"an ok program needs a finite F@0.05 to be gated, got {f_score}")
    if variant not in REWARD_VERSIONS:
        raise ValueError(f"unknown reward variant {variant!r}; use one of {list(REWARD_VERSIONS)}")
    if f_score < F_SCORE_FLOOR:
        return 4, 0.20
    quality = min(1.0, f_score / F_SCORE_FULL)
    if variant == "gated-fine":
        if f_fine is None or not np.isfinite(f_fine):
            raise ValueError(
                "the gated-fine reward needs F@0.02: keep 0.02 in metrics.fscore_thresholds"
            )
        quality = 0.5 * quality + 0.5 * min(1.0, max(0.0, f_fine) / max(f_fine_full, 1e-9))
    return 5, 0.30 + 0.70 * quality


@dataclass(frozen=True)
class RewardBreakdown:
    """A reward with everything that made it (DESIGN §4, §5).

    Attributes
    ----------
    status : str
        The final status (an ``ok`` run can become ``empty``, ``no_geometry`` or
        ``degenerate`` here), or ``infra_error``.
    reward : float or None
        0.9 · gated + 0.1 · format; ``None`` for ``infra_error``.
    components : dict of str to float
        ``gated``, ``format``, ``gate`` and the three format checks (0 or 1).
    metrics : dict of str to float
        The metrics of DESIGN §3 when the program made a usable mesh, else empty.
    error : str or None
        Why the program did not reach the metrics, in one line.
    reward_version : str
    """

    status: str
    reward: float | None
    components: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    reward_version: str = REWARD_VERSION

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping (``inf`` metric values stay floats)."""
        return asdict(self)


def geometry_status(
    result: ExecResult, executor: ExecutorConfig
) -> tuple[ExecStatus | None, str | None]:
    """Check an ``ok`` result's mesh against the geometry gates (the executor should have).

    Returns ``(None, None)`` when the mesh passes, else ``no_geometry`` (fewer than
    ``min_faces`` faces) or ``degenerate`` (over ``max_vertices`` vertices, non-finite
    coordinates) with a one-line reason.
    """
    vertices, faces = np.asarray(result.vertices), np.asarray(result.faces)
    n_faces = len(faces) if faces.ndim == 2 else 0
    if n_faces < executor.min_faces:
        return ExecStatus.NO_GEOMETRY, (
            f"the scene has {n_faces} faces, fewer than {executor.min_faces}: "
            "create parts before export_scene()"
        )
    if len(vertices) > executor.max_vertices:
        return ExecStatus.DEGENERATE, (
            f"the scene has {len(vertices)} vertices, more than {executor.max_vertices}"
        )
    if not is_finite_mesh(vertices):
        return ExecStatus.DEGENERATE, "the scene has non-finite (NaN or inf) vertex coordinates"
    return None, None


def compute_reward(
    code: str,
    result: ExecResult,
    gt: GroundTruth | None,
    *,
    metrics_config: MetricsConfig | None = None,
    points: int | None = None,
    seed: int = 0,
    executor_config: ExecutorConfig | None = None,
    unit_chamfer: bool | None = None,
    variant: str = "gated",
) -> RewardBreakdown:
    """Score one program run against its ground truth (DESIGN §4).

    Parameters
    ----------
    code : str
        The program's source (for the format score and the ``empty`` gate).
    result : ExecResult
        What the executor made of it.
    gt : GroundTruth or None
        The prepared ground truth; needed only when the program produced a mesh.
    metrics_config : MetricsConfig, optional
        F-score thresholds (default: the built-in configuration).
    points : int, optional
        Samples on the prediction; default ``gt.points``.
    seed : int
        Sampling seed of the prediction.
    executor_config : ExecutorConfig, optional
        ``min_faces`` / ``max_vertices`` of the geometry gates (default: built-in).
    unit_chamfer : bool, optional
        Report ``chamfer_unit_x1000`` (no reward uses it); default from
        ``metrics_config.unit_chamfer`` and the sample count
        (:func:`worker.metrics.wants_unit_chamfer`).
    variant : str
        ``gated`` (DESIGN §4, the default) or ``gated-fine`` (:data:`REWARD_VERSIONS`).

    Returns
    -------
    RewardBreakdown

    Raises
    ------
    ValueError
        When the program made a usable mesh but ``gt`` is None.
    """
    metrics_config = metrics_config or MetricsConfig()
    executor_config = executor_config or ExecutorConfig()
    checks = format_checks(code or "")
    fmt = checks.score
    components: dict[str, float] = {
        "format": fmt,
        "imports_bpy_lib": float(checks.imports_bpy_lib),
        "part_comment": float(checks.part_comment),
        "calls_export_scene": float(checks.calls_export_scene),
    }
    status = ExecStatus(result.status)
    error = result.error
    if variant not in REWARD_VERSIONS:
        raise ValueError(f"unknown reward variant {variant!r}; use one of {list(REWARD_VERSIONS)}")
    if status is ExecStatus.INFRA_ERROR:
        return RewardBreakdown(
            status=status.value,
            reward=None,
            components=components,
            error=error or "infrastructure error (not the program's fault)",
            reward_version=REWARD_VERSIONS[variant],
        )
    if not (code or "").strip() or not checks.imports_bpy_lib:
        if status is not ExecStatus.EMPTY:
            error = "no code, or the code does not import bpy_lib"
        status = ExecStatus.EMPTY
    elif status is ExecStatus.OK:
        gate_status, gate_error = geometry_status(result, executor_config)
        if gate_status is not None:
            status, error = gate_status, gate_error

    metrics: dict[str, float] = {}
    if status is ExecStatus.OK:
        if gt is None:
            raise ValueError("a ground truth is needed to score a program that made a mesh")
        n_points = points if points is not None else gt.points
        if unit_chamfer is None:
            unit_chamfer = wants_unit_chamfer(metrics_config, n_points)
        try:
            metrics = compute_metrics(
                result.vertices,
                result.faces,
                gt,
                points=n_points,
                seed=seed,
                thresholds=metrics_config.fscore_thresholds,
                unit_chamfer=unit_chamfer,
            )
        except MeshError as exc:
            status, error = ExecStatus.DEGENERATE, f"unusable mesh: {exc}"
            metrics = {}
    fine_full = 1.0
    if variant == "gated-fine" and status is ExecStatus.OK and gt is not None:
        fine_full = FLOOR_SLACK * exact_copy_f_score(gt, F_FINE_THRESHOLD)
    gate, gated = gated_reward(
        status,
        metrics.get(F_SCORE_KEY),
        variant=variant,
        f_fine=metrics.get(F_FINE_KEY),
        f_fine_full=fine_full,
    )
    components = {"gated": gated, "gate": float(gate), **components}
    return RewardBreakdown(
        status=status.value,
        reward=GATED_WEIGHT * gated + FORMAT_WEIGHT * fmt,
        components=components,
        metrics=metrics,
        error=error,
        reward_version=REWARD_VERSIONS[variant],
    )
