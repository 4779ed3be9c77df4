"""The pure scoring pipeline every backend runs: program + ground truth → :class:`RewardResult`.

``inline``, ``celery`` and ``modal`` differ only in *where* this runs; the steps are the same:

1. the ground truth is prepared once per (reference, points, seed) and cached
   (:func:`worker.metrics.prepare_ground_truth` through a
   :class:`worker.metrics.GroundTruthCache`); a reference given as a ``bpy_lib`` program
   is first run through the same sandbox as the candidates;
2. the candidate runs in the executor (a callable ``runner(code, timeout_s) -> ExecResult``,
   so that a fork-server pool, one executor or a test double can be plugged in);
3. :func:`worker.reward.compute_reward` — the one place the reward is defined — turns the
   execution result and the ground truth into status, reward, components and metrics.

A failure of the infrastructure (the runner raised, the reference could not be built, the
metrics or the reward raised on a mesh) is reported as that item's ``infra_error`` with
``reward: None`` and the error text: never the program's fault, and never the batch's.

Everything crossing a process boundary (Celery, Modal) is a plain JSON-able mapping:
:meth:`ScoreJob.to_dict` / :meth:`ScoreJob.from_dict`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from llm3d.config import Config, ExecutorConfig, MetricsConfig
from llm3d.exceptions import InfraError
from llm3d.schemas import ExecStatus, Reference, ReferencePayload, RewardResult
from worker.types import ExecResult

__all__ = [
    "LocalScorer",
    "Runner",
    "ScoreJob",
    "ScoreSettings",
    "build_ground_truth",
    "cache_key",
    "infra_result",
    "reference_payload",
    "score_job",
]

logger = logging.getLogger(__name__)

Runner = Callable[[str, float], ExecResult]
"""Runs one program: ``runner(code, timeout_s) -> ExecResult`` (raises only for infra faults)."""


class ReferenceFailedError(InfraError):
    """The ground truth could not be built (its program failed, or its mesh is unusable)."""


@dataclass(frozen=True)
class ScoreSettings:
    """Everything besides the program and the ground truth that changes a reward."""

    points: int
    seed: int
    timeout_s: float
    thresholds: tuple[float, ...]
    #: report ``chamfer_unit_x1000`` (decided by the API from its config, obeyed by workers)
    unit_chamfer: bool = True
    #: ``reward.variant`` of the API's config (workers score with the API's choice)
    reward_variant: str = "gated"

    @classmethod
    def from_config(
        cls, config: Config, *, points: int | None = None, timeout_s: float | None = None
    ) -> ScoreSettings:
        """The settings of ``config``, with a request's ``points`` / ``timeout_s`` on top."""
        from worker.metrics import wants_unit_chamfer

        default_points = (
            config.metrics.train_points
            if config.reward.points == "train"
            else config.metrics.eval_points
        )
        n_points = points or default_points
        return cls(
            points=n_points,
            seed=config.seed,
            timeout_s=timeout_s or config.executor.timeout_s,
            thresholds=tuple(config.metrics.fscore_thresholds),
            unit_chamfer=wants_unit_chamfer(config.metrics, n_points),
            reward_variant=config.reward.variant,
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "thresholds": list(self.thresholds)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScoreSettings:
        return cls(
            points=int(data["points"]),
            seed=int(data["seed"]),
            timeout_s=float(data["timeout_s"]),
            thresholds=tuple(float(t) for t in data["thresholds"]),
            unit_chamfer=bool(data.get("unit_chamfer", True)),
            reward_variant=str(data.get("reward_variant", "gated")),
        )


@dataclass(frozen=True)
class ScoreJob:
    """One unit of work for a backend: score ``code`` against the reference ``gt_key``.

    ``reference`` may be ``None`` when the worker can find it by ``gt_key`` itself
    (the Celery backend stores large meshes in Redis once instead of in every message).
    """

    item_id: str
    code: str
    gt_key: str
    settings: ScoreSettings
    reference: ReferencePayload | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "item_id": self.item_id,
            "code": self.code,
            "gt_key": self.gt_key,
            "settings": self.settings.to_dict(),
            "reference": self.reference.to_dict() if self.reference is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScoreJob:
        ref = data.get("reference")
        return cls(
            item_id=str(data["item_id"]),
            code=str(data["code"]),
            gt_key=str(data["gt_key"]),
            settings=ScoreSettings.from_dict(data["settings"]),
            reference=ReferencePayload.from_dict(ref) if ref is not None else None,
        )


def reference_payload(reference: Reference) -> ReferencePayload:
    """The wire :class:`~llm3d.schemas.Reference` as a backend payload."""
    if reference.code is not None:
        return ReferencePayload(code=reference.code)
    return ReferencePayload(vertices=reference.vertices, faces=reference.faces)


def cache_key(code: str, gt_key: str, settings: ScoreSettings, reward_version: str) -> str:
    """The result-cache key of (program, ground truth, settings, reward version)."""
    blob = json.dumps(
        [code, gt_key, settings.to_dict(), reward_version], sort_keys=True, ensure_ascii=False
    )
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()


def infra_result(item_id: str, error: str, seconds: float = 0.0) -> RewardResult:
    """An ``infra_error`` result: reward ``None``, the trainer must not learn from it."""
    return RewardResult(
        id=item_id, status=ExecStatus.INFRA_ERROR, reward=None, error=error, seconds=seconds
    )


def build_ground_truth(payload: ReferencePayload, settings: ScoreSettings, runner: Runner) -> Any:
    """Prepare the ground truth of ``payload`` (running its program when it is code).

    Returns
    -------
    worker.metrics.GroundTruth

    Raises
    ------
    ReferenceFailedError
        When the reference program does not produce a usable mesh.
    """
    from worker.metrics import prepare_ground_truth

    vertices: npt.NDArray[np.float32]
    faces: npt.NDArray[np.int32]
    if payload.code is not None:
        result = runner(payload.code, settings.timeout_s)
        if result.status is not ExecStatus.OK:
            raise ReferenceFailedError(
                f"the reference program did not build a mesh ({result.status.value}: "
                f"{result.error or 'no error message'}); fix the reference, not the candidate"
            )
        vertices, faces = result.vertices, result.faces
    else:
        vertices = np.asarray(payload.vertices, dtype=np.float32).reshape(-1, 3)
        faces = np.asarray(payload.faces, dtype=np.int32).reshape(-1, 3)
    try:
        return prepare_ground_truth(vertices, faces, points=settings.points, seed=settings.seed)
    except ValueError as exc:
        raise ReferenceFailedError(f"the reference mesh is unusable: {exc}") from exc


def gt_cache_key(gt_key: str, settings: ScoreSettings) -> str:
    """Ground truths are sampled with the request's point count and seed: both are in the key."""
    return f"{gt_key}:{settings.points}:{settings.seed}"


def score_job(
    job: ScoreJob,
    *,
    runner: Runner,
    gt_cache: Any,
    metrics_config: MetricsConfig | None = None,
    executor_config: ExecutorConfig | None = None,
    load_reference: Callable[[str], ReferencePayload] | None = None,
) -> RewardResult:
    """Score one job: prepare (or reuse) its ground truth, run the program, compute the reward.

    Args:
        job: the program, its ground truth's key and payload, and the settings.
        runner: runs a program in the sandbox; an exception it raises is an infra fault.
        gt_cache: a :class:`worker.metrics.GroundTruthCache` shared across calls.
        metrics_config: thresholds etc. (default: the built-in configuration).
        executor_config: the geometry gates' limits (default: the built-in configuration).
        load_reference: finds a reference by key when ``job.reference`` is ``None``.

    Returns:
        The item's result; ``infra_error`` (reward ``None``) when the infrastructure failed.
    """
    from worker.reward import compute_reward

    start = time.perf_counter()
    settings = job.settings
    try:
        payload = job.reference
        if payload is None:
            if load_reference is None:
                raise ReferenceFailedError(f"no reference payload for ground truth {job.gt_key}")
            payload = load_reference(job.gt_key)
        ref = payload
        gt = gt_cache.get_or_build(
            gt_cache_key(job.gt_key, settings),
            lambda: build_ground_truth(ref, settings, runner),
        )
        result = runner(job.code, settings.timeout_s)
    except InfraError as exc:
        logger.warning("item %s: %s", job.item_id, exc)
        return infra_result(job.item_id, str(exc), time.perf_counter() - start)
    except Exception as exc:  # the runner itself broke: infrastructure, never the program
        logger.exception("item %s: executor failure", job.item_id)
        return infra_result(
            job.item_id,
            f"the executor failed: {type(exc).__name__}: {exc}",
            time.perf_counter() - start,
        )
    try:
        breakdown = compute_reward(
            job.code,
            result,
            gt,
            metrics_config=metrics_config,
            points=settings.points,
            seed=settings.seed,
            executor_config=executor_config,
            unit_chamfer=settings.unit_chamfer,
            variant=settings.reward_variant,
        )
    except Exception as exc:  # metrics or reward broke on this mesh: the scorer's fault
        logger.exception("item %s: scoring failed", job.item_id)
        return infra_result(
            job.item_id,
            f"scoring the mesh failed ({type(exc).__name__}: {exc}); the worker's environment "
            "is at fault, not the program: check `llm3d doctor` on the worker",
            time.perf_counter() - start,
        )
    return RewardResult(
        id=job.item_id,
        status=ExecStatus(breakdown.status),
        reward=breakdown.reward,
        components=dict(breakdown.components),
        metrics=dict(breakdown.metrics),
        error=breakdown.error,
        cached=False,
        seconds=round(time.perf_counter() - start, 6),
    )


class LocalScorer:
    """One process's scoring state: a warm executor (started on first use) and ground truths.

    What a Celery worker process or a Modal container keeps between jobs; :meth:`score`
    is the plain-function body of their tasks.
    """

    def __init__(self, config: Config | None = None) -> None:
        from llm3d.config import load_config

        self.config = config or load_config()
        self._executor: Any = None
        self._gt_cache: Any = None
        self._lock = threading.Lock()

    def run_program(self, code: str, timeout_s: float) -> ExecResult:
        """Run one program on this process's warm fork server."""
        with self._lock:
            if self._executor is None:
                from worker.execution.executor import Executor

                self._executor = Executor(self.config.executor)
            executor = self._executor
        result: ExecResult = executor.run(code, timeout_s=timeout_s)
        return result

    @property
    def gt_cache(self) -> Any:
        with self._lock:
            if self._gt_cache is None:
                from worker.metrics import GroundTruthCache

                self._gt_cache = GroundTruthCache(
                    self.config.metrics.gt_cache_size,
                    max_bytes=self.config.metrics.gt_cache_mb << 20,
                )
            return self._gt_cache

    def load_reference(self, gt_key: str) -> ReferencePayload:
        """Find a reference that did not travel with its job (none here; see subclasses)."""
        raise ReferenceFailedError(f"no reference payload for ground truth {gt_key}")

    def score(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """A :meth:`ScoreJob.to_dict` mapping → a :class:`RewardResult` JSON mapping."""
        job = ScoreJob.from_dict(payload)
        result = score_job(
            job,
            runner=self.run_program,
            gt_cache=self.gt_cache,
            metrics_config=self.config.metrics,
            executor_config=self.config.executor,
            load_reference=self.load_reference,
        )
        return result.model_dump(mode="json")

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            try:
                executor.close()
            except Exception:  # closing at exit: log, never mask the exit
                logger.exception("closing the executor failed")
