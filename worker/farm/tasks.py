"""Thin Celery tasks: deserialize, call the pure :func:`worker.scoring.score_job` (or, to
choose among candidates, :func:`worker.selection.select_job`), return JSON.

Each worker process owns one warm :class:`worker.execution.executor.Executor` (a Blender fork server)
and one ground-truth cache, created on its first task and closed when the process exits.
The task is idempotent (its result depends only on its arguments), which is what makes
``acks_late`` and redelivery after a lost worker safe.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_process_init, worker_process_shutdown

from llm3d.config import Config
from llm3d.exceptions import InfraError
from llm3d.schemas import ExecStatus, ReferencePayload
from worker.farm.celery_app import SCORE_TASK, SELECT_TASK, app
from worker.scoring import LocalScorer, infra_result
from worker.selection import LocalSelector, SelectJob

__all__ = [
    "INFRA_RETRIES",
    "WorkerState",
    "reference_redis_key",
    "score",
    "score_payload",
    "select",
    "select_payload",
    "state",
    "use_config",
    "views_redis_key",
]

logger = logging.getLogger(__name__)


def reference_redis_key(namespace: str, gt_key: str) -> str:
    """Where the API stores a mesh reference for the workers: ``<namespace>:ref:<gt_key>``."""
    return f"{namespace}:ref:{gt_key}"


def views_redis_key(namespace: str, views_key: str) -> str:
    """Where the API stores a group's views (a JSON list of base64 PNG) for the workers:
    ``<namespace>:views:<views_key>`` (:attr:`SelectJob.views_key`)."""
    return f"{namespace}:views:{views_key}"


class WorkerState(LocalScorer):
    """A Celery worker process's :class:`LocalScorer`, which also reads meshes from Redis."""

    def __init__(self, config: Config | None = None) -> None:
        super().__init__(config)
        self._redis: Any = None
        self._selector = LocalSelector(self.run_program, self.config.executor)

    def select(self, payload: dict[str, Any]) -> dict[str, Any]:
        """A :meth:`SelectJob.to_dict` mapping → the candidate's outcome as a result mapping.

        A job sent without its views reads them from Redis by its ``views_key``; when they
        are gone (expired), the candidate is ``infra_error`` saying so.
        """
        job = SelectJob.from_dict(payload)
        if not job.views and job.views_key is not None:
            key = views_redis_key(self.config.farm.namespace, job.views_key)
            try:
                stored = self._stored(key, f"the views of candidate {job.item_id}")
            except InfraError as exc:
                return infra_result(job.item_id, str(exc)).model_dump(mode="json")
            job = replace(job, views=tuple(base64.b64decode(v) for v in stored))
        return self._selector.select(job).model_dump(mode="json")

    def close(self) -> None:
        super().close()
        self._selector.close()

    def load_reference(self, gt_key: str) -> ReferencePayload:
        """A reference the API stored in Redis (meshes travel once, not in every message)."""
        key = reference_redis_key(self.config.farm.namespace, gt_key)
        return ReferencePayload.from_dict(self._stored(key, f"ground truth {gt_key}"))

    def _stored(self, key: str, what: str) -> Any:
        """The JSON value the API stored in Redis under ``key``; :class:`InfraError` naming
        ``what`` when Redis cannot be read or the value is gone."""
        import redis

        if self._redis is None:
            self._redis = redis.Redis.from_url(self.config.farm.redis_url)
        try:
            raw = self._redis.get(key)
        except redis.RedisError as exc:
            raise InfraError(f"cannot read {what} from Redis: {exc}") from exc
        if raw is None:
            raise InfraError(f"{what}: not in Redis (expired or never stored); resubmit")
        return json.loads(raw)


_state: WorkerState | None = None
_config: Config | None = None


def use_config(config: Config) -> None:
    """Make worker processes use ``config`` (``llm3d worker --config FILE``); before forking."""
    global _config, _state
    _config = config
    _state = None


def state() -> WorkerState:
    """This process's :class:`WorkerState` (created on first use)."""
    global _state
    if _state is None:
        _state = WorkerState(_config)
    return _state


@worker_process_init.connect  # type: ignore[untyped-decorator]
def _reset_after_fork(**_: Any) -> None:
    # A forked pool process must not share its parent's executor or sockets.
    global _state
    _state = None


@worker_process_shutdown.connect  # type: ignore[untyped-decorator]
def _close_on_exit(**_: Any) -> None:
    if _state is not None:
        _state.close()


def score_payload(
    payload: dict[str, Any], worker_state: WorkerState | None = None
) -> dict[str, Any]:
    """The body of the task, a plain function: a :class:`ScoreJob` dict → a result dict."""
    return (worker_state or state()).score(payload)


#: Times a task whose result is ``infra_error`` is sent again (a fork server killed under the
#: program, by the OOM killer or a crash: the next try gets a fresh server).
INFRA_RETRIES = 1


def select_payload(
    payload: dict[str, Any], worker_state: WorkerState | None = None
) -> dict[str, Any]:
    """The body of the select task: a :class:`SelectJob` dict → a result dict."""
    return (worker_state or state()).select(payload)


@app.task(name=SCORE_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)  # type: ignore[untyped-decorator]
def score(self: Any, payload: dict[str, Any]) -> dict[str, Any]:
    """Score one job (see :func:`score_payload`); a soft time limit gives ``infra_error``.

    An ``infra_error`` is never the program's fault: the task is sent once more (to this or
    another worker) before that result is kept.
    """
    return _run_task(self, score_payload, payload)


@app.task(name=SELECT_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)  # type: ignore[untyped-decorator]
def select(self: Any, payload: dict[str, Any]) -> dict[str, Any]:
    """Run, render and match one candidate (see :func:`select_payload`); idempotent, and
    retried on ``infra_error`` like :func:`score`."""
    return _run_task(self, select_payload, payload)


def _run_task(
    self: Any, body: Callable[[dict[str, Any]], dict[str, Any]], payload: dict[str, Any]
) -> dict[str, Any]:
    item_id = str(payload.get("item_id", "?"))
    try:
        result = body(payload)
    except SoftTimeLimitExceeded:
        logger.error("item %s: task soft time limit exceeded; the executor did not return", item_id)
        return infra_result(
            item_id, "the worker's time limit fired before the executor returned"
        ).model_dump(mode="json")
    request = self.request
    if (
        result.get("status") == ExecStatus.INFRA_ERROR.value
        and not request.called_directly
        and request.retries < INFRA_RETRIES
    ):
        logger.warning("item %s: infra_error (%s); sending it again", item_id, result.get("error"))
        raise self.retry(countdown=0, max_retries=INFRA_RETRIES)
    return result
