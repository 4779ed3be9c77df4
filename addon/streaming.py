"""Streamed answers: Server-Sent Events of chat-completions and their progress (pure Python).

With ``"stream": true`` an OpenAI-compatible server answers ``text/event-stream``: events of
``data: {json}`` lines, each a ``chat.completion.chunk`` whose ``choices[0].delta.content``
is the next piece of the answer, the last with a ``finish_reason`` (and, when asked with
``stream_options.include_usage``, a chunk with ``usage`` and no choices), then
``data: [DONE]``. :func:`sse_data` reads the events from the response's lines;
:class:`StreamState` collects what arrived so far, for the main thread's timer to show, and
lets Cancel close the connection from any thread.

Nothing here touches ``bpy``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DONE",
    "StreamCancelledError",
    "StreamSnapshot",
    "StreamState",
    "chunk_delta",
    "sse_data",
]

#: The data of the event that ends a stream.
DONE = "[DONE]"


class StreamCancelledError(Exception):
    """The stream was closed because the artist pressed Cancel (not an endpoint failure)."""


def sse_data(lines: Iterable[bytes]) -> Iterator[str]:
    """The ``data`` of each Server-Sent Event in ``lines`` (raw lines of the body).

    An event is its ``data:`` lines joined by newlines, ended by a blank line; comments
    (``:`` lines, keep-alives) and other fields (``event:``, ``id:``) are skipped. A last
    event without its blank line still counts.
    """
    data: list[str] = []
    for raw in lines:
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


@dataclass(frozen=True)
class StreamSnapshot:
    """What the main thread shows: the text so far and the progress numbers."""

    text: str
    tokens: int
    seconds: float
    tokens_per_s: float
    receiving: bool


@dataclass
class StreamState:
    """The answer of one request as it arrives; shared by the worker thread (writes) and the
    main thread (reads :meth:`snapshot`, calls :meth:`abort`).

    ``tokens`` is the server's ``usage.completion_tokens`` once it sends it, until then the
    number of deltas received (one a token on vLLM, SGLang and Ollama). Reasoning deltas
    (``reasoning_content``) count as tokens but are not part of the text.
    """

    started: float = field(default_factory=time.monotonic)
    first_at: float | None = None
    _parts: list[str] = field(default_factory=list)
    _deltas: int = 0
    _usage: int | None = None
    _sock: socket.socket | None = None
    _aborted: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, content: str, *, counted: bool = True) -> None:
        """One delta arrived (``content`` may be empty for a reasoning delta)."""
        with self._lock:
            if self.first_at is None:
                self.first_at = time.monotonic()
            if content:
                self._parts.append(content)
            if counted:
                self._deltas += 1

    def set_usage(self, completion_tokens: int) -> None:
        """The server's count of the answer's tokens (the last chunk with include_usage)."""
        with self._lock:
            self._usage = completion_tokens

    def snapshot(self) -> StreamSnapshot:
        """The text so far, tokens, seconds since the request, tokens/s since the first."""
        with self._lock:
            text = "".join(self._parts)
            tokens = self._usage if self._usage is not None else self._deltas
            first = self.first_at
        now = time.monotonic()
        rate = 0.0
        if first is not None and tokens > 1 and now - first > 1e-3:
            rate = (tokens - 1) / (now - first)  # the first token ends the prompt's processing
        return StreamSnapshot(text, tokens, now - self.started, rate, first is not None)

    def attach(self, sock: socket.socket | None) -> None:
        """The socket the answer arrives on (so that :meth:`abort` can close it); None keeps
        the one attached before."""
        with self._lock:
            self._sock = sock if sock is not None else self._sock
            aborted = self._aborted
        if aborted:
            self.abort()

    def abort(self) -> None:
        """Close the connection now, from any thread: a read blocked on it returns at once
        and the server sees the client go (vLLM and SGLang then stop generating)."""
        with self._lock:
            self._aborted = True
            sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    @property
    def aborted(self) -> bool:
        """True once :meth:`abort` ran."""
        return self._aborted


def chunk_delta(data: str) -> tuple[str, bool, str | None, int | None]:
    """One chunk's (content, whether it carried a delta, finish_reason, completion tokens).

    Raises
    ------
    ValueError
        When the data is not JSON, or the chunk is an error the server sent mid-stream
        (the message says which).
    """
    chunk: Any = json.loads(data)
    if not isinstance(chunk, dict):
        raise ValueError(f"not a chunk: {data[:120]!r}")
    if "error" in chunk:
        err = chunk["error"]
        message = err.get("message", err) if isinstance(err, dict) else err
        raise ValueError(f"the server reported an error mid-stream: {message}")
    usage = chunk.get("usage")
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    choices = chunk.get("choices") or []
    if not choices or not isinstance(choices[0], dict):
        return "", False, None, tokens if isinstance(tokens, int) else None
    choice = choices[0]
    delta = choice.get("delta") or {}
    content = delta.get("content") if isinstance(delta, dict) else None
    reasoning = isinstance(delta, dict) and bool(
        delta.get("reasoning_content") or delta.get("reasoning")
    )
    text = content if isinstance(content, str) else ""
    return (
        text,
        bool(text) or reasoning,
        choice.get("finish_reason"),
        tokens if isinstance(tokens, int) else None,
    )
