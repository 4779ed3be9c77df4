"""A small client of OpenAI-compatible chat-completions servers (pure Python, no Blender).

vLLM, SGLang, Ollama, LM Studio and hosted providers all speak the same protocol:
``POST {base_url}/chat/completions`` with ``{"model", "messages", ...}``; images travel as
``{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}`` content parts.
Only the standard library is used (``urllib``), so the add-on needs no extra wheel.

Nothing here touches ``bpy``: the add-on calls it from a worker thread, and the tests call
it directly against a local server.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import logging
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm3d.program import extract_code as _extract

from .streaming import DONE, StreamCancelledError, StreamState, chunk_delta, sse_data

__all__ = [
    "IMAGE_TYPES",
    "ChatClient",
    "EndpointError",
    "build_messages",
    "estimate_tokens",
    "extract_code",
    "image_part",
    "refine_messages",
    "repair_messages",
]

logger = logging.getLogger(__name__)

#: File suffixes the add-on accepts as reference images, with their MIME types.
IMAGE_TYPES: dict[str, str] = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
}

#: Images larger than this are refused before sending (servers reject far smaller ones).
MAX_IMAGE_BYTES = 20 * 1024 * 1024

INSTRUCTION = (
    "The {count} image(s) show one object from different views. Write a complete bpy_lib "
    "program that rebuilds it: `from bpy_lib import *`, one `# part_k: label` comment per "
    "part, keyword arguments, and `export_scene()` last. Answer with the program only, in "
    "one ```python block."
)

#: The instruction without images: text to code.
TEXT_INSTRUCTION = (
    "Write a complete bpy_lib program that builds this object: {prompt}\n"
    "Use `from bpy_lib import *`, one `# part_k: label` comment per part, keyword arguments, "
    "and `export_scene()` last. Answer with the program only, in one ```python block."
)

#: What the artist adds to the instruction with images ("only the chair", "lower poly").
PROMPT_NOTE = "\nThe artist adds: {prompt}"

REFINE = (
    "This is the current program (the artist may have edited it):\n```python\n{program}\n```\n"
    "Change it as the artist asks: {instruction}\n"
    "Answer with the whole changed program only, in one ```python block."
)

#: Added to the refine request when a render of the current result goes with it.
RENDER_NOTE = "\nThe last image is a render of what the current program builds."

#: Rough tokens an image costs a vision model, per 28 x 28 pixel patch (Qwen2.5-VL's size).
IMAGE_PATCH_PX = 28

#: Keys of a ``/models`` entry that give the model's context length, by server.
CONTEXT_KEYS = ("max_model_len", "context_length", "max_context_length")

REPAIR = (
    "Running that program failed:\n{error}\n"
    "Fix it and answer with the whole corrected program only, in one ```python block."
)


class EndpointError(RuntimeError):
    """The model endpoint could not be reached or answered with an error.

    The message is one line for the panel: what failed and what to check.
    """


def image_part(path: str | Path) -> dict[str, Any]:
    """One ``image_url`` content part holding the file as a base64 data URL.

    Raises
    ------
    EndpointError
        When the file is missing, unreadable, too large or not a supported image type.
    """
    p = Path(path)
    mime = IMAGE_TYPES.get(p.suffix.lower())
    if mime is None:
        kinds = ", ".join(sorted(IMAGE_TYPES))
        raise EndpointError(f"{p.name}: not a supported image type; use one of {kinds}")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise EndpointError(f"cannot read image {p}: {e.strerror or e}") from e
    if len(data) > MAX_IMAGE_BYTES:
        raise EndpointError(f"{p.name} is {len(data) >> 20} MiB; use images under 20 MiB")
    url = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    return {"type": "image_url", "image_url": {"url": url}}


def build_messages(
    system: str, images: Sequence[str | Path], prompt: str = ""
) -> list[dict[str, Any]]:
    """The first request: a system prompt, then the images and the instruction.

    Parameters
    ----------
    system : str
        The system prompt (the add-on passes the ``bpy_lib`` reference).
    images : sequence of path
        Reference images, sent in this order; none with a ``prompt`` is text to code.
    prompt : str
        The artist's words ("only the chair", "lower poly"), sent after the instruction.
    """
    prompt = prompt.strip()
    if not images and not prompt:
        raise EndpointError("nothing to send; add a reference image or describe the object")
    if not images:
        return [
            {"role": "system", "content": system},
            {"role": "user", "content": TEXT_INSTRUCTION.format(prompt=prompt)},
        ]
    content: list[dict[str, Any]] = [image_part(p) for p in images]
    text = INSTRUCTION.format(count=len(images))
    if prompt:
        text += PROMPT_NOTE.format(prompt=prompt)
    content.append({"type": "text", "text": text})
    return [{"role": "system", "content": system}, {"role": "user", "content": content}]


def refine_messages(
    messages: Sequence[dict[str, Any]],
    program: str,
    instruction: str,
    render: str | Path | None = None,
) -> list[dict[str, Any]]:
    """The conversation continued: the current program as the model's turn, then the
    artist's instruction (with a render of the current result when given)."""
    if not instruction.strip():
        raise EndpointError("say what to change (e.g. 'make the legs thinner'), then Refine")
    text = REFINE.format(program=program.rstrip(), instruction=instruction.strip())
    user: str | list[dict[str, Any]] = text
    if render is not None:
        user = [image_part(render), {"type": "text", "text": text + RENDER_NOTE}]
    return [
        *messages,
        {"role": "assistant", "content": f"```python\n{program.rstrip()}\n```"},
        {"role": "user", "content": user},
    ]


def estimate_tokens(messages: Sequence[dict[str, Any]], image_px: int = 1024) -> int:
    """A rough prompt size in tokens: about 3.5 characters a token for text, and one token
    per 28 x 28 patch of an image of ``image_px`` on its longer side (square, the worst case).

    Good enough to warn that a prompt likely exceeds a small model's context, not to bill.
    """
    chars = 0
    images = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
            continue
        for part in content or ():
            if part.get("type") == "image_url":
                images += 1
            else:
                chars += len(str(part.get("text", "")))
    side = max(1, image_px) // IMAGE_PATCH_PX + 1
    return int(chars / 3.5) + images * side * side


def repair_messages(
    messages: Sequence[dict[str, Any]], answer: str, error: str
) -> list[dict[str, Any]]:
    """The conversation extended with the model's failed answer and the error it caused."""
    return [
        *messages,
        {"role": "assistant", "content": answer},
        {"role": "user", "content": REPAIR.format(error=error)},
    ]


def extract_code(answer: str) -> str:
    """The program in a model's answer, by the project's one rule
    (:func:`llm3d.program.extract_code`: the last fenced Python block that imports
    ``bpy_lib``, else the last Python block, else bare code that imports it); ``""`` when the
    answer holds no program, which the sandbox reports as ``empty``.

    The environment and the evaluation runner use the same rule, so the add-on builds what a
    model trained through them means as its program.
    """
    return _extract(answer).code


@dataclass(frozen=True)
class ChatClient:
    """One model endpoint.

    Attributes
    ----------
    base_url : str
        The API root, e.g. ``http://127.0.0.1:8001/v1`` (``/chat/completions`` is appended).
    model : str
        The model name the server serves.
    api_key : str
        Sent as ``Authorization: Bearer ...`` when not empty; never logged or shown.
    timeout_s : float
        Socket timeout of each request.
    max_tokens, temperature
        Generation settings sent with every request.
    """

    base_url: str
    model: str
    api_key: str = field(default="", repr=False)
    timeout_s: float = 300.0
    max_tokens: int = 4096
    temperature: float = 0.2

    def _url(self, route: str) -> str:
        base = self.base_url.strip().rstrip("/")
        if not base.startswith(("http://", "https://")):
            raise EndpointError(
                f"endpoint URL {self.base_url!r} must start with http:// or https:// "
                "(set it in the add-on preferences)"
            )
        return f"{base}/{route}"

    def _post(self, route: str, body: dict[str, Any] | None, accept: str) -> urllib.request.Request:
        headers = {"Accept": accept}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return urllib.request.Request(self._url(route), data=data, headers=headers)

    def _request(self, route: str, body: dict[str, Any] | None, timeout_s: float) -> Any:
        request = self._post(route, body, "application/json")
        url = request.full_url
        with _http_errors(url, timeout_s), urllib.request.urlopen(request, timeout=timeout_s) as r:
            payload = r.read()
        try:
            return json.loads(payload)
        except ValueError as e:
            raise EndpointError(f"{url} did not answer with JSON: {payload[:120]!r}") from e

    def _body(self, messages: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": list(messages),
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }

    def complete(self, messages: Sequence[dict[str, Any]]) -> str:
        """Send a chat-completions request; return the assistant's text.

        Raises
        ------
        EndpointError
            On connection errors, HTTP errors, timeouts and malformed answers.
        """
        answer = self._request("chat/completions", self._body(messages), self.timeout_s)
        return self._answer_text(answer)

    def complete_n(
        self, messages: Sequence[dict[str, Any]], n: int, state: StreamState | None = None
    ) -> list[str | EndpointError]:
        """``n`` answers to the same messages (not streamed): one request with the ``n``
        parameter, then one request each for the answers the server did not give (Ollama and
        LM Studio ignore ``n``; a server that rejects it with HTTP 400 is asked without it).

        Each item is an answer or the :class:`EndpointError` of that answer (cut off, empty),
        so one bad answer does not spoil the others. ``state``'s :meth:`StreamState.abort`
        closes the connection in flight (Cancel).

        Raises
        ------
        EndpointError
            When a request fails (connection, HTTP error, timeout).
        StreamCancelledError
            When ``state`` was aborted.
        """
        state = state if state is not None else StreamState()
        body = self._body(messages)
        if n > 1:
            body["n"] = n
        try:
            answers = self._choices(body, state)
        except EndpointError as e:
            cause = e.__cause__
            if n <= 1 or not (isinstance(cause, urllib.error.HTTPError) and cause.code == 400):
                raise
            logger.info("the server rejected n=%d (%s); asking %d times", n, e, n)
            answers = []
        while len(answers) < n:
            answers += self._choices(self._body(messages), state)[:1]
        return answers[:n]

    def _choices(self, body: dict[str, Any], state: StreamState) -> list[str | EndpointError]:
        request = self._post("chat/completions", body, "application/json")
        url = request.full_url
        with (
            _http_errors(url, self.timeout_s, state),
            _opener(state).open(request, timeout=self.timeout_s) as response,
        ):
            payload = response.read()
        try:
            choices = json.loads(payload)["choices"]
        except (ValueError, KeyError, TypeError) as e:
            raise EndpointError(f"{url} did not answer with a completion: {payload[:120]!r}") from e
        out: list[str | EndpointError] = []
        for choice in choices if isinstance(choices, list) else []:
            try:
                out.append(self._answer_text({"choices": [choice]}))
            except EndpointError as e:
                out.append(e)
        if not out:
            raise EndpointError(f"unexpected answer from {self.base_url}: no choices")
        return out

    def _answer_text(self, answer: Any) -> str:
        """The text of a (non-streamed) completion's first choice, checked."""
        try:
            choice = answer["choices"][0]
            content = choice["message"]["content"]
        except (KeyError, IndexError, TypeError) as e:
            raise EndpointError(
                f"unexpected answer from {self.base_url}: no choices[0].message.content"
            ) from e
        if isinstance(content, list):  # some servers answer with content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        return self._checked(content, choice.get("finish_reason"))

    def _checked(self, content: Any, finish_reason: Any) -> str:
        """The answer's text, or the panel's error for a cut-off or empty answer."""
        if finish_reason == "length":
            # A cut-off program is a SyntaxError the model cannot repair within the same limit.
            raise EndpointError(
                f"the answer was cut off at Max Tokens ({self.max_tokens}); raise Max Tokens "
                "in the add-on preferences (reasoning models need 8192 or more), or, when the "
                "model's context is full, use Short Prompt and a smaller Image Size"
            )
        if content is None or (isinstance(content, str) and not content.strip()):
            raise EndpointError(
                f"the model {self.model!r} answered with an empty message; a reasoning model "
                "may have spent Max Tokens thinking: raise Max Tokens"
            )
        if not isinstance(content, str):
            raise EndpointError(f"unexpected answer from {self.base_url}: content is not text")
        return content

    def stream(
        self,
        messages: Sequence[dict[str, Any]],
        state: StreamState,
        cancel: threading.Event | None = None,
    ) -> str:
        """Like :meth:`complete`, with the answer streamed into ``state`` as it arrives.

        Asks with ``"stream": true`` (and ``stream_options.include_usage`` for the token
        count). The timeout applies to each read, so a slow model may take as long as it
        needs while tokens keep coming. A server that answers with plain JSON instead is read
        as :meth:`complete` reads it; one that rejects ``stream`` with HTTP 400 is asked once
        more without it. ``cancel`` (checked between chunks) and :meth:`StreamState.abort`
        (from any thread) close the connection at once.

        Raises
        ------
        EndpointError
            As :meth:`complete`; also for a stream that ends before its last chunk.
        StreamCancelledError
            When cancelled.
        """
        body = {**self._body(messages), "stream": True, "stream_options": {"include_usage": True}}
        request = self._post("chat/completions", body, "text/event-stream, application/json")
        url = request.full_url
        try:
            with _http_errors(url, self.timeout_s, state, cancel):
                response = _opener(state).open(request, timeout=self.timeout_s)
        except EndpointError as e:
            cause = e.__cause__
            if isinstance(cause, urllib.error.HTTPError) and cause.code == 400:
                logger.info("%s rejected stream=true (%s); asking without it", url, e)
                return self.complete(messages)
            raise
        with response:
            state.attach(_socket_of(response))
            kind = response.headers.get_content_type()
            if kind != "text/event-stream":  # the server does not stream: one JSON answer
                with _http_errors(url, self.timeout_s, state, cancel):
                    payload = response.read()
                try:
                    answer = json.loads(payload)
                except ValueError as e:
                    raise EndpointError(f"{url} did not answer with JSON: {payload[:120]!r}") from e
                return self._answer_text(answer)
            with _http_errors(url, self.timeout_s, state, cancel):
                return self._read_events(url, response, state, cancel)

    def _read_events(
        self, url: str, lines: Iterable[bytes], state: StreamState, cancel: threading.Event | None
    ) -> str:
        finish: Any = None
        done = False
        for data in sse_data(_until_cut(lines)):
            if (cancel is not None and cancel.is_set()) or state.aborted:
                raise StreamCancelledError("cancelled")
            if data.strip() == DONE:
                done = True
                break
            try:
                content, counted, reason, tokens = chunk_delta(data)
            except ValueError as e:
                raise EndpointError(f"{url}: {e}") from e
            if counted:
                state.add(content)
            if tokens is not None:
                state.set_usage(tokens)
            finish = reason or finish
        if (cancel is not None and cancel.is_set()) or state.aborted:
            raise StreamCancelledError("cancelled")
        if not done and finish is None:
            raise EndpointError(
                f"{url} closed the stream before the answer ended; try again (a proxy may cut "
                "long requests: raise its timeout)"
            )
        return self._checked(state.snapshot().text, finish)

    def probe_image(self, image: str | Path, timeout_s: float = 60.0) -> None:
        """Ask the model about one small image (Test Connection): does it accept images?

        Raises
        ------
        EndpointError
            When the server refuses the image (a text-only model) or cannot be reached.
        """
        body = {
            "model": self.model,
            "messages": [
                {
                    "role": "user",
                    "content": [image_part(image), {"type": "text", "text": "Answer OK."}],
                }
            ],
            "max_tokens": 4,
            "temperature": 0.0,
        }
        try:
            self._request("chat/completions", body, timeout_s)
        except EndpointError as e:
            cause = e.__cause__
            if isinstance(cause, urllib.error.HTTPError) and cause.code in (400, 415, 422, 500):
                raise EndpointError(
                    f"{self.model!r} does not accept images ({e}); pick a vision model "
                    "(e.g. qwen2.5vl in Ollama, a -VL model in vLLM), or send a prompt only"
                ) from e
            raise

    def list_models(self, timeout_s: float = 10.0) -> list[str]:
        """``GET {base_url}/models``: the model names the server offers (Test connection)."""
        return list(self.model_contexts(timeout_s))

    def model_contexts(self, timeout_s: float = 10.0) -> dict[str, int]:
        """``GET {base_url}/models``: each model the server offers and its context length in
        tokens where the listing says (vLLM and SGLang: ``max_model_len``; OpenRouter:
        ``context_length``), else 0."""
        answer = self._request("models", None, timeout_s)
        try:
            models = {str(m["id"]): m for m in answer["data"]}
        except (KeyError, TypeError) as e:
            raise EndpointError(f"{self.base_url}/models did not list models") from e
        contexts: dict[str, int] = {}
        for name, info in models.items():
            value = next(
                (info.get(k) for k in CONTEXT_KEYS if isinstance(info, dict) and info.get(k)), 0
            )
            contexts[name] = value if isinstance(value, int) and value > 0 else 0
        return contexts


def _error_detail(error: urllib.error.HTTPError) -> str:
    try:
        raw = error.read()[:2000]
    except OSError:
        return error.reason or "error"
    try:
        parsed = json.loads(raw)
        err = parsed.get("error", parsed) if isinstance(parsed, dict) else parsed
        message = err.get("message", err) if isinstance(err, dict) else err
        text = str(message)
    except ValueError:
        text = raw.decode("utf-8", errors="replace")
    return " ".join(text.split())[:300] or (error.reason or "error")


@contextlib.contextmanager
def _http_errors(
    url: str,
    timeout_s: float,
    state: StreamState | None = None,
    cancel: threading.Event | None = None,
) -> Iterator[None]:
    """Turn urllib's failures into one-line :class:`EndpointError`\\ s for the panel (a read
    that fails because Cancel closed the socket is :class:`StreamCancelledError`)."""

    def cancelled() -> bool:
        return (state is not None and state.aborted) or (cancel is not None and cancel.is_set())

    try:
        yield
    except urllib.error.HTTPError as e:
        detail = _error_detail(e)
        hint = " (check the API key)" if e.code in (401, 403) else ""
        raise EndpointError(f"{url} answered HTTP {e.code}: {detail}{hint}") from e
    except urllib.error.URLError as e:
        raise EndpointError(f"cannot reach {url}: {e.reason}; is the server running?") from e
    except TimeoutError as e:
        if cancelled():
            raise StreamCancelledError("cancelled") from e
        raise EndpointError(f"{url} did not answer within {timeout_s:.0f} s") from e
    except (OSError, http.client.HTTPException) as e:
        if cancelled():
            raise StreamCancelledError("cancelled") from e
        raise EndpointError(f"connection to {url} failed: {e}") from e


def _until_cut(lines: Iterable[bytes]) -> Iterator[bytes]:
    """The lines of a chunked body, ending where the server stopped sending mid-chunk."""
    try:
        yield from lines
    except http.client.IncompleteRead:
        return  # reported as a stream that ended before its last chunk


def _opener(state: StreamState) -> urllib.request.OpenerDirector:
    """urllib's opener, handing each plain-HTTP connection's socket to ``state`` as soon as it
    connects, so that Cancel closes it also while the server has not answered yet (a local
    model processing a long prompt). HTTPS connections are handed over once they answer."""

    class Connection(http.client.HTTPConnection):
        def connect(self) -> None:
            super().connect()
            state.attach(self.sock)

    class Handler(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(Connection, req)

    return urllib.request.build_opener(Handler)


def _socket_of(response: Any) -> socket.socket | None:
    """The socket under an ``http.client`` response (``fp.raw._sock``; None where a Python
    keeps it elsewhere: Cancel then waits for the next chunk)."""
    sock = getattr(getattr(getattr(response, "fp", None), "raw", None), "_sock", None)
    return sock if isinstance(sock, socket.socket) else None
