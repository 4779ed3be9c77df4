"""``/healthz`` (the backend really answers) and ``/metrics`` (Prometheus text)."""

from __future__ import annotations

import contextlib
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict

from api.deps import ConfigDep, ServiceDep, TelemetryDep, bearer, require_token
from api.errors import error_responses
from llm3d.exceptions import InfraError
from llm3d.schemas import safe_json

router = APIRouter(tags=["health"])

HEALTH_CACHE_S = 2.0


class Health(BaseModel):
    """``/healthz``: ``status`` ok (200) or unavailable (503, with ``detail``), and the
    backend's own details."""

    model_config = ConfigDict(extra="allow")

    status: str
    backend: str | None = None
    detail: str | None = None


def metrics_token(
    config: ConfigDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """``/metrics`` demands the Bearer token only when ``api.metrics_require_token`` is set."""
    if config.api.metrics_require_token:
        require_token(config, credentials)


@router.get(
    "/healthz",
    summary="Check that the backend answers",
    response_model=Health,
    responses={503: {"model": Health, "description": "The backend does not answer."}},
)
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
            # the cameras of POST /select/batch: one input view each, in this order, framing
            # bpy_lib's box (scene, as the dataset's views) or each object's own box (object)
            "render_views": [v.name for v in service.config.render.views],
            "render_frame": service.config.render.frame,
            **details,
        }
        code = 200
    except InfraError as exc:
        body = {"status": "unavailable", "backend": service.backend.name, "detail": str(exc)}
        code = 503
    body = safe_json(body)  # a backend's details may quote a program's error text
    state.health_cache = (now, code, body)
    return JSONResponse(body, status_code=code)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    dependencies=[Depends(metrics_token)],
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}},
        **error_responses(401),
    },
)
async def metrics(service: ServiceDep, telemetry: TelemetryDep) -> Response:
    depth = getattr(service.backend, "queue_depth", None)
    if depth is not None:
        # the scrape still answers when Redis is down; /healthz says what is wrong
        with contextlib.suppress(InfraError):
            telemetry.broker_queue.set(await depth())
    return Response(telemetry.render(), media_type=CONTENT_TYPE_LATEST)
