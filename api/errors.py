"""Every error the service answers, one shape: :class:`llm3d.schemas.ErrorResponse`.

:func:`error_response` builds the body (its text made safe for UTF-8 by
:func:`llm3d.schemas.safe_json`); :func:`error_responses` declares the same shape in the
OpenAPI document for the status codes a route can answer, so that what ``/openapi.json``
promises is what clients get (FastAPI's own 422 schema is replaced, never shown).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi.responses import JSONResponse

from llm3d.schemas import ErrorResponse, safe_json

__all__ = ["ERROR_DESCRIPTIONS", "error_response", "error_responses"]

ERROR_DESCRIPTIONS: dict[int, str] = {
    401: "Missing or wrong Bearer token (the service has LLM3D_API_TOKEN set).",
    404: "Not found (an unknown or expired job).",
    409: "Conflict: a request_id reused for other work, or a task id already registered "
    "with other content (send replace: true).",
    413: "Too large: the body is over api.max_request_mb, or the batch over api.max_items.",
    422: "Invalid request: `detail` says what and where, `errors` lists each problem.",
    503: "The execution backend cannot be reached; retry after Retry-After seconds.",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route that can answer ``codes`` (an :class:`ErrorResponse`)."""
    return {
        code: {"model": ErrorResponse, "description": ERROR_DESCRIPTIONS[code]} for code in codes
    }


def error_response(
    status_code: int,
    detail: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """An error answer: ``{"detail": ..., "errors": [...]}`` (``errors`` for 422s only)."""
    body: dict[str, Any] = {"detail": detail}
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(safe_json(body), status_code=status_code, headers=dict(headers or {}))
