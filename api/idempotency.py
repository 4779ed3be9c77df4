"""Requests idempotent by ``request_id`` (DESIGN §5), for every batch endpoint alike.

A retry of a request still in flight waits for the same answer, a retry of a finished one
gets it again, and reusing an id for a different body is a :class:`RequestConflictError`.
The work of a request is cancelled when every caller waiting for it has gone away; a failed
or cancelled attempt is not remembered (the client's retry does the work).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from pydantic import BaseModel

from llm3d.exceptions import LLM3DError

__all__ = ["IDEMPOTENCY_ENTRIES", "RequestConflictError", "RequestLedger", "fingerprint"]

# answers kept for retries by request_id (a retry comes seconds later; bounded memory)
IDEMPOTENCY_ENTRIES = 256

T = TypeVar("T")


class RequestConflictError(LLM3DError, ValueError):
    """A ``request_id`` was reused for a different batch."""


def fingerprint(request: BaseModel) -> str:
    """A request's content without its ``request_id``: what a retry must repeat."""
    body = request.model_dump_json(exclude={"request_id"})
    return hashlib.sha256(body.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class _Remembered(Generic[T]):
    fingerprint: str
    task: asyncio.Task[T]
    waiters: int = 0

    @property
    def abandoned(self) -> bool:
        """Cancelled (every caller went away) or being cancelled: not an answer to wait for."""
        return self.task.cancelled() or (not self.task.done() and self.task.cancelling() > 0)


class RequestLedger(Generic[T]):
    """The answers of recent requests by ``request_id`` (the last ``entries`` of them)."""

    def __init__(self, entries: int = IDEMPOTENCY_ENTRIES) -> None:
        self.entries = entries
        self._requests: OrderedDict[str, _Remembered[T]] = OrderedDict()

    async def run(self, rid: str, print_: str, work: Callable[[], Awaitable[T]]) -> T:
        """The answer of request ``rid`` with fingerprint ``print_``: ``work()``'s, started
        now or earlier (then not again).

        Raises:
            RequestConflictError: ``rid`` was used before for a request of another fingerprint.
        """
        remembered = self._requests.get(rid)
        if remembered is not None and remembered.abandoned:
            remembered = None
        if remembered is not None:
            if remembered.fingerprint != print_:
                raise RequestConflictError(
                    f"request_id {rid!r} was already used for a different batch; "
                    "use a new request_id for new work"
                )
            self._requests.move_to_end(rid)
        else:

            async def call() -> T:
                return await work()

            task = asyncio.ensure_future(call())
            remembered = _Remembered(print_, task)
            task.add_done_callback(functools.partial(self._settled, rid, remembered))
            self._requests[rid] = remembered
            while len(self._requests) > self.entries:
                self._requests.popitem(last=False)
        remembered.waiters += 1
        try:
            return await asyncio.shield(remembered.task)
        finally:
            remembered.waiters -= 1
            if remembered.waiters == 0 and not remembered.task.done():
                remembered.task.cancel()  # nobody waits for it any more: stop its programs

    def _settled(self, rid: str, remembered: _Remembered[T], _: object = None) -> None:
        """A failed or cancelled attempt is not remembered: the client's retry does the work."""
        task = remembered.task
        failed = task.cancelled() or task.exception() is not None
        if failed and self._requests.get(rid) is remembered:
            del self._requests[rid]
