"""The paid external service, stood in for: ``modal.Function.map`` of a deployed function, the
only call :class:`worker.farm.backends.ModalBackend` makes. Its body is the Modal function's
own plain-function body (:mod:`worker.farm.modal_app`) or a test's; a call that raises is
handed back as the exception (``return_exceptions``), as Modal does with the SDK's own
exception types (``modal.exception.FunctionTimeoutError``, ...)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

__all__ = ["StandInFunction", "StandInMap"]


class StandInMap:
    """``modal.Function.map`` of a deployed function: the only call ModalBackend makes."""

    def __init__(self, body: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.body = body
        self.payloads: list[dict[str, Any]] = []

    async def aio(
        self,
        inputs: Iterable[dict[str, Any]],
        *,
        order_outputs: bool,
        return_exceptions: bool = False,
    ) -> AsyncIterator[object]:
        assert order_outputs
        for payload in inputs:
            self.payloads.append(payload)
            try:
                yield self.body(payload)
            except Exception as exc:
                if not return_exceptions:
                    raise
                yield exc


class StandInFunction:
    """A Modal function whose body runs here; a body that raises is a container that died."""

    def __init__(self, body: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.map = StandInMap(body)
