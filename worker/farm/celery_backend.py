"""The ``celery`` backend, API side: fan a batch out as a Celery group, gather it asynchronously.

Sending goes through Celery (``group(...).apply_async()``, run on a thread: kombu is
blocking); gathering reads the result keys straight from Redis with the asyncio client
(``MGET`` of the pending tasks every ``poll_s``), so a long batch never blocks the event
loop and thousands of items cost one round trip per poll. A Redis outage while gathering is
retried until ``farm.result_timeout_s``; a batch that cannot even be sent, or whose deadline
passes, raises :class:`~llm3d.exceptions.BackendUnavailableError` (the API answers 503).

A batch whose caller goes away (the awaiting task is cancelled) has its tasks revoked:
workers drop those still queued when they receive them. Tasks already running are not
terminated (``terminate=True`` would kill the worker's pool process, and its warm fork
server, and may hit the next task of that process): they finish within their time limit
(at most ``executor.timeout_s`` plus ``farm.task_margin_s``) and their results expire.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis
import redis.asyncio as aioredis
from celery import group

from llm3d.config import Config
from llm3d.exceptions import BackendUnavailableError
from llm3d.schemas import RewardResult
from worker.farm.celery_app import SCORE_TASK, make_celery, task_time_limits
from worker.farm.tasks import reference_redis_key
from worker.scoring import ScoreJob, infra_result

__all__ = ["CeleryBackend"]

logger = logging.getLogger(__name__)

READY = {"SUCCESS", "FAILURE", "REVOKED"}


class CeleryBackend:
    """Scores batches on Celery workers consuming ``farm.queue``.

    Args:
        config: the effective configuration (``farm.redis_url``, ``farm.queue``, ...).
        poll_s: how often pending results are read while gathering.
    """

    name = "celery"

    def __init__(self, config: Config, *, poll_s: float = 0.05) -> None:
        self.config = config
        self.app = make_celery(config)
        self.redis_url = config.farm.redis_url
        self.poll_s = poll_s
        self.redis = aioredis.Redis.from_url(
            self.redis_url, socket_connect_timeout=2.0, socket_timeout=5.0
        )
        self._stored_refs: set[str] = set()

    # -- sending -------------------------------------------------------------------------

    async def _store_references(self, jobs: Sequence[ScoreJob]) -> list[ScoreJob]:
        """Put mesh references in Redis once; messages then carry only their key."""
        ttl = max(self.config.farm.cache_ttl_s, int(self.config.farm.result_timeout_s) * 2)
        out: list[ScoreJob] = []
        to_store: dict[str, str] = {}
        for job in jobs:
            ref = job.reference
            if ref is not None and ref.kind == "mesh":
                to_store.setdefault(job.gt_key, json.dumps(ref.to_dict()))
                job = ScoreJob(job.item_id, job.code, job.gt_key, job.settings, None)
            out.append(job)
        if to_store:
            pipe = self.redis.pipeline(transaction=False)
            for key, value in to_store.items():
                pipe.set(reference_redis_key(self.config.farm.namespace, key), value, ex=ttl)
            await pipe.execute()
        return out

    def _send(self, jobs: Sequence[ScoreJob]) -> list[str]:
        signatures = []
        for job in jobs:
            soft, hard = task_time_limits(self.config, job.settings.timeout_s)
            signatures.append(
                self.app.signature(
                    SCORE_TASK,
                    args=(job.to_dict(),),
                    queue=self.config.farm.queue,
                    soft_time_limit=soft,
                    time_limit=hard,
                )
            )
        result = group(signatures).apply_async()
        return [r.id for r in result.results]

    # -- gathering -----------------------------------------------------------------------

    def _decode(self, job: ScoreJob, raw: bytes | str) -> RewardResult | None:
        meta = self.app.backend.decode_result(raw)
        status = meta.get("status")
        if status not in READY:
            return None
        if status == "SUCCESS":
            result = RewardResult.model_validate(meta["result"])
            return result.model_copy(update={"id": job.item_id})
        error = meta.get("result")
        if isinstance(error, dict):
            error = f"{error.get('exc_type', 'error')}: {error.get('exc_message', '')}"
        return infra_result(job.item_id, f"the Celery task failed ({status}): {error}")

    async def score_batch(
        self,
        jobs: Sequence[ScoreJob],
        progress: Callable[[int], None] | None = None,
    ) -> list[RewardResult]:
        if not jobs:
            return []
        try:
            sent = await self._store_references(jobs)
            ids = await asyncio.to_thread(self._send, sent)
        except Exception as exc:  # redis-py or kombu (OperationalError): cannot enqueue
            raise BackendUnavailableError.redis(self.redis_url, exc) from exc
        # Each item may get several task ids (re-driven after an outage); its first
        # ready result wins, the others are dropped: exactly one result per item.
        keys: list[list[bytes]] = [[self.app.backend.get_key_for_task(t)] for t in ids]
        all_ids = list(ids)
        results: list[RewardResult | None] = [None] * len(jobs)
        pending = list(range(len(jobs)))
        deadline = time.monotonic() + self.config.farm.result_timeout_s
        # No progress for longer than a lost task takes to come back (visibility timeout
        # plus a task's hard limit) means a message was lost: send the pending items again.
        longest = max(j.settings.timeout_s for j in jobs)
        stall_s = self.config.farm.visibility_timeout_s + task_time_limits(self.config, longest)[1]
        try:
            await self._gather(jobs, keys, all_ids, results, pending, deadline, stall_s, progress)
        except asyncio.CancelledError:
            self._revoke(all_ids)
            raise
        await self._forget(all_ids)
        return [r for r in results if r is not None]

    async def _gather(
        self,
        jobs: Sequence[ScoreJob],
        keys: list[list[bytes]],
        all_ids: list[str],
        results: list[RewardResult | None],
        pending: list[int],
        deadline: float,
        stall_s: float,
        progress: Callable[[int], None] | None,
    ) -> None:
        """Poll the result keys of ``pending`` items into ``results`` until all are there."""
        outage: BaseException | None = None
        redrive = False
        last_progress = time.monotonic()
        while pending:
            if time.monotonic() - last_progress > stall_s:
                logger.warning("no result for %.0fs: re-sending %d items", stall_s, len(pending))
                redrive, last_progress = True, time.monotonic()
            if time.monotonic() > deadline:
                if outage is not None:
                    raise BackendUnavailableError.redis(self.redis_url, outage)
                raise BackendUnavailableError(
                    f"{len(pending)} of {len(jobs)} items got no result within "
                    f"farm.result_timeout_s={self.config.farm.result_timeout_s}s: are Celery "
                    f"workers consuming queue {self.config.farm.queue!r}? (llm3d worker)"
                )
            try:
                if redrive:
                    await self._redrive(jobs, pending, keys, all_ids)
                    redrive = False
                flat = [k for i in pending for k in keys[i]]
                values = iter(await self.redis.mget(flat))
                outage = None
            except Exception as exc:  # redis-py, or kombu while re-driving
                if outage is None:
                    logger.warning("Redis unreachable while gathering results: %s", exc)
                outage = exc
                redrive = True
                await asyncio.sleep(min(1.0, 10 * self.poll_s))
                continue
            still: list[int] = []
            for i in pending:
                copies = [next(values) for _ in keys[i]]
                done = self._first_ready(jobs[i], copies)
                if done is None:
                    still.append(i)
                else:
                    results[i] = done
            if len(still) != len(pending):
                last_progress = time.monotonic()
                if progress is not None:
                    progress(len(jobs) - len(still))
            pending[:] = still
            if pending:
                await asyncio.sleep(self.poll_s)

    def _revoke(self, ids: Sequence[str]) -> None:
        """Revoke a cancelled batch's tasks, on a thread (the caller is being cancelled)."""

        def revoke() -> None:
            try:
                self.app.control.revoke(list(ids))
            except Exception as exc:  # best effort: the tasks then run and their results expire
                logger.warning("could not revoke %d cancelled tasks: %s", len(ids), exc)

        threading.Thread(target=revoke, name="llm3d-revoke", daemon=True).start()
        logger.info("batch cancelled: %d tasks revoked", len(ids))

    def _first_ready(
        self, job: ScoreJob, copies: Sequence[bytes | str | None]
    ) -> RewardResult | None:
        """The first finished result among an item's task copies, or None."""
        for raw in copies:
            if raw is not None:
                done = self._decode(job, raw)
                if done is not None:
                    return done
        return None

    async def _redrive(
        self,
        jobs: Sequence[ScoreJob],
        pending: Sequence[int],
        keys: list[list[bytes]],
        all_ids: list[str],
    ) -> None:
        """Send the pending items again after a Redis outage.

        A message taken from the queue just before Redis went away can be lost with the
        Redis transport (between the pop and its bookkeeping as unacknowledged); the tasks
        are idempotent, so sending again is safe and whichever copy finishes first counts.
        """
        todo = [jobs[i] for i in pending]
        sent = await self._store_references(todo)
        new_ids = await asyncio.to_thread(self._send, sent)
        for i, task_id in zip(pending, new_ids, strict=True):
            keys[i].append(self.app.backend.get_key_for_task(task_id))
        all_ids.extend(new_ids)
        logger.warning("Redis is back: re-sent %d pending items", len(todo))

    async def _forget(self, ids: Sequence[str]) -> None:
        """Results are gathered: drop them from the result backend (the API caches them)."""
        try:
            await self.redis.delete(*[self.app.backend.get_key_for_task(i) for i in ids])
        except (redis.RedisError, OSError) as exc:
            logger.warning("could not delete %d gathered results: %s", len(ids), exc)

    # -- health --------------------------------------------------------------------------

    async def queue_depth(self) -> int:
        """Messages waiting in the ``blender`` queue."""
        try:
            return int(await self.redis.llen(self.config.farm.queue))
        except (redis.RedisError, OSError) as exc:
            raise BackendUnavailableError.redis(self.redis_url, exc) from exc

    def _ping_workers(self) -> list[str]:
        replies = self.app.control.ping(timeout=1.0) or []
        return sorted(name for reply in replies for name in reply)

    async def health(self) -> dict[str, Any]:
        try:
            await self.redis.ping()
        except (redis.RedisError, OSError) as exc:
            raise BackendUnavailableError.redis(self.redis_url, exc) from exc
        try:
            workers = await asyncio.to_thread(self._ping_workers)
        except Exception as exc:
            raise BackendUnavailableError.redis(self.redis_url, exc) from exc
        if not workers:
            raise BackendUnavailableError(
                f"no Celery worker answers on {self.redis_url.split('@')[-1]}: start one with "
                "`llm3d worker` (or `docker compose up --scale worker=N`)"
            )
        return {
            "backend": self.name,
            "workers": workers,
            "queue": self.config.farm.queue,
            "queue_depth": await self.queue_depth(),
        }

    async def close(self) -> None:
        await self.redis.aclose()
        await asyncio.to_thread(self.app.close)
