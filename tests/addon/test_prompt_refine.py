"""Issue 23, points 1 and 2: the prompt (text to code), Refine, and what makes small local
models work: downscaled images, the short prompt, the context and cut-off warnings.

The operators run against the local chat-completions server in real Blender; the timer
function is called directly, as in test_generate.py.
"""

from __future__ import annotations

import base64
import struct
import tempfile
from pathlib import Path
from typing import Any

import bpy
import pytest

from tests.addon.conftest import CUBE_PROGRAM, ChatServer, drain_until_done, png_bytes

pytestmark = pytest.mark.blender

THIN_PROGRAM = CUBE_PROGRAM.replace("radius=0.05", "radius=0.02")


def _add_images(paths: list[Path]) -> None:
    result = bpy.ops.mesh.llm3d_add_images(
        directory=str(paths[0].parent), files=[{"name": p.name} for p in paths]
    )
    assert result == {"FINISHED"}


def _window() -> Any:
    return bpy.context.window_manager.windows[0]


def _png_size(data_url: str) -> tuple[int, int]:
    head, data = data_url.split(",", 1)
    assert head == "data:image/png;base64"
    raw = base64.b64decode(data)
    width, height = struct.unpack(">II", raw[16:24])
    return width, height


def test_text_to_code_with_a_prompt_and_no_images(addon: Any, chat_server: ChatServer) -> None:
    chat_server.answers = [CUBE_PROGRAM]
    scene = bpy.context.scene
    settings = scene.llm3d
    assert not bpy.ops.mesh.llm3d_generate.poll()  # nothing to send yet
    settings.prompt = "a small wooden box with a knob"
    assert bpy.ops.mesh.llm3d_generate() == {"FINISHED"}
    drain_until_done(scene.name)

    assert settings.status.startswith("Done: 1 part in"), settings.status
    assert settings.collection.name == "llm3d a_small_wooden_box"
    assert settings.text.as_string() == CUBE_PROGRAM
    (request,) = chat_server.requests
    user = request["messages"][1]
    assert isinstance(user["content"], str)  # no image parts at all
    assert "a small wooden box with a knob" in user["content"]


def test_prompt_goes_with_the_images(
    addon: Any, chat_server: ChatServer, images: list[Path]
) -> None:
    chat_server.answers = [CUBE_PROGRAM]
    scene = bpy.context.scene
    _add_images(images)
    scene.llm3d.prompt = "only the mug, lower poly"
    bpy.ops.mesh.llm3d_generate()
    drain_until_done(scene.name)
    parts = chat_server.requests[0]["messages"][1]["content"]
    assert [p["type"] for p in parts] == ["image_url", "image_url", "text"]
    assert parts[-1]["text"].endswith("The artist adds: only the mug, lower poly")


def test_refine_continues_the_conversation_and_rebuilds_in_place(
    addon: Any, chat_server: ChatServer, images: list[Path]
) -> None:
    chat_server.answers = [CUBE_PROGRAM, THIN_PROGRAM]
    scene = bpy.context.scene
    settings = scene.llm3d
    _add_images(images)
    settings.prompt = "the mug"
    bpy.ops.mesh.llm3d_generate()
    drain_until_done(scene.name)
    collection, text = settings.collection, settings.text
    first_mesh = collection.all_objects[0].data.name
    assert not bpy.ops.mesh.llm3d_refine.poll()  # nothing to change said yet
    # the artist edits the program, then asks for a change
    edited = CUBE_PROGRAM.replace("# part_2: knob", "# part_2: round knob")
    text.from_string(edited)
    settings.refine_prompt = "make the knob thinner"
    with bpy.context.temp_override(window=_window()):
        bpy.ops.ed.undo_push(message="before refine")
    assert bpy.ops.mesh.llm3d_refine() == {"FINISHED"}
    drain_until_done(scene.name)

    assert settings.status.startswith("Done: 1 part in 'llm3d mug_front+mug_side'")
    # rebuilt in place: the same collection and text block, no second result
    assert settings.collection == collection and settings.text == text
    assert [c.name for c in bpy.data.collections if c.name.startswith("llm3d")] == [collection.name]
    assert len(collection.all_objects) == 1
    assert text.as_string() == THIN_PROGRAM
    # the same conversation: first turn as sent, the edited program, then the instruction
    system, first, program, ask = chat_server.requests[1]["messages"]
    assert system == chat_server.requests[0]["messages"][0]
    assert first == chat_server.requests[0]["messages"][1]
    assert program["role"] == "assistant" and "# part_2: round knob" in program["content"]
    assert ask["role"] == "user" and "make the knob thinner" in ask["content"]

    # one undo step takes the refine back: the earlier program and mesh return
    with bpy.context.temp_override(window=_window()):
        bpy.ops.ed.undo()
    text = bpy.data.texts["llm3d mug_front+mug_side.py"]
    assert text.as_string() == edited
    objects = bpy.data.collections["llm3d mug_front+mug_side"].all_objects
    assert [o.data.name for o in objects] == [first_mesh]


def test_cut_off_answer_says_to_raise_max_tokens_and_spends_no_repair(
    addon: Any, chat_server: ChatServer
) -> None:
    chat_server.answers = ["```python\nfrom bpy_lib import *\nbox(size=[1, "]
    chat_server.finish_reason = "length"
    settings = bpy.context.scene.llm3d
    settings.prompt = "a box"
    bpy.ops.mesh.llm3d_generate()
    drain_until_done(bpy.context.scene.name)
    assert len(chat_server.requests) == 1
    assert "cut off at Max Tokens (4096); raise Max Tokens" in settings.error
    assert "SyntaxError" not in settings.error


def test_large_images_are_downscaled_before_sending(
    addon: Any, chat_server: ChatServer, tmp_path: Path
) -> None:
    chat_server.answers = [CUBE_PROGRAM]
    big = tmp_path / "photo.png"
    big.write_bytes(png_bytes(width=2000, height=1000))
    small = tmp_path / "icon.png"
    small.write_bytes(png_bytes())
    _add_images([big, small])
    prefs = bpy.context.preferences.addons["addon"].preferences
    assert prefs.image_size == 1024  # the default
    prefs.image_size = 512
    bpy.ops.mesh.llm3d_generate()
    drain_until_done(bpy.context.scene.name)
    parts = chat_server.requests[0]["messages"][1]["content"]
    urls = [p["image_url"]["url"] for p in parts if p["type"] == "image_url"]
    assert _png_size(urls[0]) == (512, 256)
    assert base64.b64decode(urls[1].split(",", 1)[1]) == small.read_bytes()  # small: as is
    assert big.read_bytes() == png_bytes(width=2000, height=1000)  # the file is untouched
    assert not list(Path(tempfile.gettempdir()).glob("llm3d-images-*"))  # cleaned up


def test_short_prompt_and_the_context_warning(addon: Any, chat_server: ChatServer) -> None:
    chat_server.answers = [CUBE_PROGRAM]
    prefs = bpy.context.preferences.addons["addon"].preferences
    settings = bpy.context.scene.llm3d
    settings.prompt = "a box"
    prefs.context_tokens = 4096  # a small local model; the prompt and 4096 Max Tokens do not fit
    bpy.ops.mesh.llm3d_generate()
    assert "more than the model's context (4096)" in settings.warning
    assert "Turn on Short Prompt" in settings.warning
    assert "OLLAMA_CONTEXT_LENGTH" in settings.warning
    drain_until_done(bpy.context.scene.name)
    assert settings.warning  # still shown with the result

    prefs.short_prompt = True
    prefs.max_tokens = 2048
    bpy.ops.mesh.llm3d_generate()
    drain_until_done(bpy.context.scene.name)
    assert settings.warning == ""
    full, short = (r["messages"][0]["content"] for r in chat_server.requests)
    assert len(short) < 0.6 * len(full)
    assert "box(" in short and "Example:" in full and "Example:" not in short
