"""The ``celery`` backend, API side: fan a batch out as a Celery group, gather it asynchronously.

Sending goes through Celery (``group(...).apply_async()``, run on a thread: kombu is
blocking); gathering reads the result keys straight from Redis with the asyncio client
(``MGET`` of the pending tasks every ``poll_s``), so a long batch never blocks the event
loop and thousands of items cost one round trip per poll. A Redis outage while gathering is
retried until ``farm.result_timeout_s``; a batch that cannot even be sent, or whose deadline
passes, raises :class:`~llm3d.exceptions.BackendUnavailableError` (the API answers 503).

Nobody to score: before a batch is sent, the backend makes sure some worker consumes
``farm.queue`` (Celery's ``inspect().active_queues()``; a result that arrives is proof
enough for a few seconds). When none does for ``farm.no_worker_timeout_s``, the batch is
answered 503 with the message of ``/healthz``, instead of waiting on a queue nobody reads;
the same happens when the workers vanish mid-batch (asked again after half that time
without a result, and confirmed by a second broadcast; its queued messages are withdrawn).
A job passes ``waiting``: it waits instead, and its status says why.

A worker lost mid-batch costs seconds, not the old fifteen minutes: its tasks come back when
it stops renewing their leases (:mod:`worker.farm.leases`).

Shutdown: after :meth:`CeleryBackend.begin_shutdown` a batch still gathering gets the grace
to finish; then its unfinished items are answered ``infra_error`` and their tasks revoked.

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
from dataclasses import replace
from typing import Any

import redis
import redis.asyncio as aioredis
from celery import group

from llm3d.config import Config
from llm3d.exceptions import BackendUnavailableError
from llm3d.schemas import RewardResult
from worker.farm.celery_app import SCORE_TASK, SELECT_TASK, make_celery, task_time_limits
from worker.farm.tasks import reference_redis_key, views_redis_key
from worker.scoring import ScoreJob, infra_result
from worker.selection import RENDER_BUDGET_S, FarmJob, SelectJob, views_digest

__all__ = ["CeleryBackend"]

logger = logging.getLogger(__name__)

READY = {"SUCCESS", "FAILURE", "REVOKED"}

#: How long a seen worker (or a result that arrived) counts as proof that someone consumes
#: the queue, so that back-to-back batches do not each wait for a broadcast's replies.
CONSUMERS_FRESH_S = 10.0
#: How long one ``inspect().active_queues()`` broadcast waits for the workers' replies.
INSPECT_TIMEOUT_S = 1.0
#: The error of items not scored when the service shut down.
SHUTDOWN_ERROR = "the reward service shut down before this item was scored: resubmit it"

#: Told why a job's batch waits (a message), or that it no longer does (None).
Waiting = Callable[[str | None], None]


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
        self._consumers_seen_at = float("-inf")
        self._shutdown_at: float | None = None

    def begin_shutdown(self, grace_s: float) -> None:
        """Batches still gathering answer within ``grace_s``: unfinished items ``infra_error``."""
        if self._shutdown_at is None:
            self._shutdown_at = time.monotonic() + grace_s

    # -- who consumes the queue ----------------------------------------------------------

    def no_worker_message(self) -> str:
        """What ``/healthz`` and a 503 say when no worker consumes ``farm.queue``."""
        return (
            f"no Celery worker consumes queue {self.config.farm.queue!r} on "
            f"{self.redis_url.split('@')[-1]}: start one with `llm3d worker` (or "
            "`docker compose up --scale worker=N`)"
        )

    def _consumers(self) -> list[str]:
        """Workers that answer and consume ``farm.queue`` (one broadcast, blocking)."""
        replies = self.app.control.inspect(timeout=INSPECT_TIMEOUT_S).active_queues() or {}
        queue = self.config.farm.queue
        return sorted(
            name
            for name, queues in replies.items()
            if any(q.get("name") == queue for q in queues or ())
        )

    async def consumers(self) -> list[str]:
        """:meth:`_consumers` off the event loop; 503 (:class:`BackendUnavailableError`) when
        Redis cannot be reached."""
        try:
            names = await asyncio.to_thread(self._consumers)
        except Exception as exc:  # kombu's OperationalError, redis-py: the broker is down
            raise BackendUnavailableError.redis(self.redis_url, exc) from exc
        if names:
            self._consumers_seen_at = time.monotonic()
        return names

    async def _await_consumers(self, waiting: Waiting | None, patience_s: float) -> None:
        """Return once some worker consumes the queue.

        Without ``waiting`` (a batch), raise :class:`BackendUnavailableError` when none does
        for ``patience_s`` (at least one more broadcast is asked); with it (a job), wait as
        long as it takes, telling ``waiting`` why.
        """
        if time.monotonic() - self._consumers_seen_at < CONSUMERS_FRESH_S:
            return
        deadline = time.monotonic() + patience_s
        told = False
        while not await self.consumers():
            message = self.no_worker_message()
            if waiting is not None:
                if not told:
                    logger.warning("a job waits: %s", message)
                    waiting(message)
                    told = True
            elif time.monotonic() >= deadline:
                raise BackendUnavailableError(message)
            if self._shutdown_at is not None:
                raise BackendUnavailableError(f"the reward service is shutting down; {message}")
            await asyncio.sleep(0.5)
        if told and waiting is not None:
            waiting(None)

    # -- sending -------------------------------------------------------------------------

    async def _store_references(self, jobs: Sequence[FarmJob]) -> list[FarmJob]:
        """Put mesh references, and the views of each group of candidates, in Redis once;
        messages then carry only their key."""
        ttl = max(self.config.farm.cache_ttl_s, int(self.config.farm.result_timeout_s) * 2)
        namespace = self.config.farm.namespace
        out: list[FarmJob] = []
        to_store: dict[str, str] = {}
        for job in jobs:
            ref = job.reference if isinstance(job, ScoreJob) else None
            if isinstance(job, ScoreJob) and ref is not None and ref.kind == "mesh":
                key = reference_redis_key(namespace, job.gt_key)
                if key not in to_store:
                    to_store[key] = json.dumps(ref.to_dict())
                job = ScoreJob(job.item_id, job.code, job.gt_key, job.settings, None)
            elif isinstance(job, SelectJob) and job.views:
                views_key = job.views_key or views_digest(job.views, job.settings)
                key = views_redis_key(namespace, views_key)
                if key not in to_store:
                    to_store[key] = json.dumps(job.to_dict()["views"])
                job = replace(job, views=(), views_key=views_key)
            out.append(job)
        if to_store:
            pipe = self.redis.pipeline(transaction=False)
            for key, value in to_store.items():
                pipe.set(key, value, ex=ttl)
            await pipe.execute()
        return out

    def _limits(self, job: FarmJob) -> tuple[float, float]:
        """A job's task time limits: a candidate to match also renders."""
        soft, hard = task_time_limits(self.config, job.settings.timeout_s)
        extra = RENDER_BUDGET_S if isinstance(job, SelectJob) else 0.0
        return soft + extra, hard + extra

    def _send(self, jobs: Sequence[FarmJob]) -> list[str]:
        signatures = []
        for job in jobs:
            soft, hard = self._limits(job)
            signatures.append(
                self.app.signature(
                    SELECT_TASK if isinstance(job, SelectJob) else SCORE_TASK,
                    args=(job.to_dict(),),
                    queue=self.config.farm.queue,
                    soft_time_limit=soft,
                    time_limit=hard,
                )
            )
        result = group(signatures).apply_async()
        return [r.id for r in result.results]

    # -- gathering -----------------------------------------------------------------------

    def _decode(self, job: FarmJob, raw: bytes | str) -> RewardResult | None:
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
        *,
        waiting: Waiting | None = None,
    ) -> list[RewardResult]:
        return await self._run(jobs, progress, waiting)

    async def select_batch(
        self,
        jobs: Sequence[SelectJob],
        progress: Callable[[int], None] | None = None,
        *,
        waiting: Waiting | None = None,
    ) -> list[RewardResult]:
        """Candidates to run, render and match: gathered, retried and cancelled like scores."""
        return await self._run(jobs, progress, waiting)

    async def _run(
        self,
        jobs: Sequence[FarmJob],
        progress: Callable[[int], None] | None,
        waiting: Waiting | None,
    ) -> list[RewardResult]:
        if not jobs:
            return []
        if self._shutdown_at is not None:
            raise BackendUnavailableError("the reward service is shutting down: retry shortly")
        await self._await_consumers(waiting, self.config.farm.no_worker_timeout_s)
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
        stall_s = self.config.farm.visibility_timeout_s + max(self._limits(j)[1] for j in jobs)
        try:
            await self._gather(
                jobs, keys, all_ids, results, pending, deadline, stall_s, progress, waiting
            )
        except asyncio.CancelledError:
            self._revoke(all_ids)
            raise
        except BackendUnavailableError:
            await self._withdraw(all_ids)  # nobody will take them: do not leave them queued
            raise
        if pending:  # shutting down: what is known now is the answer
            for i in pending:
                results[i] = infra_result(jobs[i].item_id, SHUTDOWN_ERROR)
            self._revoke(all_ids)
            logger.warning(
                "shutting down: %d of %d items answered infra_error", len(pending), len(jobs)
            )
        await self._forget(all_ids)
        return [r for r in results if r is not None]

    async def _gather(
        self,
        jobs: Sequence[FarmJob],
        keys: list[list[bytes]],
        all_ids: list[str],
        results: list[RewardResult | None],
        pending: list[int],
        deadline: float,
        stall_s: float,
        progress: Callable[[int], None] | None,
        waiting: Waiting | None = None,
    ) -> None:
        """Poll the result keys of ``pending`` items into ``results`` until all are there
        (or until the shutdown grace is over: the items left are in ``pending``)."""
        outage: BaseException | None = None
        redrive = False
        last_progress = last_check = last_lost_check = time.monotonic()
        while pending:
            if self._shutdown_at is not None and time.monotonic() >= self._shutdown_at:
                return
            idle = time.monotonic() - max(last_progress, last_check)
            if outage is None and idle > self.config.farm.no_worker_timeout_s / 2:
                # no result for a while: is anyone still consuming? (503 for a batch if not)
                try:
                    alive = bool(await self.consumers())
                except BackendUnavailableError:
                    alive = True  # Redis itself: the outage handling below deals with it
                if not alive:  # one more broadcast to be sure, then 503 (or a job waits)
                    self._consumers_seen_at = float("-inf")
                    await self._await_consumers(waiting, 0.0)
                last_check = time.monotonic()
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
                last_progress = self._consumers_seen_at = time.monotonic()
                if progress is not None:
                    progress(len(jobs) - len(still))
            pending[:] = still
            window = self.config.farm.visibility_timeout_s
            now = time.monotonic()
            if pending and now - max(last_progress, last_lost_check) > window:
                # A worker killed between taking a message from the queue and recording it
                # as unacknowledged loses it for good: kombu's sweep never sees it. Items
                # whose tasks are nowhere (no result, not queued, not held) are sent again.
                last_lost_check = now
                lost = await self._lost(pending, keys, all_ids)
                if lost:
                    logger.warning(
                        "%d items' tasks were lost in transit: sending them again", len(lost)
                    )
                    await self._redrive(jobs, lost, keys, all_ids)
            if pending:
                await asyncio.sleep(self.poll_s)

    async def _lost(
        self, pending: Sequence[int], keys: list[list[bytes]], all_ids: list[str]
    ) -> list[int]:
        """The pending items none of whose tasks is queued or held by a worker (Redis's
        ``unacked`` hash also holds what workers have reserved); an item whose message a
        worker took but never recorded is the only way to get here."""
        farm = self.config.farm
        queues = [farm.queue, *(f"{farm.queue}\x06\x16{p}" for p in (3, 6, 9))]
        try:
            pipe = self.redis.pipeline()
            for queue in queues:
                pipe.lrange(queue, 0, -1)
            pipe.hvals(f"{farm.namespace}:unacked")
            blobs = [b for values in await pipe.execute() for b in values]
        except Exception as exc:  # Redis trouble: the outage handling deals with it
            logger.debug("could not look for lost tasks: %s", exc)
            return []
        seen = b"\n".join(blobs)
        task_of = {self.app.backend.get_key_for_task(t): t.encode() for t in all_ids}
        return [i for i in pending if not any(task_of[key] in seen for key in keys[i])]

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
        self, job: FarmJob, copies: Sequence[bytes | str | None]
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
        jobs: Sequence[FarmJob],
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

    async def _withdraw(self, ids: Sequence[str]) -> None:
        """Remove a failed batch's messages still waiting in the queue (best effort)."""
        wanted = set(ids)
        queue = self.config.farm.queue
        try:
            raw = await self.redis.lrange(queue, 0, -1)
            mine = [m.decode() if isinstance(m, bytes) else m for m in raw]
            mine = [m for m in mine if _task_id(m) in wanted]
            if mine:
                pipe = self.redis.pipeline(transaction=False)
                for message in mine:
                    pipe.lrem(queue, 1, message)
                await pipe.execute()
                logger.info("withdrew %d queued messages of a failed batch", len(mine))
        except (redis.RedisError, OSError) as exc:
            logger.warning("could not withdraw the queued messages of a failed batch: %s", exc)

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

    async def health(self) -> dict[str, Any]:
        try:
            await self.redis.ping()
        except (redis.RedisError, OSError) as exc:
            raise BackendUnavailableError.redis(self.redis_url, exc) from exc
        workers = await self.consumers()
        if not workers:
            raise BackendUnavailableError(self.no_worker_message())
        return {
            "backend": self.name,
            "workers": workers,
            "queue": self.config.farm.queue,
            "queue_depth": await self.queue_depth(),
        }

    async def close(self) -> None:
        await self.redis.aclose()
        await asyncio.to_thread(self.app.close)


def _task_id(message: bytes | str) -> str | None:
    """The Celery task id of a kombu message as the Redis transport queues it."""
    try:
        body = json.loads(message)
        return str(body["headers"]["id"])
    except (ValueError, KeyError, TypeError):
        return None
