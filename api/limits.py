"""Request-body checks that must happen before FastAPI parses JSON, and clear 4xx messages.

:class:`BodyLimitMiddleware` (pure ASGI) answers

- ``413`` when ``Content-Length`` or the bytes actually received exceed ``api.max_request_mb``
  (the body is never buffered past the limit);
- ``422`` when the body is not UTF-8 (naming the byte offset) or holds a raw NUL byte.

:func:`check_limits` applies the limits that depend on the configuration, after parsing:
program size (``executor.max_code_bytes``, DESIGN §2) and ``timeout_s`` (at most
``executor.timeout_s``); they are 422s with the same body as any validation error.

:func:`validation_message` turns Pydantic's errors into one readable line per problem
(``items[3].task_id: ...``), without echoing the (possibly huge) input back.
Every error body is an :class:`llm3d.schemas.ErrorResponse` built by :func:`error_body`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from fastapi.exceptions import RequestValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llm3d.config import Config
from llm3d.program import extract_code
from llm3d.schemas import RewardRequest, SelectRequest, TaskCreate, safe_json

__all__ = ["BodyLimitMiddleware", "check_limits", "error_body", "raise_if", "validation_message"]

CHECKED_METHODS = frozenset({"POST", "PUT", "PATCH"})


def error_body(detail: str, **extra: Any) -> bytes:
    """An :class:`~llm3d.schemas.ErrorResponse` as JSON bytes (text made safe for UTF-8)."""
    return json.dumps(safe_json({"detail": detail, **extra}), allow_nan=False).encode()


def _code_problem(code: str, what: str, limit: int) -> str | None:
    size = len(code.encode("utf-8", "surrogatepass"))
    if size <= limit:
        return None
    return (
        f"{what} is {size:,} bytes; the limit is {limit:,} bytes (executor.max_code_bytes, "
        "DESIGN §2): send a shorter program"
    )


def check_limits(body: RewardRequest | SelectRequest | TaskCreate, config: Config) -> None:
    """Refuse, as a 422 naming each item, what the configuration does not allow.

    Raises:
        RequestValidationError: a program over ``executor.max_code_bytes`` (a candidate's
            program as :func:`llm3d.program.extract_code` takes it out of its answer), or
            ``timeout_s`` over ``executor.timeout_s``.
    """
    limit = config.executor.max_code_bytes
    errors: list[dict[str, Any]] = []

    def too_long(loc: tuple[str | int, ...], problem: str | None) -> None:
        if problem is not None:
            errors.append({"loc": ("body", *loc), "msg": problem, "type": "too_long"})

    if isinstance(body, TaskCreate):
        if body.reference.code is not None:
            too_long(
                ("reference", "code"),
                _code_problem(body.reference.code, f"task {body.task_id!r}: the program", limit),
            )
    else:
        cap = config.executor.timeout_s
        if body.timeout_s is not None and body.timeout_s > cap:
            errors.append(
                {
                    "loc": ("body", "timeout_s"),
                    "msg": f"{body.timeout_s:g} s is over this service's limit of {cap:g} s "
                    "(executor.timeout_s): send at most that, or omit it for the default",
                    "type": "less_than_equal",
                }
            )
        if isinstance(body, SelectRequest):
            for index, group in enumerate(body.groups):
                for n, text in enumerate(group.candidates):
                    problem = _code_problem(
                        extract_code(text).code, f"group {group.id!r}, candidate {n}", limit
                    )
                    too_long(("groups", index, "candidates", n), problem)
            raise_if(errors)
            return
        for index, item in enumerate(body.items):
            too_long(("items", index, "code"), _code_problem(item.code, f"item {item.id!r}", limit))
            if item.reference is not None and item.reference.code is not None:
                too_long(
                    ("items", index, "reference", "code"),
                    _code_problem(
                        item.reference.code, f"item {item.id!r}: the reference program", limit
                    ),
                )
    raise_if(errors)


def raise_if(errors: list[dict[str, Any]]) -> None:
    """A 422 listing ``errors`` (``loc``, ``msg``, ``type`` each), when there are any."""
    if errors:
        raise RequestValidationError(errors)


def _loc(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if part == "body":
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def validation_message(errors: Sequence[Any]) -> tuple[str, list[dict[str, Any]]]:
    """A one-line summary and a compact list (``loc``, ``msg``, ``type``) of validation errors."""
    compact: list[dict[str, Any]] = []
    lines: list[str] = []
    for err in errors:
        kind = str(err.get("type", ""))
        msg = str(err.get("msg", "invalid"))
        if kind == "json_invalid":
            ctx = err.get("ctx") or {}
            where = err.get("loc", ())
            pos = where[-1] if where and isinstance(where[-1], int) else None
            reason = ctx.get("error", msg)
            line = f"request body is not valid JSON: {reason}" + (
                f" (at character {pos})" if pos is not None else ""
            )
        elif kind == "missing" and tuple(err.get("loc", ())) == ("body",):
            line = "request body is empty: send a JSON object with an 'items' list"
        else:
            line = f"{_loc(err.get('loc', ()))}: {msg.removeprefix('Value error, ')}"
        lines.append(line)
        compact.append({"loc": list(err.get("loc", ())), "msg": line, "type": kind})
    shown = "; ".join(lines[:10]) + (f"; … ({len(lines) - 10} more)" if len(lines) > 10 else "")
    return shown, compact


class BodyLimitMiddleware:
    """Bound and sanity-check request bodies before any route sees them."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _reply(self, send: Send, status: int, detail: str) -> None:
        body = error_body(detail)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _too_large(self, size: int | None) -> str:
        got = f"{size / 1e6:.1f} MB" if size is not None else "more"
        return (
            f"request body too large: {got}; the limit is {self.max_bytes / 1e6:.1f} MB "
            "(api.max_request_mb): split the batch into smaller requests"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in CHECKED_METHODS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reply(send, 413, self._too_large(int(declared)))
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._reply(send, 413, self._too_large(None))
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        problem = self._check(body)
        if problem is not None:
            await self._reply(send, 422, problem)
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    def _check(body: bytes) -> str | None:
        nul = body.find(b"\x00")
        if nul >= 0:
            return (
                f"request body contains a NUL byte at offset {nul}: send UTF-8 JSON "
                "(control characters inside strings must be escaped, e.g. \\u0000)"
            )
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return (
                f"request body is not valid UTF-8 (byte 0x{body[exc.start]:02x} at offset "
                f"{exc.start}): send JSON encoded as UTF-8"
            )
        return None
