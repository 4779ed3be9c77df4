"""``/select``: best-of-N by render match, without ground truth (issue 21)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from api.deps import ConfigDep, SelectorDep, require_token
from api.errors import error_responses
from api.routes.reward import answer_unless_disconnected, check_batch
from llm3d.schemas import SelectRequest, SelectResponse

router = APIRouter(
    prefix="/select",
    tags=["select"],
    dependencies=[Depends(require_token)],
    responses=error_responses(401, 422),
)


@router.post(
    "/batch",
    response_model=SelectResponse,
    summary="Choose the best of each group's candidates by render match, and wait",
    responses=error_responses(409, 413, 503),
)
async def select_batch(
    body: SelectRequest, request: Request, config: ConfigDep, selector: SelectorDep
) -> SelectResponse | Response:
    """Run each candidate in the sandbox, render it from the service's cameras and compare
    the renders with the group's views; ``best`` is the index of the best match per group.

    Groups come back in the order of ``groups``, candidates in the order given. A candidate
    that fails keeps its status (``match: null``); a group whose views cannot be used has
    its ``error`` and the others are answered as usual. No ground truth is used.
    """
    total = sum(len(g.candidates) for g in body.groups)
    check_batch(body, config, total, f"request has {total} candidates")
    return await answer_unless_disconnected(
        request, selector.select(body), f"selection of {total} candidates"
    )
