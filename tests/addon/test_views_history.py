"""Issue 23, points 1 (a render with Refine), 4 (the view as input) and 5 (the history).

Real Blender (the ``bpy`` wheel, background mode: no 3D view draws, so *Use Current View*
renders the active camera) against the local chat-completions server; the timer function is
called directly, as in test_generate.py.
"""

from __future__ import annotations

import base64
import struct
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import bpy
import numpy as np
import pytest

from tests.addon.conftest import CUBE_PROGRAM, ChatServer, drain_until_done

pytestmark = pytest.mark.blender

TALL_PROGRAM = """\
from bpy_lib import *
# part_1: tower
tower = box(size=[0.3, 0.3, 1.2], name="tower")
export_scene()
"""


def _window() -> Any:
    return bpy.context.window_manager.windows[0]


def _pixels(image: Any) -> np.ndarray:
    width, height = image.size
    flat = np.empty(width * height * 4, np.float32)
    image.pixels.foreach_get(flat)
    return flat.reshape(height, width, 4)


def _png_pixels(path: Path) -> np.ndarray:
    image = bpy.data.images.load(str(path), check_existing=False)
    try:
        return _pixels(image)
    finally:
        bpy.data.images.remove(image)


def _object_share(pixels: np.ndarray) -> float:
    """Share of pixels that differ from the background (the corner's colour)."""
    background = pixels[0, 0, :3]
    return float((np.abs(pixels[..., :3] - background).max(axis=2) > 0.05).mean())


def _png_size(raw: bytes) -> tuple[int, int]:
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", raw[16:24])
    return width, height


def _generate(prompt: str) -> None:
    bpy.context.scene.llm3d.prompt = prompt
    assert bpy.ops.mesh.llm3d_generate() == {"FINISHED"}
    drain_until_done(bpy.context.scene.name)


def _dimensions() -> tuple[float, ...]:
    (obj,) = bpy.context.scene.llm3d.collection.all_objects
    return tuple(round(v, 3) for v in obj.dimensions)


def test_refine_can_send_a_render_of_the_current_result(
    addon: Any, chat_server: ChatServer, tmp_path: Path
) -> None:
    chat_server.answers = [CUBE_PROGRAM, TALL_PROGRAM]
    settings = bpy.context.scene.llm3d
    _generate("a box with a knob")
    settings.refine_prompt = "make it a tall tower"
    assert not settings.refine_render  # optional: off by default
    settings.refine_render = True
    assert bpy.ops.mesh.llm3d_refine() == {"FINISHED"}
    drain_until_done(bpy.context.scene.name)

    assert settings.status.startswith("Done"), settings.status
    ask = chat_server.requests[1]["messages"][-1]
    image, text = ask["content"]
    assert "make it a tall tower" in text["text"]
    assert "render of what the current program builds" in text["text"]
    head, data = image["image_url"]["url"].split(",", 1)
    assert head == "data:image/png;base64"
    raw = base64.b64decode(data)
    assert _png_size(raw) == (384, 384)
    path = tmp_path / "render.png"
    path.write_bytes(raw)
    assert 0.02 < _object_share(_png_pixels(path)) < 0.9  # the box shows on the background
    assert not list(Path(tempfile.gettempdir()).glob("llm3d-images-*"))  # cleaned up


def test_refine_render_without_a_result_says_what_to_do(
    addon: Any, chat_server: ChatServer
) -> None:
    settings = bpy.context.scene.llm3d
    settings.text = bpy.data.texts.new("llm3d hand written.py")
    settings.text.from_string(CUBE_PROGRAM)
    settings.refine_prompt = "thinner"
    settings.refine_render = True
    with pytest.raises(RuntimeError, match="no result to render; press Run first"):
        bpy.ops.mesh.llm3d_refine()
    assert not chat_server.requests


@pytest.fixture
def camera_on_cube() -> Any:
    """A cube at the origin and the active camera looking at it."""
    scene = bpy.context.scene
    mesh = bpy.data.meshes.new("view test cube")
    mesh.from_pydata(
        [(x, y, z) for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)],
        [],
        [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)],
    )
    cube = bpy.data.objects.new("view test cube", mesh)
    camera = bpy.data.objects.new("view test camera", bpy.data.cameras.new("view test camera"))
    camera.location = (4.0, -4.0, 3.0)
    camera.rotation_euler = (-camera.location).to_track_quat("-Z", "Y").to_euler()  # type: ignore[operator]
    for obj in (cube, camera):
        scene.collection.objects.link(obj)
    previous = scene.camera
    scene.camera = camera
    yield cube
    scene.camera = previous
    bpy.data.objects.remove(cube)
    bpy.data.objects.remove(camera)
    bpy.data.meshes.remove(mesh)


def test_use_current_view_adds_a_render_of_the_camera(
    addon: Any, chat_server: ChatServer, camera_on_cube: Any
) -> None:
    chat_server.answers = [CUBE_PROGRAM]
    scene = bpy.context.scene
    render = scene.render
    before = (render.engine, render.resolution_x, render.resolution_y, render.filepath)
    settings = scene.llm3d
    assert bpy.ops.mesh.llm3d_add_view() == {"FINISHED"}

    (item,) = settings.images
    path = Path(item.path)
    assert path.is_file() and item.name.startswith("camera view test camera")
    pixels = _png_pixels(path)
    assert pixels.shape[:2] == (432, 768)  # the camera's 16:9, 768 px on the longer side
    assert _object_share(pixels) > 0.02
    centre = pixels[216, 384, :3]  # the camera looks at the cube
    assert np.abs(centre - pixels[0, 0, :3]).max() > 0.05
    # the artist's render settings are back
    assert (render.engine, render.resolution_x, render.resolution_y, render.filepath) == before

    # the same downscaling as any other image when it is sent
    bpy.context.preferences.addons["addon"].preferences.image_size = 256
    _generate("this cube")
    part = chat_server.requests[0]["messages"][1]["content"][0]
    raw = base64.b64decode(part["image_url"]["url"].split(",", 1)[1])
    assert _png_size(raw) == (256, 144)
    path.unlink()


def test_use_current_view_without_camera_or_view_says_what_to_do(addon: Any) -> None:
    scene = bpy.context.scene
    previous = scene.camera
    scene.camera = None
    try:
        with pytest.raises(RuntimeError, match=r"add a camera to the scene \(Add > Camera\)"):
            bpy.ops.mesh.llm3d_add_view()
    finally:
        scene.camera = previous
    assert not scene.llm3d.images


def test_history_keeps_each_attempt_restores_one_and_survives_reopening(
    addon: Any, chat_server: ChatServer, tmp_path: Path
) -> None:
    chat_server.answers = [CUBE_PROGRAM, TALL_PROGRAM]
    _generate("a box with a knob")
    first = _dimensions()
    _generate("a tall tower")
    second = _dimensions()
    assert first != second

    settings = bpy.context.scene.llm3d
    assert [(h.kind, h.prompt, h.ok) for h in settings.history] == [
        ("Generate", "a box with a knob", True),
        ("Generate", "a tall tower", True),
    ]
    assert [h.code for h in settings.history] == [CUBE_PROGRAM, TALL_PROGRAM]
    for entry in settings.history:
        assert entry.when  # e.g. 2026-12-03 15:04:05
        image = entry.thumbnail
        assert image is not None and image.packed_file is not None
        assert tuple(image.size) == (128, 128)
        assert 0.02 < _object_share(_pixels(image)) < 0.9
    thumbnails = [_pixels(h.thumbnail) for h in settings.history]
    assert np.abs(thumbnails[0] - thumbnails[1]).max() > 0.1  # two different objects

    # Restore the first: its program and object come back in place, as one undo step
    assert bpy.ops.mesh.llm3d_restore(index=0) == {"FINISHED"}
    drain_until_done(bpy.context.scene.name)
    settings = bpy.context.scene.llm3d
    assert settings.status.startswith("Ran"), settings.status
    assert _dimensions() == first
    assert settings.text.as_string() == CUBE_PROGRAM
    assert len(settings.history) == 2 and settings.history_index == 0  # not added twice
    with bpy.context.temp_override(window=_window()):
        bpy.ops.ed.undo()
    settings = bpy.context.scene.llm3d
    assert _dimensions() == second
    assert settings.text.as_string() == TALL_PROGRAM

    # saved and opened again: the history, its programs and its pictures are in the file
    path = tmp_path / "history.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path), copy=True)
    bpy.ops.wm.open_mainfile(filepath=str(path))
    settings = bpy.context.scene.llm3d
    assert [h.code for h in settings.history] == [CUBE_PROGRAM, TALL_PROGRAM]
    for entry, before in zip(settings.history, thumbnails, strict=True):
        assert entry.thumbnail is not None and entry.thumbnail.packed_file is not None
        assert np.abs(_pixels(entry.thumbnail) - before).max() < 1e-6


def test_history_is_bounded_and_keeps_failures(addon: Any, chat_server: ChatServer) -> None:
    programs = [CUBE_PROGRAM, TALL_PROGRAM, CUBE_PROGRAM.replace("0.6", "0.9")]
    chat_server.answers = list(programs)
    bpy.context.preferences.addons["addon"].preferences.history_size = 2
    for i in range(3):
        _generate(f"object {i}")
    settings = bpy.context.scene.llm3d
    assert [h.prompt for h in settings.history] == ["object 1", "object 2"]
    thumbnails = [i for i in bpy.data.images if i.name.startswith("llm3d thumbnail")]
    assert len(thumbnails) == 2  # the dropped entry's picture went with it

    settings.text.from_string("from bpy_lib import *\nbox(size=[1, 1])\nexport_scene()\n")
    bpy.ops.mesh.llm3d_run()
    drain_until_done(bpy.context.scene.name)
    last = settings.history[-1]
    assert (last.kind, last.ok, last.thumbnail) == ("Run", False, None)
    assert "size" in last.error
    assert [h.prompt for h in settings.history] == ["object 2", ""]


def test_history_rows_show_the_thumbnail_or_the_failure(addon: Any) -> None:
    from addon import history
    from tests.addon.test_register_ui import StubLayout

    rows: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
    built = SimpleNamespace(name="Generate 15:04: a box", ok=True, thumbnail=None)
    failed = SimpleNamespace(name="Run 15:05", ok=False, thumbnail=None)
    for index, item in enumerate((built, failed)):
        history.LLM3D_UL_history.draw_item(
            None,  # type: ignore[arg-type]
            bpy.context,
            StubLayout(rows),  # type: ignore[arg-type]
            None,
            item,
            0,
            None,
            "",
            index,
        )
    labels = [(kw["text"], kw["icon"]) for name, _, kw in rows if name == "label"]
    assert labels == [("Generate 15:04: a box", "MESH_DATA"), ("Run 15:05 (failed)", "CANCEL")]
    restores = [args[0] for name, args, _ in rows if name == "operator"]
    assert restores == ["mesh.llm3d_restore"] * 2
