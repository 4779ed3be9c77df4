"""Streaming: the answer fills its text block as it arrives, Cancel closes the stream, servers
that do not stream still work (real Blender, a local chat-completions server)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import bpy
import pytest

from tests.addon.conftest import CUBE_PROGRAM, MODEL, ChatServer, drain_until_done

pytestmark = pytest.mark.blender

ANSWER = f"Here is the program:\n```python\n{CUBE_PROGRAM}```\nIt builds a mug."


def _generate(images: list[Path]) -> None:
    result = bpy.ops.mesh.llm3d_add_images(
        directory=str(images[0].parent), files=[{"name": p.name} for p in images]
    )
    assert result == {"FINISHED"}
    assert bpy.ops.mesh.llm3d_generate() == {"FINISHED"}


def _text_editor() -> Any:
    """Turn the startup file's first non-3D area into a Text Editor (as an artist would)."""
    screen = bpy.context.window_manager.windows[0].screen
    area = next(a for a in screen.areas if a.type not in ("VIEW_3D", "TEXT_EDITOR"))
    area.type = "TEXT_EDITOR"
    return area


def test_answer_streams_into_the_text_block_and_the_text_editor(
    addon: Any, chat_server: ChatServer, images: list[Path]
) -> None:
    from addon import jobs

    chat_server.answers = [ANSWER]
    chat_server.chunk_chars, chat_server.chunk_delay_s = 8, 0.03
    editor = _text_editor()
    scene = bpy.context.scene
    settings = scene.llm3d
    _generate(images)

    seen: list[str] = []
    statuses: list[str] = []
    deadline = time.monotonic() + 30
    while jobs.active_job(scene) is not None and time.monotonic() < deadline:
        if jobs.drain(scene.name) is None:
            break
        text = bpy.data.texts.get("llm3d mug_front+mug_side.py")
        if text is not None:
            seen.append(text.as_string())
            statuses.append(settings.status)
        time.sleep(0.05)

    partial = [t for t in seen if t and len(t) < len(ANSWER) and t != CUBE_PROGRAM]
    assert len(set(partial)) >= 3, seen  # it grew in steps, while the model was writing
    assert all(ANSWER.startswith(t) for t in partial)  # each step a prefix of the answer
    receiving = [s for s in statuses if s.startswith(f"Receiving from {MODEL}: ")]
    assert receiving and "tokens/s" in receiving[-1] and "(attempt 1/3)" in receiving[-1]
    counts = [int(s.split(": ")[1].split(" tokens")[0]) for s in receiving]
    assert counts == sorted(counts) and counts[-1] > counts[0]
    # the Text Editor shows the block while it fills
    assert editor.spaces.active.text == bpy.data.texts["llm3d mug_front+mug_side.py"]

    assert settings.status.startswith("Done: 1 part in"), settings.status
    assert settings.text.as_string() == CUBE_PROGRAM  # the program alone once it is built
    assert len(settings.collection.all_objects) == 1
    (request,) = chat_server.requests
    assert request["stream"] is True
    assert request["stream_options"] == {"include_usage": True}
    assert len([t for t in bpy.data.texts if t.name.startswith("llm3d")]) == 1


@pytest.mark.parametrize("mode", ["json", "reject"])
def test_a_server_that_does_not_stream_still_works(
    addon: Any, chat_server: ChatServer, images: list[Path], mode: str
) -> None:
    chat_server.answers = [ANSWER]
    chat_server.stream_mode = mode
    settings = bpy.context.scene.llm3d
    _generate(images)
    drain_until_done(bpy.context.scene.name)
    assert settings.status.startswith("Done: 1 part in"), settings.status
    assert settings.text.as_string() == CUBE_PROGRAM
    streamed = [bool(r.get("stream")) for r in chat_server.requests]
    # json: the one request's plain answer is read; reject: HTTP 400, asked once without it
    assert streamed == ([True] if mode == "json" else [True, False])


def test_cancel_mid_stream_closes_it_at_once_and_builds_nothing(
    addon: Any, chat_server: ChatServer, images: list[Path]
) -> None:
    from addon import jobs

    chat_server.answers = [ANSWER * 4]  # about 80 chunks, 0.1 s apart: 8 s in all
    chat_server.chunk_chars, chat_server.chunk_delay_s = 8, 0.1
    scene = bpy.context.scene
    settings = scene.llm3d
    _generate(images)
    job = jobs.active_job(scene)
    assert job is not None
    deadline = time.monotonic() + 20
    while not settings.status.startswith("Receiving") and time.monotonic() < deadline:
        jobs.drain(scene.name)
        time.sleep(0.05)
    assert bpy.data.texts.get("llm3d mug_front+mug_side.py") is not None  # partly written

    start = time.monotonic()
    assert bpy.ops.mesh.llm3d_cancel() == {"FINISHED"}
    assert settings.status.startswith("Cancelled"), settings.status
    assert not settings.busy and jobs.active_job(scene) is None
    assert job.thread is not None
    job.thread.join(timeout=5)
    stopped = time.monotonic() - start
    assert not job.thread.is_alive()
    assert stopped < 1.0, f"the worker took {stopped:.2f} s to stop"
    assert chat_server.disconnected.wait(3)  # the server saw the client go
    assert chat_server.chunks_sent[0] < 40  # long before the end of the answer
    assert jobs.drain(scene.name) is None
    assert settings.collection is None
    assert not [o for o in bpy.data.objects if o.get("bpy_lib_kind")]
    # the half-written program does not stay behind
    assert bpy.data.texts.get("llm3d mug_front+mug_side.py") is None
    assert bpy.ops.mesh.llm3d_generate.poll()


def test_cancel_before_the_first_token_closes_the_connection(
    addon: Any, chat_server: ChatServer, images: list[Path]
) -> None:
    from addon import jobs

    chat_server.answers = [ANSWER]
    chat_server.hold.clear()  # the model is still reading the prompt
    scene = bpy.context.scene
    _generate(images)
    job = jobs.active_job(scene)
    assert job is not None
    deadline = time.monotonic() + 10
    while not chat_server.requests and time.monotonic() < deadline:
        time.sleep(0.02)
    assert jobs.drain(scene.name) == jobs.DRAIN_INTERVAL_S
    assert scene.llm3d.status.startswith(f"Waiting for {MODEL}"), scene.llm3d.status
    bpy.ops.mesh.llm3d_cancel()
    assert job.thread is not None
    job.thread.join(timeout=2)
    assert not job.thread.is_alive()  # closed, not left waiting for the server
    chat_server.hold.set()


def test_cancel_during_refine_gives_the_program_back(
    addon: Any, chat_server: ChatServer, images: list[Path]
) -> None:
    from addon import jobs

    chat_server.answers = [CUBE_PROGRAM, ANSWER * 4]
    scene = bpy.context.scene
    settings = scene.llm3d
    _generate(images)
    drain_until_done(scene.name)
    edited = CUBE_PROGRAM.replace("0.6, 0.4", "0.9, 0.4")
    settings.text.from_string(edited)
    chat_server.chunk_chars, chat_server.chunk_delay_s = 8, 0.1
    settings.refine_prompt = "make it taller"
    assert bpy.ops.mesh.llm3d_refine() == {"FINISHED"}
    deadline = time.monotonic() + 20
    while settings.text.as_string() == edited and time.monotonic() < deadline:
        jobs.drain(scene.name)
        time.sleep(0.05)
    assert settings.text.as_string() != edited  # the answer streams into the program's block
    bpy.ops.mesh.llm3d_cancel()
    assert settings.text.as_string() == edited


def test_a_cut_off_stream_warns_and_shows_what_came(
    addon: Any, chat_server: ChatServer, images: list[Path]
) -> None:
    cut = ANSWER[: len(ANSWER) // 2]
    chat_server.answers = [cut]
    chat_server.finish_reason = "length"
    settings = bpy.context.scene.llm3d
    _generate(images)
    drain_until_done(bpy.context.scene.name)
    assert "cut off at Max Tokens (4096)" in settings.error, settings.error
    assert settings.status == "The model request failed."
    assert len(chat_server.requests) == 1  # not a program to repair
    assert not [o for o in bpy.data.objects if o.get("bpy_lib_kind")]
    # the part that came stays readable in its text block
    assert bpy.data.texts["llm3d mug_front+mug_side.py"].as_string() == cut
