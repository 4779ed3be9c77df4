"""The reward service's logic, between the routes and the backend.

A request is resolved into :class:`~worker.scoring.ScoreJob` s (task ids looked up, inline
references hashed), looked up in the result cache, deduplicated (identical programs against
the same ground truth and settings are scored once), scored by the backend, stored in the
cache and answered in the order of ``items``. Requests are idempotent by ``request_id``:
a retry of a request still in flight waits for the same answer, a retry of a finished one
gets it again, and reusing an id for a different batch is a conflict.

The work of a request is cancelled (its programs stopped, nothing cached) when every caller
waiting for it has gone away: the route cancels its wait when the HTTP client disconnects.

When the process is asked to stop (:meth:`RewardService.begin_shutdown`, on SIGTERM), new
requests get 503 and those in flight are answered within ``api.shutdown_grace_s``: what
was scored by then, and ``infra_error`` for the rest.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

from api.cache import ResultCache, cacheable
from api.idempotency import RequestConflictError, RequestLedger, fingerprint
from api.registry import TaskRegistry
from api.telemetry import Telemetry
from llm3d.config import Config
from llm3d.exceptions import BackendUnavailableError, UnknownTaskError
from llm3d.schemas import (
    ReferencePayload,
    RewardRequest,
    RewardResponse,
    RewardResult,
    reference_key,
)
from worker.farm.backends import Backend
from worker.scoring import ScoreJob, ScoreSettings, cache_key, reference_payload

__all__ = ["RequestConflictError", "RewardService"]

logger = logging.getLogger(__name__)


class RewardService:
    """Scores :class:`RewardRequest` s on a backend, with a cache and idempotent request ids."""

    def __init__(
        self,
        config: Config,
        backend: Backend,
        cache: ResultCache,
        tasks: TaskRegistry,
        telemetry: Telemetry,
        reward_version: str,
    ) -> None:
        self.config = config
        self.backend = backend
        self.cache = cache
        self.tasks = tasks
        self.telemetry = telemetry
        self.reward_version = reward_version
        self._requests: RequestLedger[RewardResponse] = RequestLedger()
        self.shutting_down = False

    def begin_shutdown(self) -> None:
        """Refuse new requests (503); answer those in flight within ``api.shutdown_grace_s``."""
        if self.shutting_down:
            return
        self.shutting_down = True
        logger.warning(
            "shutting down: batches in flight answer within %.1fs", self.config.api.shutdown_grace_s
        )
        self.backend.begin_shutdown(self.config.api.shutdown_grace_s)

    def resolve(self, request: RewardRequest) -> list[ScoreJob]:
        """The jobs of a request; :class:`UnknownTaskError` lists every unknown task id."""
        settings = ScoreSettings.from_config(
            self.config, points=request.points, timeout_s=request.timeout_s
        )
        jobs: list[ScoreJob] = []
        unknown: list[str] = []
        refs: dict[str, tuple[str, ReferencePayload]] = {}
        for index, item in enumerate(request.items):
            if item.task_id is not None:
                if item.task_id not in self.tasks:
                    unknown.append(f"items[{index}] (id {item.id!r}): {item.task_id!r}")
                    continue
                task = self.tasks.get(item.task_id)
                gt_key, payload = task.public.key, task.payload
            else:
                assert item.reference is not None  # the schema guarantees one of the two
                blob = item.reference.model_dump_json()
                if blob not in refs:
                    p = reference_payload(item.reference)
                    refs[blob] = (reference_key(p), p)
                gt_key, payload = refs[blob]
            jobs.append(ScoreJob(item.id, item.code, gt_key, settings, payload))
        if unknown:
            raise UnknownTaskError(
                f"unknown task_id in {len(unknown)} item(s): {'; '.join(unknown[:10])}"
                f"{' …' if len(unknown) > 10 else ''}. GET /tasks lists the "
                f"{len(self.tasks)} known ground truths; register one with POST /tasks or "
                "give a reference inline"
            )
        return jobs

    async def score(
        self,
        request: RewardRequest,
        *,
        request_id: str | None = None,
        progress: Callable[[int], None] | None = None,
        waiting: Callable[[str | None], None] | None = None,
    ) -> RewardResponse:
        """Score a request (idempotent by ``request_id``); results in the order of ``items``.

        ``waiting`` (a job's): wait for a worker when none can score, telling it why,
        instead of failing (see :meth:`worker.farm.backends.Backend.score_batch`).

        Raises:
            UnknownTaskError: an item names a task id the service does not know.
            RequestConflictError: ``request_id`` was used before for a different batch.
            BackendUnavailableError: the backend cannot be reached, nobody can score, or the
                service is shutting down.
        """
        if self.shutting_down:
            raise BackendUnavailableError("the reward service is shutting down: retry shortly")
        rid = request_id or request.request_id
        if rid is None:  # nobody else can ask for this answer: cancelled with the caller
            return await self._score(request, uuid.uuid4().hex, progress, waiting)
        return await self._requests.run(
            rid, fingerprint(request), lambda: self._score(request, rid, progress, waiting)
        )

    async def _score(
        self,
        request: RewardRequest,
        rid: str,
        progress: Callable[[int], None] | None,
        waiting: Callable[[str | None], None] | None = None,
    ) -> RewardResponse:
        jobs = self.resolve(request)
        keys = [cache_key(j.code, j.gt_key, j.settings, self.reward_version) for j in jobs]
        hits = await self.cache.get_many(keys)
        results: list[RewardResult | None] = [
            h.model_copy(update={"id": j.item_id, "cached": True}) if h is not None else None
            for h, j in zip(hits, jobs, strict=True)
        ]
        unique: dict[str, ScoreJob] = {}
        for job, key, hit in zip(jobs, keys, hits, strict=True):
            if hit is None:
                unique.setdefault(key, job)
        n_hits = len(jobs) - sum(h is None for h in hits)
        # an item whose twin is scored in this batch is served like a cache hit
        self.telemetry.cache_hits.inc(len(jobs) - len(unique))
        self.telemetry.cache_misses.inc(len(unique))
        if progress is not None and n_hits:
            progress(n_hits)

        todo = list(unique.values())
        if todo:
            self.telemetry.queue_depth.inc(len(todo))
            start = time.perf_counter()
            try:
                scored = await self.backend.score_batch(
                    todo,
                    (lambda done: progress(n_hits + done)) if progress else None,
                    waiting=waiting,
                )
            finally:
                self.telemetry.queue_depth.dec(len(todo))
            logger.info(
                "request %s: scored %d unique items (%d cached) in %.2fs",
                rid,
                len(todo),
                n_hits,
                time.perf_counter() - start,
            )
            by_key = dict(zip(unique, scored, strict=True))
            await self.cache.put_many({k: r for k, r in by_key.items() if cacheable(r)})
            first_of_key: set[str] = set()
            for i, key in enumerate(keys):
                if results[i] is None:
                    fresh = by_key[key]
                    # a duplicate inside the batch is answered from its twin: cached
                    dup = key in first_of_key
                    first_of_key.add(key)
                    results[i] = fresh.model_copy(update={"id": jobs[i].item_id, "cached": dup})
        final = [r for r in results if r is not None]
        self.telemetry.record_results(final)
        return RewardResponse(request_id=rid, reward_version=self.reward_version, results=final)
