"""Candidates: N answers built in the sandbox, rendered, matched with the input views, the best
kept and the others swappable (real Blender, a local chat-completions server, the real render
match in a background Blender)."""

from __future__ import annotations

import random
import struct
import time
import zlib
from pathlib import Path
from typing import Any

import bpy
import pytest

from tests.addon.conftest import CUBE_PROGRAM, ChatServer, drain_until_done

pytestmark = pytest.mark.blender

BROKEN = "from bpy_lib import *\n# part_1: body\nbox(size=[1, 1, 1])\nx = 1 / 0\n"
WRONG = "from bpy_lib import *\n# part_1: pole\ncylinder(radius=0.05, depth=1.2, name='pole')\n"
VIEWS = ("front", "side")


def _prefs() -> Any:
    return bpy.context.preferences.addons["addon"].preferences


def _views_of(program: str, folder: Path) -> list[Path]:
    """The input views: ``program`` run in the sandbox and rendered from the rig's first
    cameras, as the training data's views are."""
    from addon.background import get_sandbox
    from llm3d.config import RenderConfig
    from worker.render import render_views

    result = get_sandbox().run(program, 60)
    assert result.ok, result.error
    rig = RenderConfig()
    # an artist's pictures frame their object (the add-on renders candidates alike)
    config = RenderConfig(views=[v for v in rig.views if v.name in VIEWS], frame="object")
    return render_views(result.vertices, result.faces, folder, config=config, prefix="mug_")


def _add(paths: list[Path]) -> None:
    result = bpy.ops.mesh.llm3d_add_images(
        directory=str(paths[0].parent), files=[{"name": p.name} for p in paths]
    )
    assert result == {"FINISHED"}


def _result_dims() -> tuple[float, float, float]:
    (obj,) = bpy.context.scene.llm3d.collection.all_objects
    return tuple(round(v, 3) for v in obj.dimensions)  # type: ignore[return-value]


def test_the_best_match_is_kept_and_another_can_be_swapped_in(
    addon: Any, chat_server: ChatServer, tmp_path: Path
) -> None:
    views = _views_of(CUBE_PROGRAM, tmp_path)
    chat_server.answers = [BROKEN, CUBE_PROGRAM, WRONG]
    _prefs().candidates, _prefs().max_repairs = 3, 0
    scene = bpy.context.scene
    settings = scene.llm3d
    _add(views)
    assert bpy.ops.mesh.llm3d_generate() == {"FINISHED"}
    drain_until_done(scene.name, timeout_s=180)

    assert settings.status.startswith("Done: 1 part in"), (settings.status, settings.error)
    assert "Kept candidate 2 of 3 (2 built, match" in settings.status, settings.status
    (request,) = chat_server.requests  # one request with n = 3
    assert request["n"] == 3 and not request.get("stream")
    rows = {c.number: c for c in settings.candidates}
    assert sorted(rows) == [1, 2, 3]
    assert not rows[1].ok and "ZeroDivisionError" in rows[1].error and not rows[1].has_score
    assert rows[2].kept and rows[2].has_score and rows[2].score > 0.9
    assert rows[3].has_score and not rows[3].kept and rows[3].score < rows[2].score - 0.1
    assert settings.candidate_note == ""
    assert settings.text.as_string() == CUBE_PROGRAM
    assert _result_dims()[:2] == (0.6, 0.4)  # the box, not the pole

    # swap in the pole: one click, one undo step
    assert bpy.ops.mesh.llm3d_use_candidate(number=3) == {"FINISHED"}
    assert settings.text.as_string() == WRONG
    assert _result_dims()[2] == pytest.approx(1.2, abs=1e-3)
    assert [c.kept for c in settings.candidates] == [False, False, True]
    assert len(settings.collection.all_objects) == 1
    with bpy.context.temp_override(window=bpy.context.window_manager.windows[0]):
        bpy.ops.ed.undo()
    settings = bpy.context.scene.llm3d
    assert settings.text.as_string() == CUBE_PROGRAM
    assert _result_dims()[:2] == (0.6, 0.4)
    assert [c.kept for c in settings.candidates] == [False, True, False]
    # a candidate that did not build cannot be used
    with pytest.raises(RuntimeError, match="Candidate 1 did not build: ZeroDivisionError"):
        bpy.ops.mesh.llm3d_use_candidate(number=1)


def test_a_server_without_n_gets_one_request_per_candidate(
    addon: Any, chat_server: ChatServer
) -> None:
    chat_server.answers = [BROKEN, CUBE_PROGRAM, WRONG]
    chat_server.n_supported = False  # as Ollama: n is ignored, one answer comes back
    _prefs().candidates, _prefs().max_repairs = 3, 0
    scene = bpy.context.scene
    settings = scene.llm3d
    settings.prompt = "a small box with a knob"  # no images: nothing to match with
    assert bpy.ops.mesh.llm3d_generate() == {"FINISHED"}
    drain_until_done(scene.name, timeout_s=120)

    assert [r.get("n") for r in chat_server.requests] == [3, None, None]
    assert "Kept candidate 2 of 3 (2 built)." in settings.status, settings.status
    assert settings.candidate_note.startswith("no reference images to compare with")
    assert [(c.number, c.ok, c.has_score) for c in settings.candidates] == [
        (1, False, False),
        (2, True, False),
        (3, True, False),
    ]
    assert settings.text.as_string() == CUBE_PROGRAM  # the first that builds

    # the meshes are not kept across a file load: Use then runs the candidate's program
    from addon import pick

    pick.forget()
    assert bpy.ops.mesh.llm3d_use_candidate(number=3) == {"FINISHED"}
    drain_until_done(scene.name, timeout_s=60)
    assert settings.status.startswith("Ran "), settings.status
    assert settings.text.as_string() == WRONG
    assert _result_dims()[2] == pytest.approx(1.2, abs=1e-3)


def test_each_candidate_gets_its_own_repairs(addon: Any, chat_server: ChatServer) -> None:
    def reply(body: dict[str, Any]) -> str:
        last = body["messages"][-1]["content"]
        return CUBE_PROGRAM if "Running that program failed" in str(last) else BROKEN

    chat_server.reply = reply
    _prefs().candidates, _prefs().max_repairs = 2, 1
    scene = bpy.context.scene
    settings = scene.llm3d
    settings.prompt = "a small box with a knob"
    bpy.ops.mesh.llm3d_generate()
    drain_until_done(scene.name, timeout_s=120)

    repairs = [r for r in chat_server.requests if len(r["messages"]) > 2]
    assert len(chat_server.requests) == 3 and len(repairs) == 2  # one repair each
    assert all(r["messages"][-2] == {"role": "assistant", "content": BROKEN} for r in repairs)
    assert all("ZeroDivisionError" in r["messages"][-1]["content"] for r in repairs)
    assert [c.ok for c in settings.candidates] == [True, True]
    assert settings.status.startswith("Done: 1 part"), settings.status
    assert "(attempt 2/2)" in settings.status


def _photo_png(path: Path, size: int = 64) -> Path:
    """A 'photo': random pixels to the border, no transparency, no plain background."""
    rng = random.Random(7)
    rows = b"".join(
        b"\x00" + bytes(rng.randrange(256) for _ in range(size * 3)) for _ in range(size)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    return path


def test_a_photo_that_cannot_be_cut_out_keeps_the_first_that_builds(
    addon: Any, chat_server: ChatServer, tmp_path: Path
) -> None:
    chat_server.answers = [BROKEN, WRONG, CUBE_PROGRAM]
    _prefs().candidates, _prefs().max_repairs = 3, 0
    scene = bpy.context.scene
    settings = scene.llm3d
    _add([_photo_png(tmp_path / "chair_photo.png")])
    bpy.ops.mesh.llm3d_generate()
    drain_until_done(scene.name, timeout_s=180)

    note = settings.candidate_note
    assert "chair_photo.png has neither transparency nor a plain background" in note, note
    assert note.endswith("kept the first candidate that builds"), note
    assert settings.text.as_string() == WRONG  # candidate 2: the first that builds
    assert [c.kept for c in settings.candidates] == [False, True, False]
    assert not any(c.has_score for c in settings.candidates)


def test_cancel_while_the_candidates_are_asked_for(addon: Any, chat_server: ChatServer) -> None:
    from addon import jobs

    chat_server.answers = [CUBE_PROGRAM]
    chat_server.hold.clear()  # the model is still working on the n answers
    _prefs().candidates = 3
    scene = bpy.context.scene
    scene.llm3d.prompt = "a small box with a knob"
    bpy.ops.mesh.llm3d_generate()
    job = jobs.active_job(scene)
    assert job is not None and job.candidates == 3
    deadline = time.monotonic() + 10
    while not chat_server.requests and time.monotonic() < deadline:
        time.sleep(0.02)
    jobs.drain(scene.name)
    assert scene.llm3d.status.startswith("Waiting for 3 answers from"), scene.llm3d.status
    assert bpy.ops.mesh.llm3d_cancel() == {"FINISHED"}
    assert scene.llm3d.status.startswith("Cancelled")
    assert job.thread is not None
    job.thread.join(timeout=2)
    assert not job.thread.is_alive()  # the request's connection was closed
    chat_server.hold.set()
    assert len(chat_server.requests) == 1
    assert not [o for o in bpy.data.objects if o.get("bpy_lib_kind")]
