"""The reward service's app factory: ``create_app(config)``; nothing happens at import.

``uvicorn --factory api.app:create_app`` or ``llm3d serve`` build it. The lifespan starts
the backend named by ``api.backend`` (and the Redis cache and job store when it is
``celery``), loads the datasets of ``api.datasets``, and closes everything on shutdown.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from types import FrameType

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.cache import MemoryCache, RedisCache, ResultCache
from api.errors import error_response
from api.idempotency import RequestConflictError
from api.jobs import JobManager, JobStore, MemoryJobStore, RedisJobStore
from api.limits import BodyLimitMiddleware, validation_message
from api.registry import TaskConflictError, TaskRegistry
from api.routes import health, reward, select, tasks
from api.selection import SelectService
from api.service import RewardService
from api.telemetry import Telemetry
from llm3d.config import Config, load_config
from llm3d.exceptions import BackendUnavailableError, UnknownTaskError
from worker.farm.backends import Backend, make_backend

__all__ = ["SERVE_ENV", "create_app", "create_served_app"]

#: How ``llm3d serve`` tells its worker processes which configuration to load (JSON:
#: ``{"config": path or null, "overrides": {...}}``); not an ``LLM3D_`` setting.
SERVE_ENV = "_LLM3D_SERVE"

logger = logging.getLogger(__name__)

BackendFactory = Callable[[Config], Backend]


def create_app(
    config: Config | None = None,
    *,
    backend_factory: BackendFactory | None = None,
    registry: TaskRegistry | None = None,
    job_store: JobStore | None = None,
) -> FastAPI:
    """Build the reward service.

    Args:
        config: the effective configuration (default: :func:`llm3d.config.load_config`).
        backend_factory: builds the backend at start-up (default: by ``api.backend``).
        registry: the known tasks (default: this process's own; Modal shares one).
        job_store: where jobs live (default: Redis on ``celery``, else this process).
    """
    config = config or load_config()
    telemetry = Telemetry()
    registry = registry if registry is not None else TaskRegistry()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from worker.reward import REWARD_VERSIONS

        reward_version = REWARD_VERSIONS[config.reward.variant]

        if config.api.datasets:
            count = registry.load(config.api.datasets)
            logger.info("%d tasks loaded from %d datasets", count, len(config.api.datasets))
        backend = (backend_factory or make_backend)(config)
        cache: ResultCache
        store: JobStore
        if config.api.backend == "celery":
            farm = config.farm
            cache = RedisCache(farm.redis_url, ttl_s=farm.cache_ttl_s, namespace=farm.namespace)
            store = job_store or RedisJobStore(
                farm.redis_url, ttl_s=config.api.job_ttl_s, namespace=farm.namespace
            )
        else:
            cache = MemoryCache(config.api.cache_size)
            store = job_store or MemoryJobStore(config.api.job_ttl_s)
        service = RewardService(config, backend, cache, registry, telemetry, reward_version)
        jobs = JobManager(service, store)
        app.state.service = service
        app.state.selector = SelectService(config, backend, cache, registry)
        app.state.jobs = jobs
        logger.info(
            "reward service up: backend=%s, reward_version=%s", backend.name, reward_version
        )
        restore_signals = _drain_on_exit_signals(service)
        try:
            yield
        finally:
            restore_signals()
            await jobs.close(config.api.shutdown_grace_s + 1.0 if service.shutting_down else 0.0)
            await backend.close()
            await cache.close()
            await store.close()

    app = FastAPI(
        title="llm3d reward service",
        version="0.1.0",
        summary="Runs generated bpy_lib programs in Blender and scores their meshes (DESIGN §5).",
        lifespan=lifespan,
    )
    app.state.config = config
    app.state.tasks = registry
    app.state.telemetry = telemetry
    app.include_router(reward.router)
    app.include_router(select.router)
    app.include_router(tasks.router)
    app.include_router(health.router)
    app.add_middleware(BodyLimitMiddleware, max_bytes=int(config.api.max_request_mb * 1024 * 1024))

    @app.middleware("http")
    async def count_requests(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        name = getattr(route, "path", "unmatched")
        telemetry.requests.labels(name, request.method, str(response.status_code)).inc()
        telemetry.request_seconds.labels(name).observe(time.perf_counter() - start)
        return response

    # Every error has one shape (llm3d.schemas.ErrorResponse), declared in /openapi.json.
    @app.exception_handler(RequestValidationError)
    async def on_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail, errors = validation_message(exc.errors())
        return error_response(422, detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(UnknownTaskError)
    async def on_unknown_task(_: Request, exc: UnknownTaskError) -> JSONResponse:
        return error_response(422, str(exc))

    @app.exception_handler(RequestConflictError)
    async def on_conflict(_: Request, exc: RequestConflictError) -> JSONResponse:
        return error_response(409, str(exc))

    @app.exception_handler(TaskConflictError)
    async def on_task_conflict(_: Request, exc: TaskConflictError) -> JSONResponse:
        return error_response(409, str(exc))

    @app.exception_handler(BackendUnavailableError)
    async def on_unavailable(_: Request, exc: BackendUnavailableError) -> JSONResponse:
        return error_response(503, str(exc), headers={"Retry-After": "5"})

    return app


def _drain_on_exit_signals(service: RewardService) -> Callable[[], None]:
    """On SIGTERM or SIGINT, start the service's shutdown (:meth:`RewardService.begin_shutdown`)
    and then let the server's own handler (uvicorn's: stop accepting, wait for the requests in
    flight, which now answer within ``api.shutdown_grace_s``) run. Returns the undo.

    Only in the main thread (where signals are delivered); elsewhere (a test client) a no-op.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.getsignal(sig) for sig in signals}

    def on_signal(sig: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(service.begin_shutdown)
        handler = previous[signal.Signals(sig)]
        if callable(handler):
            handler(sig, frame)
        elif handler == signal.SIG_DFL:  # nobody else handles it: its default action
            signal.signal(sig, signal.SIG_DFL)
            signal.raise_signal(sig)

    for sig in signals:
        signal.signal(sig, on_signal)

    def restore() -> None:
        for sig, handler in previous.items():
            if signal.getsignal(sig) is on_signal:
                signal.signal(sig, handler)

    return restore


def create_served_app() -> FastAPI:
    """The app of one ``llm3d serve`` worker process (``uvicorn --factory``).

    Loads the configuration its supervisor loaded (see :data:`SERVE_ENV`), and asks the
    kernel to end this worker when the supervisor dies, so that none outlives it.
    """
    args = json.loads(os.environ.get(SERVE_ENV) or "{}")
    config = load_config(args.get("config"), **args.get("overrides", {}))
    logging.basicConfig(
        level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the supervisor still stops its workers
        logger.debug("PR_SET_PDEATHSIG unavailable")
    return create_app(config)
