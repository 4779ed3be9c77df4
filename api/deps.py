"""FastAPI dependencies: the service objects of the running app and Bearer-token auth."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.jobs import JobManager
from api.registry import TaskRegistry
from api.selection import SelectService
from api.service import RewardService
from api.telemetry import Telemetry
from llm3d.config import Config

__all__ = [
    "ConfigDep",
    "JobsDep",
    "SelectorDep",
    "ServiceDep",
    "TasksDep",
    "TelemetryDep",
    "require_token",
]

bearer = HTTPBearer(auto_error=False, description="set LLM3D_API_TOKEN on the server to require it")


def get_config(request: Request) -> Config:
    config: Config = request.app.state.config
    return config


def get_service(request: Request) -> RewardService:
    service: RewardService = request.app.state.service
    return service


def get_selector(request: Request) -> SelectService:
    selector: SelectService = request.app.state.selector
    return selector


def get_jobs(request: Request) -> JobManager:
    jobs: JobManager = request.app.state.jobs
    return jobs


def get_tasks(request: Request) -> TaskRegistry:
    tasks: TaskRegistry = request.app.state.tasks
    return tasks


def get_telemetry(request: Request) -> Telemetry:
    telemetry: Telemetry = request.app.state.telemetry
    return telemetry


ConfigDep = Annotated[Config, Depends(get_config)]
ServiceDep = Annotated[RewardService, Depends(get_service)]
JobsDep = Annotated[JobManager, Depends(get_jobs)]
SelectorDep = Annotated[SelectService, Depends(get_selector)]
TasksDep = Annotated[TaskRegistry, Depends(get_tasks)]
TelemetryDep = Annotated[Telemetry, Depends(get_telemetry)]


def require_token(
    config: ConfigDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """When ``api.token`` (env ``LLM3D_API_TOKEN``) is set, demand it as a Bearer token."""
    expected = config.api.token.get_secret_value().encode() if config.api.token else b""
    if not expected:  # unset, or set to "" (compose passes LLM3D_API_TOKEN through empty)
        return
    given = credentials.credentials.encode() if credentials is not None else b""
    if credentials is None or not secrets.compare_digest(given, expected):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail=(
                "missing or wrong Bearer token: send 'Authorization: Bearer <token>' with the "
                "value of LLM3D_API_TOKEN"
            ),
            headers={"WWW-Authenticate": "Bearer"},
        )
