"""Execution backends of the reward service: one :class:`Backend` protocol, three implementations.

- ``inline`` (:class:`InlineBackend`): a pool of warm Blender fork servers owned by the API
  process (:class:`worker.execution.executor.ExecutorPool`). The embedded default: no Redis, no Docker.
- ``celery`` (:class:`worker.farm.celery_backend.CeleryBackend`): a group of thin Celery tasks on
  the ``blender`` queue, gathered without blocking the event loop.
- ``modal`` (:class:`ModalBackend`): the functions of :mod:`worker.farm.modal_app`, deployed with
  ``modal deploy -m api.modal_web``.

All three run :func:`worker.scoring.score_job`, so they give the same result for the same job.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from llm3d.config import Config
from llm3d.exceptions import BackendUnavailableError, ConfigError, InfraError
from llm3d.schemas import ExecStatus, RewardResult
from worker.scoring import ScoreJob, build_ground_truth, gt_cache_key, infra_result, score_job
from worker.selection import FarmJob, LocalSelector, SelectJob, select_job
from worker.types import ExecResult

if TYPE_CHECKING:
    import modal

    from worker.execution.executor import ExecutorPool

__all__ = [
    "HEALTH_PROGRAM",
    "Backend",
    "CancelScope",
    "InlineBackend",
    "ModalBackend",
    "make_backend",
]

logger = logging.getLogger(__name__)

# The smallest real program: imports bpy_lib, builds nothing. A healthy executor answers
# `no_geometry`; anything else (infra_error, a timeout) means the backend is not usable.
HEALTH_PROGRAM = "from bpy_lib import *\n# health check: builds nothing\n"
HEALTHY_STATUSES = frozenset({ExecStatus.NO_GEOMETRY.value, ExecStatus.OK.value})


@runtime_checkable
class Backend(Protocol):
    """Where programs run. Implementations must be safe to call from one event loop."""

    name: str

    async def score_batch(
        self,
        jobs: Sequence[ScoreJob],
        progress: Callable[[int], None] | None = None,
        *,
        waiting: Callable[[str | None], None] | None = None,
    ) -> list[RewardResult]:
        """Score ``jobs``: one result per job, in order. Never raises for a program's fault.

        ``progress(done)`` is called as results arrive. Raises
        :class:`~llm3d.exceptions.BackendUnavailableError` when the backend cannot be reached,
        or when nobody can score (no worker): unless ``waiting`` is given (a job), which is
        then told why the batch waits (a message), and that it no longer does (``None``).
        """
        ...

    async def select_batch(
        self,
        jobs: Sequence[SelectJob],
        progress: Callable[[int], None] | None = None,
        *,
        waiting: Callable[[str | None], None] | None = None,
    ) -> list[RewardResult]:
        """Run, render and match candidates (:func:`worker.selection.select_job`): one
        outcome a job, in order, carried as a :class:`RewardResult`
        (:meth:`worker.selection.CandidateOutcome.from_result` reads it). As
        :meth:`score_batch` otherwise."""
        ...

    def begin_shutdown(self, grace_s: float) -> None:
        """The service is stopping: batches in flight answer within ``grace_s`` seconds, their
        unfinished items ``infra_error``; new batches are refused (503)."""
        ...

    async def health(self) -> dict[str, Any]:
        """Check that the backend really answers; raise :class:`InfraError` when it does not."""
        ...

    async def close(self) -> None:
        """Release processes and connections."""
        ...


def sandbox_layers(server_info: dict[str, Any]) -> dict[str, str]:
    """What a fork server's hello says of its isolation layers, for ``/healthz``."""
    notes = server_info.get("diagnostics") or {}
    return {k: str(notes[k]) for k in ("jail", "user", "network", "processes") if k in notes}


class CancelScope:
    """The programs of one batch on an :class:`~worker.execution.executor.ExecutorPool`, to stop them
    all at once when the batch is abandoned (its HTTP client went away)."""

    def __init__(self) -> None:
        self.cancelled = False
        self._futures: set[Future[ExecResult]] = set()
        self._pool: ExecutorPool | None = None
        self._lock = threading.Lock()

    def track(self, pool: ExecutorPool, future: Future[ExecResult]) -> None:
        """Remember the program of ``future``; stop it at once if the batch is cancelled."""
        with self._lock:
            self._pool = pool
            cancelled = self.cancelled
            if not cancelled:
                self._futures.add(future)
        if cancelled:
            pool.cancel(future)  # submitted after the cancel: stop it now
            return
        # outside the lock: a future already answered runs the callback right here
        future.add_done_callback(self._discard)

    def _discard(self, future: Future[ExecResult]) -> None:
        with self._lock:
            self._futures.discard(future)

    def cancel(self) -> int:
        """Stop every program of the batch still queued or running; how many were asked."""
        with self._lock:
            self.cancelled = True
            futures, self._futures = list(self._futures), set()
            pool = self._pool
        if pool is None:
            return 0
        return sum(pool.cancel(f) for f in futures)


def default_pool_size(config: Config) -> int:
    """Fork servers side by side: ``executor.servers``, or one per core."""
    return config.executor.servers or os.cpu_count() or 1


class InlineBackend:
    """A pool of fork servers in the API's process tree; metrics run on a thread pool.

    Args:
        config: the effective configuration.
        pool: an already started pool (tests, benchmarks); by default one is started here
            with ``executor.servers`` servers.
    """

    name = "inline"

    def __init__(self, config: Config, *, pool: ExecutorPool | None = None) -> None:
        from worker.execution.executor import ExecutorPool
        from worker.metrics import GroundTruthCache

        self.config = config
        self._size = default_pool_size(config)
        self._owns_pool = pool is None
        self._pool = pool if pool is not None else ExecutorPool(config.executor, size=self._size)
        if self._owns_pool:
            self._pool.start()  # warm the fork servers now, not on the first request
        self._gt_cache = GroundTruthCache(
            config.metrics.gt_cache_size, max_bytes=config.metrics.gt_cache_mb << 20
        )
        # Threads only wait on the pool and compute metrics: a few per server keep it busy.
        self._threads = ThreadPoolExecutor(
            max_workers=max(4, 3 * self._size), thread_name_prefix="llm3d-score"
        )
        self._gt_locks: dict[str, threading.Lock] = {}
        self._gt_locks_guard = threading.Lock()
        self._closed = False
        self._scopes: set[CancelScope] = set()
        self._shutting_down = False
        # render servers by camera rig, started by the first candidate to match
        self._selector = LocalSelector(self.run_program, config.executor, self._size)

    def begin_shutdown(self, grace_s: float) -> None:
        """After ``grace_s``, stop the programs of every batch in flight (``infra_error``)."""
        if self._shutting_down:
            return
        self._shutting_down = True

        def stop_all() -> None:
            stopped = sum(scope.cancel() for scope in list(self._scopes))
            logger.warning("shutting down: %d programs in flight stopped", stopped)

        asyncio.get_running_loop().call_later(grace_s, stop_all)

    def run_program(
        self, code: str, timeout_s: float, scope: CancelScope | None = None
    ) -> ExecResult:
        """The runner of :func:`worker.scoring.score_job`: one program through the pool."""
        if self._closed:
            raise InfraError("the inline backend is closed")
        if scope is not None and scope.cancelled:
            raise InfraError("cancelled by the caller before it started")
        future = self._pool.submit(code, timeout_s=timeout_s)
        if scope is not None:
            scope.track(self._pool, future)
        return future.result()

    def score_one(self, job: ScoreJob, scope: CancelScope | None = None) -> RewardResult:
        """Score one job on the calling thread (blocking)."""
        return score_job(
            job,
            runner=lambda code, timeout_s: self.run_program(code, timeout_s, scope),
            gt_cache=self._gt_cache,
            metrics_config=self.config.metrics,
            executor_config=self.config.executor,
        )

    def select_one(self, job: SelectJob, scope: CancelScope | None = None) -> RewardResult:
        """Run, render and match one candidate on the calling thread (blocking)."""
        return select_job(
            job,
            runner=lambda code, timeout_s: self.run_program(code, timeout_s, scope),
            renderer=self._selector.renderer(job.settings.render),
            executor_config=self.config.executor,
        )

    def _prepare(self, job: ScoreJob, scope: CancelScope | None = None) -> str | None:
        """Build a ground truth once even when many threads ask for it; the error or None."""
        key = gt_cache_key(job.gt_key, job.settings)
        with self._gt_locks_guard:
            if len(self._gt_locks) > 4 * self.config.metrics.gt_cache_size:
                self._gt_locks.clear()  # bounded: a lock only matters while a batch builds
            lock = self._gt_locks.setdefault(key, threading.Lock())
        ref = job.reference
        if ref is None:
            return None
        with lock:
            try:
                self._gt_cache.get_or_build(
                    key,
                    lambda: build_ground_truth(
                        ref, job.settings, lambda c, t: self.run_program(c, t, scope)
                    ),
                )
            except InfraError as exc:
                return str(exc)
            except Exception as exc:  # the pool broke while building: infrastructure
                return f"the executor failed while building the ground truth: {exc}"
        return None

    async def score_batch(
        self,
        jobs: Sequence[ScoreJob],
        progress: Callable[[int], None] | None = None,
        *,
        waiting: Callable[[str | None], None] | None = None,
    ) -> list[RewardResult]:
        """Score ``jobs``; when the awaiting task is cancelled, their programs are stopped.

        The pool is this process's own: there is always someone to score (``waiting`` unused).
        """
        return await self._in_scope(lambda scope: self._score_batch(jobs, progress, scope))

    async def select_batch(
        self,
        jobs: Sequence[SelectJob],
        progress: Callable[[int], None] | None = None,
        *,
        waiting: Callable[[str | None], None] | None = None,
    ) -> list[RewardResult]:
        """Run, render and match ``jobs`` (see :class:`Backend`); cancellable like a score."""
        loop = asyncio.get_running_loop()

        async def work(scope: CancelScope) -> list[RewardResult]:
            futures = [loop.run_in_executor(self._threads, self.select_one, j, scope) for j in jobs]
            return await _gather(futures, progress)

        return await self._in_scope(work)

    async def _in_scope(
        self, work: Callable[[CancelScope], Awaitable[list[RewardResult]]]
    ) -> list[RewardResult]:
        """Run a batch's ``work`` with a :class:`CancelScope`: when the awaiting task is
        cancelled, its programs are stopped."""
        if self._shutting_down:
            raise BackendUnavailableError("the reward service is shutting down: retry shortly")
        scope = CancelScope()
        self._scopes.add(scope)
        try:
            return await work(scope)
        except asyncio.CancelledError:
            stopped = scope.cancel()
            logger.info("batch cancelled: %d programs stopped", stopped)
            raise
        finally:
            self._scopes.discard(scope)

    async def _score_batch(
        self,
        jobs: Sequence[ScoreJob],
        progress: Callable[[int], None] | None,
        scope: CancelScope,
    ) -> list[RewardResult]:
        loop = asyncio.get_running_loop()
        firsts: dict[str, ScoreJob] = {}
        for job in jobs:
            firsts.setdefault(gt_cache_key(job.gt_key, job.settings), job)
        errors = await asyncio.gather(
            *(loop.run_in_executor(self._threads, self._prepare, j, scope) for j in firsts.values())
        )
        failed = {k: e for k, e in zip(firsts, errors, strict=True) if e is not None}
        futures: list[asyncio.Future[RewardResult]] = []
        for job in jobs:
            error = failed.get(gt_cache_key(job.gt_key, job.settings))
            if error is not None:  # every item of a broken ground truth says so, once built
                future: asyncio.Future[RewardResult] = loop.create_future()
                future.set_result(infra_result(job.item_id, error))
                futures.append(future)
            else:
                futures.append(loop.run_in_executor(self._threads, self.score_one, job, scope))
        return await _gather(futures, progress)

    async def health(self) -> dict[str, Any]:
        start = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(
                self._threads, self.run_program, HEALTH_PROGRAM, 30.0
            )
        except Exception as exc:
            raise InfraError(f"the inline executor pool does not answer: {exc}") from exc
        if result.status.value not in HEALTHY_STATUSES:
            raise InfraError(
                f"the inline executor ran the health program with status "
                f"{result.status.value}: {result.error}"
            )
        return {
            "backend": self.name,
            "servers": self._size,
            "sandbox": sandbox_layers(self._pool.executors[0].server_info),
            "probe_seconds": round(time.perf_counter() - start, 4),
        }

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._threads.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(self._selector.close)
        if self._owns_pool:
            await asyncio.to_thread(self._pool.close)


async def _gather(
    futures: Sequence[asyncio.Future[RewardResult]], progress: Callable[[int], None] | None
) -> list[RewardResult]:
    """The results of ``futures`` in order, ``progress(done)`` told as each arrives."""
    if progress is not None:
        done = 0

        def _tick(_: object) -> None:
            nonlocal done
            done += 1
            progress(done)

        for future in futures:
            future.add_done_callback(_tick)
    return list(await asyncio.gather(*futures))


class ModalBackend:
    """Runs on Modal: calls the ``score`` and ``select`` functions of the deployed
    :mod:`worker.farm.modal_app`, one call a job.

    Needs ``pip install 'llm3d[modal]'``, Modal credentials, and ``modal deploy -m
    api.modal_web`` done once.
    """

    name = "modal"

    def __init__(self, config: Config, *, app_name: str | None = None) -> None:
        try:
            import modal
        except ImportError as exc:
            raise ConfigError(
                "api.backend=modal needs the modal SDK: pip install 'llm3d[modal]'"
            ) from exc
        self.config = config
        self.app_name = app_name or config.modal.app_name
        self._score = modal.Function.from_name(self.app_name, "score")
        self._select = modal.Function.from_name(self.app_name, "select")

    async def score_batch(
        self,
        jobs: Sequence[ScoreJob],
        progress: Callable[[int], None] | None = None,
        *,
        waiting: Callable[[str | None], None] | None = None,
    ) -> list[RewardResult]:
        """One ``score`` call per job; a call that fails (its container crashed, timed out or
        raised) is that item's ``infra_error``, the others are kept."""
        return await self._map(self._score, "score", jobs, progress)

    async def select_batch(
        self,
        jobs: Sequence[SelectJob],
        progress: Callable[[int], None] | None = None,
        *,
        waiting: Callable[[str | None], None] | None = None,
    ) -> list[RewardResult]:
        """One ``select`` call per candidate (run, rendered and matched in one container);
        a call that fails is that candidate's ``infra_error``, the others are kept."""
        return await self._map(self._select, "select", jobs, progress)

    async def _map(
        self,
        function: modal.Function[..., Any, Any],
        what: str,
        jobs: Sequence[FarmJob],
        progress: Callable[[int], None] | None,
    ) -> list[RewardResult]:
        """``function.map`` over the jobs' payloads, results in order."""
        payloads = [job.to_dict() for job in jobs]
        results: list[RewardResult] = []
        try:
            async for raw in function.map.aio(payloads, order_outputs=True, return_exceptions=True):
                results.append(self._result(jobs[len(results)], raw, what))
                if progress is not None:
                    progress(len(results))
        except Exception as exc:  # the map itself failed: Modal unreachable, app not deployed
            raise BackendUnavailableError(
                f"Modal app {self.app_name!r} failed to run {what} ({type(exc).__name__}: "
                f"{exc}): check the Modal credentials, and deploy this version with "
                "`modal deploy -m api.modal_web`"
            ) from exc
        return results

    def _result(self, job: FarmJob, raw: object, what: str) -> RewardResult:
        if isinstance(raw, BaseException):
            logger.warning("item %s: Modal %s call failed: %r", job.item_id, what, raw)
            return infra_result(
                job.item_id,
                f"the Modal {what} call failed ({type(raw).__name__}: {raw}); "
                f"see `modal app logs {self.app_name}`",
            )
        try:
            return RewardResult.model_validate(raw)
        except ValueError as exc:
            return infra_result(job.item_id, f"the Modal {what} call answered garbage: {exc}")

    async def health(self) -> dict[str, Any]:
        for what, function in (("score", self._score), ("select", self._select)):
            try:
                await function.hydrate.aio()
            except Exception as exc:
                raise InfraError(
                    f"Modal app {self.app_name!r} or its {what} function is not reachable "
                    f"({exc}); deploy it with `modal deploy -m api.modal_web`"
                ) from exc
        return {"backend": self.name, "app": self.app_name}

    def begin_shutdown(self, grace_s: float) -> None:
        """Nothing to do: Modal finishes the calls; uvicorn's graceful timeout bounds the wait."""
        return None

    async def close(self) -> None:
        return None


def make_backend(config: Config) -> Backend:
    """The backend named by ``api.backend``."""
    kind = config.api.backend
    if kind == "inline":
        return InlineBackend(config)
    if kind == "celery":
        from worker.farm.celery_backend import CeleryBackend

        return CeleryBackend(config)
    if kind == "modal":
        return ModalBackend(config)
    raise ConfigError(f"unknown api.backend {kind!r}; use inline, celery or modal")
