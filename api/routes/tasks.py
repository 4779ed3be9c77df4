"""``/tasks``: the ground truths the service knows by id."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response, status
from fastapi.exceptions import RequestValidationError

from api.deps import ConfigDep, TasksDep, require_token
from api.errors import error_responses
from api.limits import check_limits
from api.selection import decode_image
from llm3d.schemas import TaskCreate, TaskList, TaskPublic
from worker.scoring import reference_payload

router = APIRouter(
    prefix="/tasks",
    tags=["tasks"],
    dependencies=[Depends(require_token)],
    responses=error_responses(401),
)


@router.get("", response_model=TaskList, summary="List the known ground truths")
async def list_tasks(tasks: TasksDep) -> TaskList:
    known = tasks.public()
    return TaskList(count=len(known), tasks=known)


@router.post(
    "",
    response_model=TaskPublic,
    status_code=status.HTTP_201_CREATED,
    summary="Register a ground truth",
    responses={
        200: {"model": TaskPublic, "description": "Already known with this content, or replaced."},
        **error_responses(409, 413, 422),
    },
)
async def create_task(
    body: TaskCreate, response: Response, tasks: TasksDep, config: ConfigDep
) -> TaskPublic:
    """Register ``task_id``: items may then name it instead of a reference, and with
    ``views``, groups of ``POST /select/batch`` may name it instead of sending images.

    ``201`` when the id is new. The same content under a known id is ``200`` and changes
    nothing; other content is ``409`` unless ``replace: true`` (then ``200``, replaced).
    """
    check_limits(body, config)
    try:
        views = tuple(decode_image(text, f"views[{i}]") for i, text in enumerate(body.views or []))
    except ValueError as exc:
        error = {"loc": ("body", "views"), "msg": str(exc), "type": "value_error"}
        raise RequestValidationError([error]) from exc
    public, outcome = tasks.register(
        body.task_id,
        reference_payload(body.reference),
        source="api",
        meta=body.meta,
        replace=body.replace,
        views=views,
    )
    if outcome != "created":
        response.status_code = status.HTTP_200_OK
    return public
