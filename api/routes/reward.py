"""``/reward``: score a batch now, or as a job to poll."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status

from api.deps import ConfigDep, JobsDep, ServiceDep, require_token
from llm3d.schemas import JobAccepted, JobStatus, RewardRequest, RewardResponse

router = APIRouter(prefix="/reward", tags=["reward"], dependencies=[Depends(require_token)])


def _check_size(request: RewardRequest, max_items: int) -> None:
    if len(request.items) > max_items:
        raise HTTPException(
            status_code=status.HTTP_413_CONTENT_TOO_LARGE,
            detail=(
                f"batch has {len(request.items)} items; the limit is {max_items} "
                "(api.max_items): split it into several requests"
            ),
        )


@router.post("/batch", response_model=RewardResponse, summary="Score a batch and wait")
async def score_batch(
    body: RewardRequest, config: ConfigDep, service: ServiceDep
) -> RewardResponse:
    """Score every item against its ground truth; results come in the order of ``items``.

    A bad program never fails the batch: it gets its status and reward. ``infra_error``
    items have ``reward: null`` and must not be learned from.
    """
    _check_size(body, config.api.max_items)
    return await service.score(body)


@router.post(
    "/jobs",
    response_model=JobAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Score a batch in the background",
)
async def submit_job(
    body: RewardRequest, request: Request, response: Response, config: ConfigDep, jobs: JobsDep
) -> JobAccepted:
    """Accept a batch and answer at once; poll ``GET /reward/jobs/{job_id}`` for the results."""
    _check_size(body, config.api.max_items)
    job = await jobs.submit(body)
    url = str(request.url_for("get_job", job_id=job.job_id).path)
    response.headers["Location"] = url
    return JobAccepted(
        job_id=job.job_id, request_id=job.request_id, state=job.state, url=url, items=job.items
    )


@router.get("/jobs/{job_id}", response_model=JobStatus, summary="A job's state and results")
async def get_job(job_id: str, jobs: JobsDep) -> JobStatus:
    """``state`` is queued, running, done (with ``response``) or failed (with ``error``)."""
    job = await jobs.store.get(job_id)
    if job is None:
        raise HTTPException(
            status_code=status.HTTP_404_NOT_FOUND,
            detail=f"job {job_id!r} not found (unknown, or expired after api.job_ttl_s)",
        )
    return job
