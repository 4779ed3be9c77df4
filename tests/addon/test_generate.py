"""Generate, Cancel, the repair loop, hostile answers, Run and Score, in real Blender.

The operators run against a local chat-completions server; the timer function is called
directly (timers do not fire without Blender's UI loop).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import bpy
import pytest

from tests.addon.conftest import CUBE_PROGRAM, MODEL, ChatServer, drain_until_done

pytestmark = pytest.mark.blender


def _add_images(paths: list[Path]) -> None:
    result = bpy.ops.mesh.llm3d_add_images(
        directory=str(paths[0].parent), files=[{"name": p.name} for p in paths]
    )
    assert result == {"FINISHED"}


def _window() -> Any:
    return bpy.context.window_manager.windows[0]


def _parts(collection: bpy.types.Collection) -> list[str]:
    return sorted(o.name for o in collection.all_objects)


def _fenced(code: str) -> str:
    return f"Here is the program:\n```python\n{code}```\nIt builds a mug."


def test_generate_builds_object_text_block_and_one_undo_step(
    addon: Any, chat_server: ChatServer, images: list[Path]
) -> None:
    chat_server.answers = [_fenced(CUBE_PROGRAM)]
    scene = bpy.context.scene
    settings = scene.llm3d
    _add_images(images)
    assert [i.name for i in settings.images] == ["mug_front.png", "mug_side.png"]
    with bpy.context.temp_override(window=_window()):
        bpy.ops.ed.undo_push(message="before generate")
    objects_before = {o.name for o in bpy.data.objects}

    assert bpy.ops.mesh.llm3d_generate() == {"FINISHED"}
    assert settings.busy
    drain_until_done(scene.name)

    assert not settings.busy, settings.status
    assert settings.status.startswith("Done: 1 part in"), settings.status
    collection = settings.collection
    assert collection.name == "llm3d mug_front+mug_side"
    assert collection.name in scene.collection.children
    # the sandbox hands back one mesh (every part's triangles), built as one object
    assert _parts(collection) == ["mug_front+mug_side"]
    mesh = bpy.data.objects["mug_front+mug_side"].data
    assert len(mesh.polygons) > 12 and len(mesh.vertices) > 8  # the body and the knob
    assert settings.text.name == "llm3d mug_front+mug_side.py"
    assert settings.text.as_string() == CUBE_PROGRAM
    assert [(a.number, a.ok) for a in settings.attempts] == [(1, True)]
    # the artist's objects are untouched; only the result is new
    assert {o.name for o in bpy.data.objects} - objects_before == {"mug_front+mug_side"}
    assert objects_before <= {o.name for o in bpy.data.objects}

    # the request: system prompt with the bpy_lib reference, both images as base64 data URLs
    (request,) = chat_server.requests
    assert request["model"] == MODEL
    assert request["_auth"] == "Bearer sk-test-key"
    system, user = request["messages"]
    assert system["role"] == "system" and "export_scene" in system["content"]
    urls = [p["image_url"]["url"] for p in user["content"] if p["type"] == "image_url"]
    assert [base64.b64decode(u.split(",", 1)[1]) for u in urls] == [p.read_bytes() for p in images]
    assert all(u.startswith("data:image/png;base64,") for u in urls)

    # the whole result is one undo step: one undo removes parts, collection and text
    with bpy.context.temp_override(window=_window()):
        bpy.ops.ed.undo()
    assert {o.name for o in bpy.data.objects} == objects_before
    assert bpy.data.collections.get("llm3d mug_front+mug_side") is None
    assert bpy.data.texts.get("llm3d mug_front+mug_side.py") is None


def test_second_generate_keeps_the_first_result(
    addon: Any, chat_server: ChatServer, images: list[Path]
) -> None:
    chat_server.answers = [CUBE_PROGRAM]
    scene = bpy.context.scene
    scene.llm3d.results = "KEEP"  # Keep All; Replace Previous is in test_results.py
    _add_images(images)
    bpy.ops.mesh.llm3d_generate()
    drain_until_done(scene.name)
    first = scene.llm3d.collection
    bpy.ops.mesh.llm3d_generate()
    drain_until_done(scene.name)
    second = scene.llm3d.collection
    assert first.name != second.name
    assert _parts(first) == ["mug_front+mug_side"]  # the earlier result stays
    assert _parts(second) == ["mug_front+mug_side.001"]


def test_repair_loop_sends_the_error_back_and_stops_after_n_attempts(
    addon: Any, chat_server: ChatServer, images: list[Path]
) -> None:
    broken = "from bpy_lib import *\n# part_1: body\nbox(size=[1, 1, 1])\nx = 1 / 0\n"
    chat_server.answers = [broken]
    bpy.context.preferences.addons["addon"].preferences.max_repairs = 2
    scene = bpy.context.scene
    settings = scene.llm3d
    _add_images(images)
    bpy.ops.mesh.llm3d_generate()
    drain_until_done(scene.name)

    assert len(chat_server.requests) == 3  # 1 + 2 repairs, then it stops
    assert [(a.number, a.ok) for a in settings.attempts] == [(1, False), (2, False), (3, False)]
    assert all("ZeroDivisionError" in a.error and "(line 4)" in a.error for a in settings.attempts)
    assert settings.status.startswith("Failed after 3 attempts"), settings.status
    assert "ZeroDivisionError" in settings.error
    # each repair request carries the failed program and its error
    repair = chat_server.requests[1]["messages"]
    assert repair[-2] == {"role": "assistant", "content": broken}
    assert "ZeroDivisionError: division by zero (line 4)" in repair[-1]["content"]
    assert len(chat_server.requests[2]["messages"]) == len(repair) + 2
    # nothing half-built is left; the program stays in its text block to be fixed
    assert settings.collection is None
    assert not [o for o in bpy.data.objects if o.get("bpy_lib_kind")]
    assert settings.text.as_string() == broken


def test_repair_loop_succeeds_on_the_second_attempt(
    addon: Any, chat_server: ChatServer, images: list[Path]
) -> None:
    chat_server.answers = [
        "from bpy_lib import *\nbox(size=[1, 1, 1], colour='red')\n",
        CUBE_PROGRAM,
    ]
    scene = bpy.context.scene
    settings = scene.llm3d
    _add_images(images)
    bpy.ops.mesh.llm3d_generate()
    drain_until_done(scene.name)
    assert [(a.number, a.ok) for a in settings.attempts] == [(1, False), (2, True)]
    assert "colour" in settings.attempts[0].error
    assert _parts(settings.collection) == ["mug_front+mug_side"]
    assert settings.status.endswith("(attempt 2/3)."), settings.status


def test_zero_repairs_means_one_attempt(
    addon: Any, chat_server: ChatServer, images: list[Path]
) -> None:
    chat_server.answers = ["from bpy_lib import *\nundefined_call()\n"]
    bpy.context.preferences.addons["addon"].preferences.max_repairs = 0
    _add_images(images)
    bpy.ops.mesh.llm3d_generate()
    drain_until_done(bpy.context.scene.name)
    assert len(chat_server.requests) == 1
    assert "NameError" in bpy.context.scene.llm3d.error


@pytest.mark.parametrize(
    ("program", "rule"),
    [
        ("from bpy_lib import *\nimport os\nos.system('touch {marker}')\n", "import"),
        ("from bpy_lib import *\nopen('{marker}', 'w').write('x')\n", "forbidden_name"),
        ("from bpy_lib import *\nimport bpy\nbpy.ops.wm.quit_blender()\n", "import"),
        (
            "from bpy_lib import *\n().__class__.__base__.__subclasses__()\n",
            "private_name",
        ),
        ("from bpy_lib import *\n__import__('os').system('touch {marker}')\n", "private_name"),
    ],
)
def test_hostile_answers_are_refused(
    addon: Any, chat_server: ChatServer, images: list[Path], tmp_path: Path, program: str, rule: str
) -> None:
    marker = tmp_path / "pwned"
    chat_server.answers = [program.format(marker=marker)]
    bpy.context.preferences.addons["addon"].preferences.max_repairs = 0
    settings = bpy.context.scene.llm3d
    _add_images(images)
    bpy.ops.mesh.llm3d_generate()
    drain_until_done(bpy.context.scene.name)
    assert settings.error.startswith("refused by sandbox policy"), settings.error
    assert f"[{rule}" in settings.error
    assert not marker.exists()
    assert bpy.ops.wm.quit_blender.poll() is not None  # Blender is still here
    assert not [o for o in bpy.data.objects if o.get("bpy_lib_kind")]


def test_cancel_stops_the_job_and_drops_the_late_answer(
    addon: Any, chat_server: ChatServer, images: list[Path]
) -> None:
    from addon import jobs

    chat_server.answers = [CUBE_PROGRAM]
    chat_server.hold.clear()  # the server keeps the request open
    scene = bpy.context.scene
    settings = scene.llm3d
    _add_images(images)
    bpy.ops.mesh.llm3d_generate()
    job = jobs.active_job(scene)
    assert job is not None
    assert jobs.drain(scene.name) == jobs.DRAIN_INTERVAL_S
    assert settings.status.startswith(f"Waiting for {MODEL}"), settings.status
    assert not bpy.ops.mesh.llm3d_generate.poll()  # one job at a time

    assert bpy.ops.mesh.llm3d_cancel() == {"FINISHED"}
    assert settings.status.startswith("Cancelled"), settings.status
    assert not settings.busy
    assert jobs.active_job(scene) is None
    assert jobs.drain(scene.name) is None  # the timer stops
    chat_server.hold.set()  # the answer arrives after Cancel
    assert job.thread is not None
    job.thread.join(timeout=10)
    assert jobs.drain(scene.name) is None
    assert settings.collection is None
    assert not [o for o in bpy.data.objects if o.get("bpy_lib_kind")]
    assert bpy.ops.mesh.llm3d_generate.poll()


def test_endpoint_errors_reach_the_panel(
    addon: Any, chat_server: ChatServer, images: list[Path]
) -> None:
    chat_server.status = 503
    settings = bpy.context.scene.llm3d
    _add_images(images)
    bpy.ops.mesh.llm3d_generate()
    drain_until_done(bpy.context.scene.name)
    assert "HTTP 503" in settings.error and "model overloaded" in settings.error
    assert settings.status == "The model request failed."
    assert len(chat_server.requests) == 1  # a server error is not a program to repair


def test_remote_endpoint_needs_online_access(addon: Any, images: list[Path]) -> None:
    assert not bpy.app.online_access  # the bpy wheel runs offline
    bpy.context.preferences.addons["addon"].preferences.endpoint_url = "https://api.example.com/v1"
    _add_images(images)
    with pytest.raises(RuntimeError, match="Online access"):
        bpy.ops.mesh.llm3d_generate()
    assert bpy.context.scene.llm3d.attempts.values() == []


def test_generate_needs_images(addon: Any) -> None:
    assert not bpy.ops.mesh.llm3d_generate.poll()


def test_run_reexecutes_the_edited_program(
    addon: Any, chat_server: ChatServer, images: list[Path]
) -> None:
    from addon import jobs

    chat_server.answers = [CUBE_PROGRAM]
    scene = bpy.context.scene
    settings = scene.llm3d
    _add_images(images)
    bpy.ops.mesh.llm3d_generate()
    drain_until_done(scene.name)
    collection = settings.collection
    (result,) = _parts(collection)

    settings.text.from_string(CUBE_PROGRAM.replace("0.6, 0.4, 0.2", "1.2, 0.4, 0.2"))
    assert bpy.ops.mesh.llm3d_run() == {"FINISHED"}  # returns at once; the run goes on
    assert jobs.active_job(scene) is not None
    assert not bpy.ops.mesh.llm3d_run.poll() and bpy.ops.mesh.llm3d_cancel.poll()
    drain_until_done(scene.name)
    assert settings.status.startswith(f"Ran '{settings.text.name}': 1 part"), settings.status
    assert settings.collection == collection
    assert _parts(collection) == [result]
    assert bpy.data.objects[result].dimensions.x == pytest.approx(1.2)
    assert [(a.number, a.ok) for a in settings.attempts] == [(1, True)]  # Generate's list stays

    settings.text.from_string(
        "from bpy_lib import *\nbox(size=[1, 1, 1])\nmove('nope', offset=[0, 0, 1])\n"
    )
    assert bpy.ops.mesh.llm3d_run() == {"FINISHED"}
    drain_until_done(scene.name)
    assert settings.status.startswith("Run failed: "), settings.status
    assert "no part or curve named 'nope'" in settings.error and "(line 3)" in settings.error
    assert _parts(collection) == [result]  # a failed Run keeps the last result
    assert bpy.data.objects[result].dimensions.x == pytest.approx(1.2)


def test_score_compares_with_the_reference(
    addon: Any, chat_server: ChatServer, images: list[Path]
) -> None:
    from addon.runner import run_program

    chat_server.answers = [CUBE_PROGRAM]
    scene = bpy.context.scene
    settings = scene.llm3d
    _add_images(images)
    bpy.ops.mesh.llm3d_generate()
    drain_until_done(scene.name)
    assert not bpy.ops.mesh.llm3d_score.poll()  # no reference yet

    # the reference: the body alone, built by the same call in its own collection
    reference_coll = bpy.data.collections.new("llm3d reference")
    scene.collection.children.link(reference_coll)
    body_only = "from bpy_lib import *\nbox(size=[0.6, 0.4, 0.2], name='body')\n"
    made = run_program(body_only, reference_coll)
    assert made.ok and made.objects == ["reference"]
    settings.reference = bpy.data.objects["reference"]
    settings.score_points = 5000
    assert bpy.ops.mesh.llm3d_score() == {"FINISHED"}
    assert settings.has_score
    # the result has a knob the reference lacks: recall 1, precision < 1
    assert 0.5 < settings.f_score < 1.0
    assert settings.chamfer > 1e-6

    # without the knob the result is the reference exactly
    assert run_program(body_only, settings.collection).ok
    assert bpy.ops.mesh.llm3d_score() == {"FINISHED"}
    # independent samples of the two (DESIGN §3): the sampling floor, not 0
    assert settings.f_score >= 0.95
    assert 0.0 < settings.chamfer < 1e-3


def test_a_bug_while_delivering_ends_the_job_with_its_message(
    addon: Any, chat_server: ChatServer, images: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from addon import jobs

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk full")

    monkeypatch.setattr(jobs, "build_result", broken)
    chat_server.answers = [CUBE_PROGRAM]
    scene = bpy.context.scene
    _add_images(images)
    bpy.ops.mesh.llm3d_generate()
    drain_until_done(scene.name)
    assert scene.llm3d.status == "Failed."
    assert scene.llm3d.error == "RuntimeError: disk full"
    assert jobs.active_job(scene) is None
    assert bpy.ops.mesh.llm3d_generate.poll()  # the artist can try again


def test_a_job_whose_scene_is_gone_stops(addon: Any, chat_server: ChatServer) -> None:
    from addon import jobs, operators, preferences

    chat_server.hold.clear()
    scene = bpy.data.scenes.new("llm3d doomed")
    job = jobs.Job(
        client=preferences.get_settings(bpy.context).client(),
        system=operators.system_prompt(),
        images=[],
        max_attempts=1,
        label="llm3d x",
    )
    job.messages = [{"role": "user", "content": "hi"}]
    jobs.start_job(scene, job, register_timer=False)
    bpy.data.scenes.remove(scene)
    assert jobs.drain("llm3d doomed") is None
    assert job.cancel.is_set()
