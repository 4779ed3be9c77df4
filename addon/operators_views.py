"""Operators of the artist's view and the history: Use Current View, Restore."""

from __future__ import annotations

from typing import Any

import bpy

from . import jobs, live
from ._typing import OperatorResult
from .operators import start_run
from .snapshots import RenderUnavailableError, render_view, views_dir

__all__ = ["MESH_OT_llm3d_add_view", "MESH_OT_llm3d_restore"]


def _settings(context: bpy.types.Context) -> Any:
    scene: Any = context.scene
    return scene.llm3d if scene is not None else None


class MESH_OT_llm3d_add_view(bpy.types.Operator):
    """Add a render of the 3D view (or of the active camera) as a reference image"""

    bl_idname = "mesh.llm3d_add_view"
    bl_label = "Use Current View"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return _settings(context) is not None

    def execute(self, context: bpy.types.Context) -> OperatorResult:
        settings = _settings(context)
        try:
            path = render_view(context, views_dir())
        except RenderUnavailableError as e:
            self.report({"ERROR"}, f"Use Current View: {e}")
            return {"CANCELLED"}
        item = settings.images.add()
        item.path = str(path)
        item.name = path.name
        settings.image_index = len(settings.images) - 1
        self.report({"INFO"}, f"Added {path.name}")
        return {"FINISHED"}


class MESH_OT_llm3d_restore(bpy.types.Operator):
    """Rebuild this attempt's program in place (one undo step; runs in the sandbox like Run)"""

    bl_idname = "mesh.llm3d_restore"
    bl_label = "Restore"
    # Not UNDO: the result arrives later and is pushed as one undo step of its own.
    bl_options = {"REGISTER"}

    index: bpy.props.IntProperty(name="Entry", default=-1)  # type: ignore[valid-type]

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        settings = _settings(context)
        if settings is None or not len(settings.history):
            return False
        scene = context.scene
        if scene is not None and jobs.active_job(scene) is not None:
            cls.poll_message_set("Wait for the running job, or cancel it")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> OperatorResult:
        settings = _settings(context)
        index = self.index if self.index >= 0 else settings.history_index
        if not 0 <= index < len(settings.history):
            self.report({"ERROR"}, f"No history entry {index}; pick one in the History list")
            return {"CANCELLED"}
        entry = settings.history[index]
        text = settings.text
        if text is None:
            label = settings.collection.name if settings.collection else "llm3d restored"
            text = live.ensure_text("", f"{label}.py")
            settings.text = text
        text.from_string(entry.code)
        settings.history_index = index
        return start_run(self, context)
