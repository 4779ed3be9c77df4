"""Issue 23, point 5: results where the artist works (the 3D cursor, selected, Replace
Previous or Keep All) and no stale "Waiting..." after a file loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bpy
import pytest

from tests.addon.conftest import CUBE_PROGRAM, ChatServer, drain_until_done

pytestmark = pytest.mark.blender


def test_replace_previous_puts_the_result_at_the_cursor_selected(
    addon: Any, chat_server: ChatServer
) -> None:
    chat_server.answers = [CUBE_PROGRAM]
    scene = bpy.context.scene
    settings = scene.llm3d
    assert settings.results == "REPLACE"  # the default
    artist = bpy.data.objects.new("artist's empty", None)
    scene.collection.objects.link(artist)
    artist.select_set(True)
    try:
        scene.cursor.location = (1.0, 2.0, 3.0)
        settings.prompt = "a box"
        bpy.ops.mesh.llm3d_generate()
        drain_until_done(scene.name)
        settings.prompt = "a crate"
        scene.cursor.location = (-1.0, 0.0, 0.5)
        bpy.ops.mesh.llm3d_generate()
        drain_until_done(scene.name)

        # one result and one program, renamed after the new prompt; nothing piles up
        assert [c.name for c in bpy.data.collections if c.name.startswith("llm3d")] == [
            "llm3d a_crate"
        ]
        assert [t.name for t in bpy.data.texts if t.name.startswith("llm3d")] == [
            "llm3d a_crate.py"
        ]
        (obj,) = settings.collection.all_objects
        assert tuple(obj.location) == pytest.approx((-1.0, 0.0, 0.5))  # at the 3D cursor
        assert obj.select_get() and bpy.context.view_layer.objects.active == obj
        assert not artist.select_get()  # the result is the selection now
    finally:
        bpy.data.objects.remove(artist)


def test_refine_keeps_the_result_where_it_stands(addon: Any, chat_server: ChatServer) -> None:
    chat_server.answers = [CUBE_PROGRAM]
    scene = bpy.context.scene
    settings = scene.llm3d
    scene.cursor.location = (2.0, 0.0, 0.0)
    settings.prompt = "a box"
    bpy.ops.mesh.llm3d_generate()
    drain_until_done(scene.name)
    scene.cursor.location = (0.0, 0.0, 0.0)  # the artist moved on
    settings.refine_prompt = "taller"
    bpy.ops.mesh.llm3d_refine()
    drain_until_done(scene.name)
    (obj,) = settings.collection.all_objects
    assert tuple(obj.location) == pytest.approx((2.0, 0.0, 0.0))


def test_a_file_saved_mid_request_does_not_say_waiting(addon: Any, tmp_path: Path) -> None:
    settings = bpy.context.scene.llm3d
    settings.busy = True
    settings.status = "Waiting for test/qwen-vl... 1 s (attempt 1/3)"
    path = tmp_path / "mid_request.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path), copy=True)
    settings.busy = False
    bpy.ops.wm.open_mainfile(filepath=str(path))
    settings = bpy.context.scene.llm3d
    assert not settings.busy
    assert settings.status.startswith("Interrupted: the file was saved while a request ran")
    settings.prompt = "a box"
    assert bpy.ops.mesh.llm3d_generate.poll()  # not blocked by the stale job


def test_replace_previous_never_empties_the_artists_collection(
    addon: Any, chat_server: ChatServer
) -> None:
    chat_server.answers = [CUBE_PROGRAM]
    scene = bpy.context.scene
    settings = scene.llm3d
    mine = bpy.data.collections.new("llm3d props I made")  # even under our prefix
    scene.collection.children.link(mine)
    chair = bpy.data.objects.new("my chair", None)
    mine.objects.link(chair)
    try:
        settings.collection = mine  # picked as Run's target
        settings.prompt = "a box"
        bpy.ops.mesh.llm3d_generate()
        drain_until_done(scene.name)
        assert [o.name for o in mine.all_objects] == ["my chair"]
        assert mine.name == "llm3d props I made"
        assert settings.collection.name == "llm3d a_box"
    finally:
        bpy.data.objects.remove(chair)
