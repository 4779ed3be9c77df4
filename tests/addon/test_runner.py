"""Running programs: in the sandbox (the default) the artist's scene gets only the mesh;
with Trusted Execution in the artist's Blender, in a temporary scene, with a watchdog."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bpy
import pytest

from addon.runner import run_program

pytestmark = pytest.mark.blender


@pytest.fixture
def target(addon: Any) -> Iterator[bpy.types.Collection]:
    """An empty result collection under the scene, beside an object of the artist's."""
    collection = bpy.data.collections.new("llm3d test result")
    scene = bpy.context.scene
    scene.collection.children.link(collection)
    artist = bpy.data.objects.new("Artist Cube", bpy.data.meshes.new("Artist Cube"))
    scene.collection.objects.link(artist)
    yield collection
    bpy.data.objects.remove(artist)


def _artist_objects() -> set[str]:
    return {o.name for o in bpy.data.objects if o.get("bpy_lib_kind") is None}


def test_clear_scene_and_export_only_touch_the_program(
    target: bpy.types.Collection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    artist = _artist_objects()
    assert "Artist Cube" in artist
    code = (
        "from bpy_lib import *\n"
        "clear_scene()\n"
        "box(size=[1, 1, 1], name='a')\n"
        "clear_scene()\n"
        "box(size=[0.5, 0.5, 0.5], name='b')\n"
        "v, f = export_scene('out.obj')\n"
        "assert len(f) == 12\n"
    )
    for trusted in (False, True):
        outcome = run_program(code, target, trusted=trusted)
        assert outcome.ok, outcome.error
        assert outcome.objects == (["b"] if trusted else ["test result"])
        assert len(bpy.data.objects[outcome.objects[0]].data.polygons) in (6, 12)  # b only
        assert _artist_objects() == artist
        assert not list(tmp_path.iterdir())  # export_scene wrote no file here
        assert len(bpy.data.scenes) == 1  # the temporary scene is gone


def test_modifiers_and_booleans_work_in_the_temporary_scene(
    target: bpy.types.Collection,
) -> None:
    code = (
        "from bpy_lib import *\n"
        "a = box(size=[1, 1, 1], name='a')\n"
        "h = cylinder(radius=0.2, depth=2, name='h')\n"
        "difference(a, h)\n"
        "bevel(a, width=0.05)\n"
        "c = circle(radius=0.3)\n"
        "export_scene()\n"
    )
    outcome = run_program(code, target)
    assert outcome.ok, outcome.error
    assert outcome.objects == ["test result"]  # the curve is an input, not a result
    body = bpy.data.objects["test result"]
    assert len(body.data.polygons) > 2 * (6 + 32)  # beveled edges and the hole's wall
    assert body.dimensions.x == pytest.approx(1.0, abs=1e-4)
    assert body.get("bpy_lib_kind") == "part"


def test_the_sandbox_time_limit_is_a_hard_kill(target: bpy.types.Collection) -> None:
    code = "from bpy_lib import *\nwhile True:\n    try:\n        pass\n    except:\n        pass\n"
    outcome = run_program(code, target, timeout_s=1.0)
    assert not outcome.ok
    assert outcome.error.startswith("TimeoutError: the program did not finish within 1 s")
    assert "Program Time Limit" in outcome.error  # what to do about it
    assert 1.0 <= outcome.seconds < 5


def test_a_runaway_trusted_program_is_stopped(target: bpy.types.Collection) -> None:
    code = "from bpy_lib import *\nwhile True:\n    pass\n"
    outcome = run_program(code, target, timeout_s=0.5, trusted=True)
    assert not outcome.ok
    assert outcome.error.startswith("ProgramTimeoutError")
    assert outcome.error.endswith(("(line 2)", "(line 3)"))
    assert 0.5 <= outcome.seconds < 5


def test_a_trusted_program_that_swallows_the_timeout_is_still_stopped(
    target: bpy.types.Collection,
) -> None:
    code = (
        "from bpy_lib import *\n"
        "while True:\n"
        "    try:\n"
        "        while True:\n"
        "            pass\n"
        "    except:\n"
        "        pass\n"
    )
    tracer = sys.gettrace()
    outcome = run_program(code, target, timeout_s=0.3, trusted=True)
    assert outcome.error.startswith("ProgramTimeoutError"), outcome.error
    assert outcome.seconds < 5
    assert sys.gettrace() is tracer  # the line tracer is off again
    assert run_program("from bpy_lib import *\nbox(size=[1, 1, 1])\n", target, trusted=True).ok


def test_no_geometry_is_a_failure(target: bpy.types.Collection) -> None:
    for trusted in (False, True):
        outcome = run_program(
            "from bpy_lib import *\ncircle(radius=0.3)\n", target, trusted=trusted
        )
        assert not outcome.ok and "no part with faces" in outcome.error
        assert not [o for o in bpy.data.objects if o.get("bpy_lib_kind")]


def test_syntax_errors_are_failures_not_refusals(target: bpy.types.Collection) -> None:
    outcome = run_program("from bpy_lib import *\nbox(size=[1, 1, 1]\n", target)
    assert not outcome.ok and not outcome.refused
    assert "SyntaxError" in outcome.error and "(line 2)" in outcome.error


def test_a_program_without_bpy_lib_is_refused(target: bpy.types.Collection) -> None:
    outcome = run_program("x = 1\n", target)
    assert outcome.refused and "does not import bpy_lib" in outcome.error


def test_trusted_execution_skips_the_policy_but_keeps_the_scene_safe(
    target: bpy.types.Collection,
) -> None:
    code = (
        "import random\n"
        "from bpy_lib import *\n"
        "from bpy_lib import export\n"
        "clear_scene()\n"
        "box(size=[random.uniform(0.5, 0.6)] * 3, name='r')\n"
        "assert len(export.scene_arrays()[1]) == 12\n"
    )
    artist = _artist_objects()
    assert run_program(code, target).refused
    outcome = run_program(code, target, trusted=True)
    assert outcome.ok, outcome.error
    assert outcome.objects == ["r"]  # in-process runs keep the program's parts and names
    assert _artist_objects() == artist
    import bpy_lib

    assert hasattr(bpy_lib, "primitives")  # the real module is back in sys.modules


def test_a_failed_run_keeps_the_previous_result(target: bpy.types.Collection) -> None:
    assert run_program("from bpy_lib import *\nbox(size=[1, 1, 1], name='keep')\n", target).ok
    failed = run_program("from bpy_lib import *\nbox(size=[1, 1, 1], name='x')\n1 / 0\n", target)
    assert not failed.ok
    assert failed.error == "ZeroDivisionError: division by zero (line 3)"
    assert sorted(o.name for o in target.all_objects) == ["test result"]
    assert "x" not in bpy.data.objects
