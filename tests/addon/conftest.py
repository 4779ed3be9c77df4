"""Fixtures of the add-on tests: the add-on enabled in real Blender (the ``bpy`` wheel) and a
local chat-completions server that answers with scripted programs.

Without the wheel the whole folder is skipped at collection.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

HAVE_BPY = importlib.util.find_spec("bpy") is not None
collect_ignore_glob = [] if HAVE_BPY else ["test_*.py"]

MODEL = "test/qwen-vl"
CUBE_PROGRAM = """\
from bpy_lib import *
# part_1: body
body = box(size=[0.6, 0.4, 0.2], name="body")
# part_2: knob
knob = cylinder(radius=0.05, depth=0.1, location=[0, 0, 0.15], name="knob")
export_scene()
"""


def png_bytes(width: int = 4, height: int = 3, rgb: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A tiny valid RGB PNG (stdlib only)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


@dataclass
class ChatServer:
    """A chat-completions server on 127.0.0.1: each POST pops the next scripted answer.

    Attributes
    ----------
    answers : list of str
        Answers in order; the last one repeats when they run out.
    requests : list of dict
        Every request body received (parsed JSON), with ``_auth`` holding the header.
    hold : threading.Event
        While cleared, chat requests wait (to test Cancel); set by default.
    """

    answers: list[str] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    hold: threading.Event = field(default_factory=threading.Event)
    status: int = 200
    url: str = ""
    #: A text-only model: requests with an image answer HTTP 400.
    text_only: bool = False
    #: The finish_reason of each answer (``length``: cut off at max_tokens).
    finish_reason: str = "stop"
    #: How a request with ``"stream": true`` is answered: ``sse`` (Server-Sent Events, as
    #: vLLM), ``json`` (the server ignores ``stream``: one JSON answer), ``reject`` (HTTP
    #: 400, a server that does not know the parameter) or ``truncate`` (the connection ends
    #: halfway, without a finish_reason).
    stream_mode: str = "sse"
    #: Characters per streamed chunk and the pause before each chunk.
    chunk_chars: int = 12
    chunk_delay_s: float = 0.0
    #: Whether ``n`` (several answers in one request) is honoured; Ollama ignores it.
    n_supported: bool = True
    #: A server that answers HTTP 400 to ``n``.
    reject_n: bool = False
    #: Answers by request instead of ``answers`` (e.g. a repair request gets the fixed program).
    reply: Callable[[dict[str, Any]], str] | None = None
    #: Set when the client closed a stream before its end (a write failed).
    disconnected: threading.Event = field(default_factory=threading.Event)
    #: Chunks written to each stream, in order of the requests.
    chunks_sent: list[int] = field(default_factory=list)

    def answer(self) -> str:
        if len(self.answers) > 1:
            return self.answers.pop(0)
        return self.answers[0] if self.answers else "no program"


def _handler(server: ChatServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # as uvicorn: streams are sent chunked

        def log_message(self, format: str, *args: Any) -> None:
            del format, args

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client is gone (Cancel closed the connection)
                server.disconnected.set()
                self.close_connection = True

        def do_GET(self) -> None:
            if self.path == "/v1/models":
                model = {"id": MODEL, "object": "model", "max_model_len": 16384}  # as vLLM
                self._send(200, {"object": "list", "data": [model]})
            else:
                self._send(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length))
            body["_auth"] = self.headers.get("Authorization")
            server.requests.append(body)
            if self.path != "/v1/chat/completions":
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            server.hold.wait(timeout=30)
            if server.text_only and "image_url" in json.dumps(body["messages"]):
                self._send(400, {"error": {"message": "this model does not support images"}})
                return
            if server.status != 200:
                self._send(server.status, {"error": {"message": "model overloaded"}})
                return
            if body.get("n") and server.reject_n:
                self._send(400, {"error": {"message": "n > 1 is not supported"}})
                return
            n = int(body.get("n") or 1) if server.n_supported else 1
            answer = (
                server.answer if server.reply is None else functools.partial(server.reply, body)
            )
            contents = [answer() for _ in range(n)]
            content = contents[0]
            if body.get("stream") and server.stream_mode == "reject":
                self._send(400, {"error": {"message": "Unrecognized request argument: stream"}})
                return
            if body.get("stream") and server.stream_mode in ("sse", "truncate"):
                self._stream(body, content)
                return
            self._send(
                200,
                {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "model": body.get("model"),
                    "choices": [
                        {
                            "index": i,
                            "message": {"role": "assistant", "content": c},
                            "finish_reason": server.finish_reason,
                        }
                        for i, c in enumerate(contents)
                    ],
                },
            )

        def _stream(self, body: dict[str, Any], content: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.close_connection = True

            def chunk(data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

            step = max(1, server.chunk_chars)
            pieces = [content[i : i + step] for i in range(0, len(content), step)]
            base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": MODEL}
            events: list[dict[str, Any]] = [
                {**base, "choices": [{"index": 0, "delta": {"role": "assistant"}}]}
            ]
            events += [
                {**base, "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]}
                for p in pieces
            ]
            events.append(
                {
                    **base,
                    "choices": [{"index": 0, "delta": {}, "finish_reason": server.finish_reason}],
                }
            )
            if (body.get("stream_options") or {}).get("include_usage"):
                usage = {"prompt_tokens": 100, "completion_tokens": len(pieces), "total_tokens": 0}
                events.append({**base, "choices": [], "usage": usage})
            if server.stream_mode == "truncate":
                events = events[: len(events) // 2]
            sent = 0
            server.chunks_sent.append(0)
            try:
                for event in events:
                    if server.chunk_delay_s:
                        time.sleep(server.chunk_delay_s)
                    if sent == 1:
                        chunk(b": keep-alive\n\n")
                    chunk(f"data: {json.dumps(event)}\n\n".encode())
                    self.wfile.flush()
                    sent += 1
                    server.chunks_sent[-1] = sent
                if server.stream_mode == "truncate":
                    return
                chunk(b"data: [DONE]\n\n")
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except OSError:  # the client closed the stream (Cancel)
                server.disconnected.set()

    return Handler


@contextlib.contextmanager
def serve(state: ChatServer) -> Iterator[ChatServer]:
    """Run ``state``'s server on 127.0.0.1 until the block ends (the fixture, benchmarks)."""
    state.hold.set()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.hold.set()
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def chat_server() -> Iterator[ChatServer]:
    """A running local server; ``chat_server.url`` is its ``/v1`` root."""
    with serve(ChatServer()) as state:
        yield state


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    """Two reference images (front and side) on disk."""
    paths = [tmp_path / "mug_front.png", tmp_path / "mug_side.png"]
    paths[0].write_bytes(png_bytes(rgb=(200, 30, 30)))
    paths[1].write_bytes(png_bytes(rgb=(30, 200, 30)))
    return paths


def _clean_blender_state() -> None:
    import bpy

    for coll in list(bpy.data.collections):
        if coll.name.startswith("llm3d"):
            for obj in list(coll.all_objects):
                bpy.data.objects.remove(obj)
            bpy.data.collections.remove(coll)
    for obj in list(bpy.data.objects):
        if obj.get("bpy_lib_kind") is not None:
            bpy.data.objects.remove(obj)
    for text in list(bpy.data.texts):
        if text.name.startswith("llm3d"):
            bpy.data.texts.remove(text)
    for image in list(bpy.data.images):
        if image.name.startswith("llm3d"):  # history thumbnails
            bpy.data.images.remove(image)
    scene = bpy.context.scene
    if "llm3d" in scene:  # the panel's state (images, attempts, score...) back to defaults
        del scene["llm3d"]


@pytest.fixture
def addon(chat_server: ChatServer) -> Iterator[Any]:
    """The add-on enabled through addon_utils, its preferences pointing at ``chat_server``."""
    import addon_utils
    import bpy

    def fail(exc: BaseException) -> None:
        raise exc

    module = addon_utils.enable("addon", default_set=True, handle_error=fail)
    prefs = bpy.context.preferences.addons["addon"].preferences
    prefs.provider = "CUSTOM"
    prefs.endpoint_url = chat_server.url
    prefs.model = MODEL
    prefs.image_size, prefs.short_prompt, prefs.context_tokens = 1024, False, 32768
    prefs.max_tokens = 4096
    prefs.history_size = 20
    prefs.api_key = "sk-test-key"
    prefs.max_repairs = 2
    prefs.trusted_execution = False
    _clean_blender_state()
    yield module
    from addon import jobs

    jobs.cancel_all()
    _clean_blender_state()
    addon_utils.disable("addon", default_set=True, handle_error=fail)


def drain_until_done(scene_name: str, *, timeout_s: float = 20.0) -> int:
    """Call the timer function as Blender would, until it stops; return the call count."""
    from addon import jobs

    deadline = time.monotonic() + timeout_s
    calls = 0
    while time.monotonic() < deadline:
        calls += 1
        interval = jobs.drain(scene_name)
        if interval is None:
            return calls
        time.sleep(min(interval, 0.05))
    raise AssertionError(f"the job did not finish within {timeout_s} s")


@pytest.fixture
def drain() -> Callable[..., int]:
    """:func:`drain_until_done`."""
    return drain_until_done
