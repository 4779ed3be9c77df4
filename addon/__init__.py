"""llm3d Image to Code: reference images in, a bpy_lib program and an object out.

A Blender 4.2+ extension (``blender_manifest.toml``). The panel lives in the 3D viewport's
sidebar, tab "llm3d". The model is any OpenAI-compatible chat-completions endpoint (see the
add-on preferences); its program runs out of this Blender, in the reward farm's sandbox
(:mod:`addon.background`), and only the mesh comes back.
"""

from __future__ import annotations

# isort: split
# First: puts the bundled bpy_lib/worker on sys.path before anything imports them.
from . import _bundle  # noqa: F401

# isort: split
from collections.abc import Callable
from typing import Any

import bpy

from . import background, history, jobs, operators, operators_views, preferences, ui

__all__ = ["LLM3D_PG_settings", "classes", "register", "unregister"]


def _is_mesh(_self: Any, obj: bpy.types.Object) -> bool:
    return obj.type == "MESH"


class LLM3D_PG_image(bpy.types.PropertyGroup):
    """One reference image (``name`` is its file name)."""

    path: bpy.props.StringProperty(name="Path", subtype="FILE_PATH")  # type: ignore[valid-type]


class LLM3D_PG_attempt(bpy.types.PropertyGroup):
    """One attempt of a Generate: its program and its outcome."""

    number: bpy.props.IntProperty(name="Attempt")  # type: ignore[valid-type]
    ok: bpy.props.BoolProperty(name="Succeeded")  # type: ignore[valid-type]
    error: bpy.props.StringProperty(name="Error")  # type: ignore[valid-type]
    code: bpy.props.StringProperty(name="Program")  # type: ignore[valid-type]


class LLM3D_PG_candidate(bpy.types.PropertyGroup):
    """One candidate of a Generate with Candidates > 1: its program, outcome and match."""

    number: bpy.props.IntProperty(name="Candidate")  # type: ignore[valid-type]
    ok: bpy.props.BoolProperty(name="Built")  # type: ignore[valid-type]
    error: bpy.props.StringProperty(name="Error")  # type: ignore[valid-type]
    code: bpy.props.StringProperty(name="Program")  # type: ignore[valid-type]
    has_score: bpy.props.BoolProperty(default=False)  # type: ignore[valid-type]
    score: bpy.props.FloatProperty(name="Match")  # type: ignore[valid-type]
    kept: bpy.props.BoolProperty(name="In the Scene")  # type: ignore[valid-type]


class LLM3D_PG_settings(bpy.types.PropertyGroup):
    """The panel's state, one per scene (``scene.llm3d``)."""

    images: bpy.props.CollectionProperty(type=LLM3D_PG_image)  # type: ignore[valid-type]
    image_index: bpy.props.IntProperty(name="Image", default=0)  # type: ignore[valid-type]
    attempts: bpy.props.CollectionProperty(type=LLM3D_PG_attempt)  # type: ignore[valid-type]
    attempt_index: bpy.props.IntProperty(name="Attempt", default=0)  # type: ignore[valid-type]
    candidates: bpy.props.CollectionProperty(type=LLM3D_PG_candidate)  # type: ignore[valid-type]
    candidate_index: bpy.props.IntProperty(name="Candidate", default=0)  # type: ignore[valid-type]
    candidate_note: bpy.props.StringProperty(name="Candidates")  # type: ignore[valid-type]
    busy: bpy.props.BoolProperty(name="Busy", default=False)  # type: ignore[valid-type]
    status: bpy.props.StringProperty(name="Status")  # type: ignore[valid-type]
    warning: bpy.props.StringProperty(name="Warning")  # type: ignore[valid-type]
    prompt: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Prompt",
        description=(
            "Sent with the images ('only the chair', 'lower poly'); without images it "
            "describes the object (text to code)"
        ),
    )
    last_prompt: bpy.props.StringProperty(name="Last Prompt")  # type: ignore[valid-type]
    results: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Results",
        items=[
            ("REPLACE", "Replace Previous", "Generate rebuilds the last result and its program"),
            ("KEEP", "Keep All", "Each Generate adds a new collection and text block"),
        ],
        default="REPLACE",
    )
    origin: bpy.props.FloatVectorProperty(  # type: ignore[valid-type]
        name="Origin",
        description="Where the result stands (the 3D cursor at the last Generate)",
        size=3,
        subtype="TRANSLATION",
    )
    refine_prompt: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Change",
        description="What Refine asks the model to change in the current program",
    )
    refine_render: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Include Render",
        description="Send a render of the current result with Refine, so the model sees "
        "what its program builds",
        default=False,
    )
    history: bpy.props.CollectionProperty(type=history.LLM3D_PG_history)  # type: ignore[valid-type]
    history_index: bpy.props.IntProperty(name="History", default=0)  # type: ignore[valid-type]
    error: bpy.props.StringProperty(name="Error")  # type: ignore[valid-type]
    text: bpy.props.PointerProperty(  # type: ignore[valid-type]
        name="Program", type=bpy.types.Text, description="The program; edit it, then Run"
    )
    collection: bpy.props.PointerProperty(  # type: ignore[valid-type]
        name="Result", type=bpy.types.Collection, description="Where Run puts the parts"
    )
    reference: bpy.props.PointerProperty(  # type: ignore[valid-type]
        name="Reference",
        type=bpy.types.Object,
        poll=_is_mesh,
        description="The mesh Score compares the result with (the ground truth)",
    )
    score_points: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Points",
        description="Surface samples on each mesh (10 000 = the training reward's count)",
        default=10_000,
        min=1_000,
        max=200_000,
    )
    has_score: bpy.props.BoolProperty(default=False)  # type: ignore[valid-type]
    f_score: bpy.props.FloatProperty(name="F@0.05")  # type: ignore[valid-type]
    chamfer: bpy.props.FloatProperty(name="Chamfer-L2")  # type: ignore[valid-type]


classes: tuple[type, ...] = (
    LLM3D_PG_image,
    LLM3D_PG_attempt,
    history.LLM3D_PG_history,
    LLM3D_PG_candidate,
    LLM3D_PG_settings,
    preferences.LLM3D_AddonPreferences,
    preferences.MESH_OT_llm3d_test_connection,
    preferences.MESH_OT_llm3d_pick_model,
    operators.MESH_OT_llm3d_add_images,
    operators.MESH_OT_llm3d_remove_image,
    operators.MESH_OT_llm3d_generate,
    operators.MESH_OT_llm3d_refine,
    operators.MESH_OT_llm3d_cancel,
    operators.MESH_OT_llm3d_run,
    operators.MESH_OT_llm3d_score,
    operators_views.MESH_OT_llm3d_add_view,
    operators_views.MESH_OT_llm3d_restore,
    ui.LLM3D_UL_images,
    ui.LLM3D_UL_attempts,
    history.LLM3D_UL_history,
    operators.MESH_OT_llm3d_use_candidate,
    ui.LLM3D_UL_candidates,
    ui.VIEW3D_PT_llm3d_image_to_code,
)


def _cancel_jobs(*_args: Any) -> None:
    """Opening another file ends running jobs (their answers would land in the wrong file)."""
    jobs.cancel_all()


def _clear_stale(*_args: Any) -> None:
    """After a file loads, no scene says a request is running (it was saved mid-request)."""
    jobs.clear_stale_state()


#: Kept across file loads (``persistent``), so they see every load.
_cancel_on_load: Callable[..., None] = bpy.app.handlers.persistent(_cancel_jobs)
_clear_after_load: Callable[..., None] = bpy.app.handlers.persistent(_clear_stale)


def register() -> None:
    """Register the classes, ``Scene.llm3d`` and the file-load handler."""
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.app.handlers.load_pre.append(_cancel_on_load)
    bpy.app.handlers.load_post.append(_clear_after_load)
    bpy.types.Scene.llm3d = bpy.props.PointerProperty(type=LLM3D_PG_settings)  # type: ignore[attr-defined,func-returns-value]


def unregister() -> None:
    """Cancel running jobs, stop the sandbox, drop thumbnails, unregister in reverse order."""
    jobs.cancel_all()
    background.shutdown()  # the background Blender and any program in it
    preferences.stop_polling()
    ui.free_previews()
    if _cancel_on_load in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_cancel_on_load)
    if _clear_after_load in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(_clear_after_load)
    del bpy.types.Scene.llm3d  # type: ignore[attr-defined]
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
