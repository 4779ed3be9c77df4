"""``/tasks``: the ground truths the service knows by id."""

from __future__ import annotations

from fastapi import APIRouter, Depends, status

from api.deps import TasksDep, require_token
from llm3d.schemas import TaskCreate, TaskList, TaskPublic
from worker.scoring import reference_payload

router = APIRouter(prefix="/tasks", tags=["tasks"], dependencies=[Depends(require_token)])


@router.get("", response_model=TaskList, summary="List the known ground truths")
async def list_tasks(tasks: TasksDep) -> TaskList:
    known = tasks.public()
    return TaskList(count=len(known), tasks=known)


@router.post(
    "",
    response_model=TaskPublic,
    status_code=status.HTTP_201_CREATED,
    summary="Register a ground truth",
)
async def create_task(body: TaskCreate, tasks: TasksDep) -> TaskPublic:
    """Register (or replace) ``task_id``: items may then name it instead of a reference."""
    return tasks.add(body.task_id, reference_payload(body.reference), source="api", meta=body.meta)
