"""``/healthz`` (the backend really answers) and ``/metrics`` (Prometheus text)."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from api.deps import ServiceDep, TelemetryDep
from llm3d.exceptions import InfraError

router = APIRouter(tags=["health"])

HEALTH_CACHE_S = 2.0


@router.get("/healthz", summary="Check that the backend answers")
async def healthz(request: Request, service: ServiceDep) -> JSONResponse:
    """200 with the backend's details, or 503 with what is wrong and what to do."""
    state = request.app.state
    cached: tuple[float, int, dict[str, Any]] | None = getattr(state, "health_cache", None)
    now = time.monotonic()
    if cached is not None and now - cached[0] < HEALTH_CACHE_S:
        return JSONResponse(cached[2], status_code=cached[1])
    try:
        details = await service.backend.health()
        body: dict[str, Any] = {
            "status": "ok",
            "reward_version": service.reward_version,
            "tasks": len(service.tasks),
            **details,
        }
        code = 200
    except InfraError as exc:
        body = {"status": "unavailable", "backend": service.backend.name, "detail": str(exc)}
        code = 503
    state.health_cache = (now, code, body)
    return JSONResponse(body, status_code=code)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(service: ServiceDep, telemetry: TelemetryDep) -> Response:
    depth = getattr(service.backend, "queue_depth", None)
    if depth is not None:
        # the scrape still answers when Redis is down; /healthz says what is wrong
        with contextlib.suppress(InfraError):
            telemetry.broker_queue.set(await depth())
    return Response(telemetry.render(), media_type=CONTENT_TYPE_LATEST)
