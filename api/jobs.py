"""Where asynchronous jobs (``POST /reward/jobs``) keep their state between polls.

:class:`MemoryJobStore` for the inline backend; :class:`RedisJobStore` when the farm runs on
Celery, so that the state survives in Redis and a Redis outage is reported (503) instead of
being mistaken for an unknown job.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Protocol

import redis
import redis.asyncio as aioredis

from api.service import RewardService
from llm3d.exceptions import BackendUnavailableError
from llm3d.schemas import JobState, JobStatus, RewardRequest

__all__ = ["JobManager", "JobStore", "MemoryJobStore", "RedisJobStore"]

logger = logging.getLogger(__name__)


class JobStore(Protocol):
    """Put and get job states; finished jobs are kept ``ttl_s`` seconds."""

    async def put(self, job: JobStatus) -> None: ...

    async def get(self, job_id: str) -> JobStatus | None: ...

    async def close(self) -> None: ...


class MemoryJobStore:
    """Jobs in a dict of this process, pruned after ``ttl_s``."""

    def __init__(self, ttl_s: int) -> None:
        self.ttl_s = ttl_s
        self._jobs: dict[str, tuple[float, JobStatus]] = {}
        self._lock = threading.Lock()

    async def put(self, job: JobStatus) -> None:
        now = time.monotonic()
        with self._lock:
            self._jobs[job.job_id] = (now, job)
            expired = [
                k for k, (t, j) in self._jobs.items() if j.finished_at and now - t > self.ttl_s
            ]
            for key in expired:
                del self._jobs[key]

    async def get(self, job_id: str) -> JobStatus | None:
        with self._lock:
            entry = self._jobs.get(job_id)
        return entry[1] if entry else None

    async def close(self) -> None:
        return None


class RedisJobStore:
    """Jobs as JSON under ``<namespace>:job:<id>`` with a time to live."""

    def __init__(self, url: str, *, ttl_s: int, namespace: str = "llm3d") -> None:
        self.prefix = f"{namespace}:job:"
        self.url = url
        self.ttl_s = ttl_s
        self._redis = aioredis.Redis.from_url(url, socket_connect_timeout=2.0, socket_timeout=5.0)

    async def put(self, job: JobStatus) -> None:
        try:
            await self._redis.set(self.prefix + job.job_id, job.model_dump_json(), ex=self.ttl_s)
        except (redis.RedisError, OSError) as exc:
            raise BackendUnavailableError.redis(self.url, exc) from exc

    async def get(self, job_id: str) -> JobStatus | None:
        try:
            raw = await self._redis.get(self.prefix + job_id)
        except (redis.RedisError, OSError) as exc:
            raise BackendUnavailableError.redis(self.url, exc) from exc
        return JobStatus.model_validate_json(raw) if raw is not None else None

    async def close(self) -> None:
        await self._redis.aclose()


class JobManager:
    """Runs jobs in the background of the event loop and records their progress in a store."""

    def __init__(self, service: RewardService, store: JobStore) -> None:
        self.service = service
        self.store = store
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, request: RewardRequest) -> JobStatus:
        """Validate ``request`` now (unknown task ids fail here), score it in the background."""
        self.service.resolve(request)
        rid = request.request_id or uuid.uuid4().hex
        job = JobStatus(
            job_id=uuid.uuid4().hex,
            request_id=rid,
            state=JobState.QUEUED,
            items=len(request.items),
            created_at=datetime.now(UTC),
        )
        await self.store.put(job)
        task = asyncio.create_task(self._run(job, request), name=f"llm3d-job-{job.job_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._gauge()
        return job

    def _gauge(self) -> None:
        self.service.telemetry.jobs.labels(state="running").set(len(self._tasks))

    async def _put_quietly(self, job: JobStatus) -> None:
        try:
            await self.store.put(job)
        except BackendUnavailableError as exc:  # progress is best effort; the end is retried
            logger.warning("job %s: progress not recorded: %s", job.job_id, exc)

    async def _run(self, job: JobStatus, request: RewardRequest) -> None:
        state = {"job": job.model_copy(update={"state": JobState.RUNNING})}
        pending: set[asyncio.Task[None]] = set()

        def record(**update: object) -> None:
            state["job"] = state["job"].model_copy(update=update)
            t = asyncio.get_running_loop().create_task(self._put_quietly(state["job"]))
            pending.add(t)
            t.add_done_callback(pending.discard)

        def progress(done: int) -> None:
            record(completed=done)

        def waiting(why: str | None) -> None:
            # no worker to score: the job waits in the queue and says so (a batch gets 503)
            record(state=JobState.QUEUED if why else JobState.RUNNING, detail=why)

        await self._put_quietly(state["job"])
        try:
            response = await self.service.score(
                request, request_id=job.request_id, progress=progress, waiting=waiting
            )
            final = state["job"].model_copy(
                update={
                    "state": JobState.DONE,
                    "detail": None,
                    "completed": len(response.results),
                    "finished_at": datetime.now(UTC),
                    "response": response,
                }
            )
        except Exception as exc:
            logger.exception("job %s failed", job.job_id)
            final = state["job"].model_copy(
                update={
                    "state": JobState.FAILED,
                    "detail": None,
                    "finished_at": datetime.now(UTC),
                    "error": f"{type(exc).__name__}: {exc}",
                }
            )
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        await self._store_final(final)
        self._gauge()

    async def _store_final(self, job: JobStatus) -> None:
        """The final state must land: retry through a store outage (with a deadline)."""
        deadline = time.monotonic() + self.service.config.farm.result_timeout_s
        delay = 0.2
        while True:
            try:
                await self.store.put(job)
                return
            except BackendUnavailableError as exc:
                if time.monotonic() > deadline:
                    logger.error("job %s: final state lost: %s", job.job_id, exc)
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def close(self, grace_s: float = 0.0) -> None:
        """Let running jobs record their end for up to ``grace_s`` (after a shutdown began,
        their batches answer within the grace), then cancel those left."""
        if self._tasks and grace_s > 0:
            await asyncio.wait(list(self._tasks), timeout=grace_s)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
