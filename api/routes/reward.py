"""``/reward``: score a batch now, or as a job to poll."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status

from api.deps import ConfigDep, JobsDep, ServiceDep, require_token
from api.errors import error_responses
from api.limits import check_limits
from llm3d.config import Config
from llm3d.schemas import JobAccepted, JobStatus, RewardRequest, RewardResponse, SelectRequest

router = APIRouter(
    prefix="/reward",
    tags=["reward"],
    dependencies=[Depends(require_token)],
    responses=error_responses(401, 422),
)

logger = logging.getLogger(__name__)

#: Answered (to nobody) when the client went away before its batch was scored: the status
#: nginx uses for "client closed request", so that /metrics counts abandoned batches.
CLIENT_CLOSED_REQUEST = 499

T = TypeVar("T")


def check_batch(body: RewardRequest | SelectRequest, config: Config, count: int, what: str) -> None:
    """413 when ``body`` holds more than ``api.max_items`` programs (``what`` names them:
    "batch has N items"), then every per-field limit (:func:`~api.limits.check_limits`)."""
    if count > config.api.max_items:
        raise HTTPException(
            status_code=status.HTTP_413_CONTENT_TOO_LARGE,
            detail=(
                f"{what}; the limit is {config.api.max_items} "
                "(api.max_items): split it into several requests"
            ),
        )
    check_limits(body, config)


def _check(request: RewardRequest, config: Config) -> None:
    n = len(request.items)
    check_batch(request, config, n, f"batch has {n} items")


async def _disconnected(request: Request) -> None:
    """Return when the client has closed its connection (the body is already read)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def unless_disconnected(request: Request, work: Coroutine[Any, Any, T]) -> T | None:
    """Await ``work``; cancel it (and so its running programs) when the client goes away."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return None
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()


async def answer_unless_disconnected(
    request: Request, work: Coroutine[Any, Any, T], cancelled: str
) -> T | Response:
    """``work``'s answer; 499 (logged: ``cancelled`` names what was stopped) when the client
    went away first (:func:`unless_disconnected`)."""
    response = await unless_disconnected(request, work)
    if response is None:
        logger.info("client went away: %s cancelled", cancelled)
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    return response


@router.post(
    "/batch",
    response_model=RewardResponse,
    summary="Score a batch and wait",
    responses=error_responses(409, 413, 503),
)
async def score_batch(
    body: RewardRequest, request: Request, config: ConfigDep, service: ServiceDep
) -> RewardResponse | Response:
    """Score every item against its ground truth; results come in the order of ``items``.

    A bad program never fails the batch: it gets its status and reward. ``infra_error``
    items have ``reward: null`` and must not be learned from. When the client disconnects
    before the answer, its programs still queued or running are stopped.
    """
    _check(body, config)
    return await answer_unless_disconnected(
        request, service.score(body), f"batch of {len(body.items)} items"
    )


@router.post(
    "/jobs",
    response_model=JobAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Score a batch in the background",
    responses=error_responses(413, 503),
)
async def submit_job(
    body: RewardRequest, request: Request, response: Response, config: ConfigDep, jobs: JobsDep
) -> JobAccepted:
    """Accept a batch and answer at once; poll ``GET /reward/jobs/{job_id}`` for the results."""
    _check(body, config)
    job = await jobs.submit(body)
    url = str(request.url_for("get_job", job_id=job.job_id).path)
    response.headers["Location"] = url
    return JobAccepted(
        job_id=job.job_id, request_id=job.request_id, state=job.state, url=url, items=job.items
    )


@router.get(
    "/jobs/{job_id}",
    response_model=JobStatus,
    summary="A job's state and results",
    responses=error_responses(404, 503),
)
async def get_job(job_id: str, jobs: JobsDep) -> JobStatus:
    """``state`` is queued, running, done (with ``response``) or failed (with ``error``)."""
    job = await jobs.store.get(job_id)
    if job is None:
        raise HTTPException(
            status_code=status.HTTP_404_NOT_FOUND,
            detail=f"job {job_id!r} not found (unknown, or expired after api.job_ttl_s)",
        )
    return job
