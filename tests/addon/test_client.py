"""The chat-completions client (pure Python) against the local server, and its helpers."""

from __future__ import annotations

import base64
import socket
import time
from pathlib import Path

import pytest

from addon.client import (
    ChatClient,
    EndpointError,
    build_messages,
    extract_code,
    image_part,
    repair_messages,
)
from addon.streaming import StreamState, chunk_delta, sse_data
from tests.addon.conftest import MODEL, ChatServer, png_bytes

PROGRAM = "from bpy_lib import *\nbox(size=[1, 1, 1])\n"


@pytest.mark.parametrize(
    "answer",
    [
        f"```python\n{PROGRAM}```",
        f"Sure! Here it is:\n\n```py\n{PROGRAM}```\nThis builds a cube.",
        f"<think>a cube, so ```python\nnot this\n```</think>\n```python\n{PROGRAM}```",
        f"```\n{PROGRAM}```",
        PROGRAM,
        f"```python\n{PROGRAM}",  # cut off by max_tokens: the open block is the program
    ],
)
def test_extract_code_finds_the_program(answer: str) -> None:
    assert extract_code(answer) == PROGRAM


def test_image_part_is_a_base64_data_url(tmp_path: Path) -> None:
    image = tmp_path / "view.JPG"
    image.write_bytes(b"\xff\xd8fakejpeg")
    part = image_part(image)
    assert part["type"] == "image_url"
    head, data = part["image_url"]["url"].split(",", 1)
    assert head == "data:image/jpeg;base64"
    assert base64.b64decode(data) == b"\xff\xd8fakejpeg"


def test_image_part_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(EndpointError, match=r"scan\.tiff: not a supported image type"):
        image_part(tmp_path / "scan.tiff")
    with pytest.raises(EndpointError, match=r"cannot read image .*gone\.png"):
        image_part(tmp_path / "gone.png")


def test_messages_and_repair_messages(tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    image.write_bytes(png_bytes())
    messages = build_messages("SYSTEM", [image, image])
    assert messages[0] == {"role": "system", "content": "SYSTEM"}
    kinds = [part["type"] for part in messages[1]["content"]]
    assert kinds == ["image_url", "image_url", "text"]
    assert "2 image(s)" in messages[1]["content"][-1]["text"]
    repaired = repair_messages(messages, "ANSWER", "NameError: x (line 2)")
    assert repaired[:2] == messages
    assert repaired[2] == {"role": "assistant", "content": "ANSWER"}
    assert "NameError: x (line 2)" in repaired[3]["content"]
    with pytest.raises(
        EndpointError, match="nothing to send; add a reference image or describe the object"
    ):
        build_messages("SYSTEM", [])


def test_complete_and_list_models(chat_server: ChatServer) -> None:
    chat_server.answers = ["hello"]
    client = ChatClient(chat_server.url + "/", MODEL, api_key="k", max_tokens=99, temperature=0)
    assert client.complete([{"role": "user", "content": "hi"}]) == "hello"
    body = chat_server.requests[0]
    assert (body["model"], body["max_tokens"], body["temperature"]) == (MODEL, 99, 0)
    assert body["_auth"] == "Bearer k"
    assert client.list_models() == [MODEL]
    assert ChatClient(chat_server.url, MODEL).complete([]) == "hello"
    assert chat_server.requests[-1]["_auth"] is None  # no key, no header


def test_errors_say_what_to_check(chat_server: ChatServer) -> None:
    chat_server.status = 401
    with pytest.raises(EndpointError, match=r"HTTP 401: model overloaded \(check the API key\)"):
        ChatClient(chat_server.url, MODEL).complete([])
    with pytest.raises(EndpointError, match="must start with http"):
        ChatClient("127.0.0.1:8000/v1", MODEL).complete([])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(EndpointError, match="is the server running"):
        ChatClient(f"http://127.0.0.1:{port}/v1", MODEL, timeout_s=5).complete([])
    chat_server.status = 200
    chat_server.answers = ["   "]
    with pytest.raises(EndpointError, match="empty message"):
        ChatClient(chat_server.url, MODEL).complete([])


def test_client_repr_hides_the_key() -> None:
    assert "secret" not in repr(ChatClient("http://x/v1", MODEL, api_key="secret"))


def test_server_sent_events_are_read_as_servers_send_them() -> None:
    lines = [
        b": keep-alive\r\n",
        b"\r\n",
        b'data: {"a": 1}\r\n',
        b"\r\n",
        b"event: message\n",
        b"id: 7\n",
        b"data: first line\n",
        b"data:second line\n",
        b"\n",
        b"data: [DONE]",  # the last event may lack its blank line
    ]
    assert list(sse_data(lines)) == ['{"a": 1}', "first line\nsecond line", "[DONE]"]
    assert chunk_delta('{"choices": [{"delta": {"content": "ab"}, "finish_reason": null}]}') == (
        "ab",
        True,
        None,
        None,
    )
    assert chunk_delta('{"choices": [], "usage": {"completion_tokens": 41}}') == (
        "",
        False,
        None,
        41,
    )
    reasoning = '{"choices": [{"delta": {"reasoning_content": "hmm"}}]}'
    assert chunk_delta(reasoning) == ("", True, None, None)  # a token, but not the answer
    with pytest.raises(ValueError, match="mid-stream: out of memory"):
        chunk_delta('{"error": {"message": "out of memory"}}')


def test_the_timeout_is_per_chunk_not_per_answer(chat_server: ChatServer) -> None:
    answer = "from bpy_lib import *\n" * 4  # 8 chunks of 11 characters
    chat_server.answers = [answer]
    chat_server.chunk_chars, chat_server.chunk_delay_s = 11, 0.25
    client = ChatClient(chat_server.url, MODEL, timeout_s=1.0)
    state = StreamState()
    start = time.monotonic()
    assert client.stream([{"role": "user", "content": "hi"}], state) == answer
    assert time.monotonic() - start > 2.0  # longer than the timeout in all
    snapshot = state.snapshot()
    assert snapshot.text == answer
    assert snapshot.tokens == 8  # the server's usage.completion_tokens
    assert snapshot.tokens_per_s > 0

    chat_server.chunk_delay_s = 2.0  # a server that stops sending
    with pytest.raises(EndpointError, match=r"did not answer within 1 s"):
        ChatClient(chat_server.url, MODEL, timeout_s=1.0).stream([], StreamState())


def test_a_stream_that_ends_early_is_an_error(chat_server: ChatServer) -> None:
    chat_server.answers = ["from bpy_lib import *\nbox(size=[1, 1, 1])\n" * 3]
    chat_server.stream_mode = "truncate"
    with pytest.raises(EndpointError, match="closed the stream before the answer ended"):
        ChatClient(chat_server.url, MODEL).stream([], StreamState())


@pytest.mark.parametrize(("mode", "expected"), [("n", [3]), ("ignored", [3, None, None])])
def test_n_answers_in_one_request_or_one_request_each(
    chat_server: ChatServer, mode: str, expected: list[int | None]
) -> None:
    chat_server.answers = ["first", "second", "third"]
    chat_server.n_supported = mode == "n"
    answers = ChatClient(chat_server.url, MODEL).complete_n([], 3)
    assert answers == ["first", "second", "third"]
    assert [r.get("n") for r in chat_server.requests] == expected


def test_a_server_that_rejects_n_is_asked_once_per_answer(chat_server: ChatServer) -> None:
    chat_server.answers = ["first", "second", "third"]
    chat_server.reject_n = True
    assert ChatClient(chat_server.url, MODEL).complete_n([], 2) == ["first", "second"]
    assert [r.get("n") for r in chat_server.requests] == [2, None, None]
