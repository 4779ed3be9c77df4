"""A local HTTP server that speaks the OpenAI chat-completions protocol (for tests).

It answers ``POST /v1/chat/completions`` with ``choose(messages) -> text`` for each of the
``n`` choices and records every request body, so tests check both directions: what the
client sent (image parts, model, sampling settings) and what it did with the answer.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Chooser = Callable[[list[dict[str, Any]]], str]


class ChatServer:
    """The running server: ``base_url`` (ends in ``/v1``) and the ``requests`` it received."""

    def __init__(self, server: ThreadingHTTPServer) -> None:
        self.server = server
        host, port = server.server_address[:2]
        self.base_url = f"http://{host!s}:{port}/v1"
        self.requests: list[dict[str, Any]] = []


@contextmanager
def chat_server(choose: Chooser, *, fail_first: int = 0) -> Iterator[ChatServer]:
    """Serve chat completions on a free port until the block ends.

    Args:
        choose: the assistant text for a request's messages.
        fail_first: answer the first N requests with 503 (to exercise retries).
    """
    state = {"failures": fail_first}
    holder: dict[str, ChatServer] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path != "/v1/chat/completions":
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            holder["server"].requests.append(body)
            if state["failures"] > 0:
                state["failures"] -= 1
                self._send(503, {"error": {"message": "warming up"}})
                return
            n = int(body.get("n") or 1)
            choices = [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": choose(body["messages"])},
                    "finish_reason": "stop",
                }
                for i in range(n)
            ]
            self._send(
                200,
                {
                    "id": "chatcmpl-test",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body.get("model", "test"),
                    "choices": choices,
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                },
            )

        def _send(self, code: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder["server"] = ChatServer(server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder["server"]
    finally:
        server.shutdown()
        server.server_close()
