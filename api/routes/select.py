"""``/select``: best-of-N by render match, without ground truth (issue 21)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status

from api.deps import ConfigDep, SelectorDep, require_token
from api.errors import error_responses
from api.limits import check_limits
from api.routes.reward import CLIENT_CLOSED_REQUEST, unless_disconnected
from llm3d.schemas import SelectRequest, SelectResponse

router = APIRouter(
    prefix="/select",
    tags=["select"],
    dependencies=[Depends(require_token)],
    responses=error_responses(401, 422),
)

logger = logging.getLogger(__name__)


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
    if total > config.api.max_items:
        raise HTTPException(
            status_code=status.HTTP_413_CONTENT_TOO_LARGE,
            detail=(
                f"request has {total} candidates; the limit is {config.api.max_items} "
                "(api.max_items): split it into several requests"
            ),
        )
    check_limits(body, config)
    response = await unless_disconnected(request, selector.select(body))
    if response is None:
        logger.info("client went away: selection of %d candidates cancelled", total)
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    return response
