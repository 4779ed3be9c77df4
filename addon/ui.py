"""The "Image to Code" panel in the 3D viewport's sidebar (tab "llm3d")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bpy
import bpy.utils.previews

from . import background, jobs
from .history import draw_history
from .preferences import ADDON_ID, connection_status, get_settings, online_access_problem

__all__ = [
    "LLM3D_UL_attempts",
    "LLM3D_UL_candidates",
    "LLM3D_UL_images",
    "VIEW3D_PT_llm3d_image_to_code",
    "free_previews",
    "thumbnail",
]

#: Thumbnails of the reference images, one preview collection while registered.
_PREVIEWS: dict[str, Any] = {}


def thumbnail(path: str) -> int:
    """The icon id of the image's thumbnail (0 when it cannot be loaded)."""
    if not path or not Path(path).is_file():
        return 0
    previews = _PREVIEWS.get("images")
    if previews is None:
        previews = bpy.utils.previews.new()
        _PREVIEWS["images"] = previews
    preview = previews.get(path) or previews.load(path, path, "IMAGE")
    return int(preview.icon_id)


def free_previews() -> None:
    """Release the thumbnails (on unregister)."""
    previews = _PREVIEWS.pop("images", None)
    if previews is not None:
        bpy.utils.previews.remove(previews)


class LLM3D_UL_images(bpy.types.UIList):
    """The reference images with their thumbnails."""

    def draw_item(
        self,
        context: bpy.types.Context,
        layout: bpy.types.UILayout,
        data: Any,
        item: Any,
        icon: int | None,
        active_data: Any,
        active_property: str | None,
        index: int | None = 0,
        flt_flag: int | None = 0,
    ) -> None:
        if not Path(item.path).is_file():
            layout.label(text=f"{item.name} (missing)", icon="ERROR")
            return
        icon_id = thumbnail(item.path)
        if icon_id:
            layout.label(text=item.name, icon_value=icon_id)
        else:  # no icons without a UI (background mode): the preview is still made
            layout.label(text=item.name, icon="IMAGE_DATA")


class LLM3D_UL_attempts(bpy.types.UIList):
    """Each attempt of the last Generate: passed, or its error line."""

    def draw_item(
        self,
        context: bpy.types.Context,
        layout: bpy.types.UILayout,
        data: Any,
        item: Any,
        icon: int | None,
        active_data: Any,
        active_property: str | None,
        index: int | None = 0,
        flt_flag: int | None = 0,
    ) -> None:
        if item.ok:
            layout.label(text=f"Attempt {item.number}: ok", icon="CHECKMARK")
        else:
            layout.label(text=f"Attempt {item.number}: {item.error}", icon="CANCEL")


class LLM3D_UL_candidates(bpy.types.UIList):
    """The candidates of the last Generate: match score or error, and a button to use one."""

    def draw_item(
        self,
        context: bpy.types.Context,
        layout: bpy.types.UILayout,
        data: Any,
        item: Any,
        icon: int | None,
        active_data: Any,
        active_property: str | None,
        index: int | None = 0,
        flt_flag: int | None = 0,
    ) -> None:
        row = layout.row(align=True)
        if not item.ok:
            row.label(text=f"Candidate {item.number}: {item.error}", icon="CANCEL")
            return
        score = f"match {item.score:.2f}" if item.has_score else "built, not matched"
        if item.kept:
            row.label(text=f"Candidate {item.number}: {score} (in the scene)", icon="CHECKMARK")
        else:
            row.label(text=f"Candidate {item.number}: {score}", icon="MESH_DATA")
            op = row.operator("mesh.llm3d_use_candidate", text="Use", icon="FILE_REFRESH")
            op.number = item.number


class VIEW3D_PT_llm3d_image_to_code(bpy.types.Panel):
    """Images in, a bpy_lib program and an object out."""

    bl_idname = "VIEW3D_PT_llm3d_image_to_code"
    bl_label = "Image to Code"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "llm3d"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.scene is not None

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        scene = context.scene
        if scene is None or layout is None:
            return
        settings: Any = scene.llm3d  # type: ignore[attr-defined]
        prefs = get_settings(context)
        busy = jobs.active_job(scene) is not None

        box = layout.box()
        box.label(text="Reference Images", icon="IMAGE_DATA")
        row = box.row()
        row.template_list(
            "LLM3D_UL_images", "", settings, "images", settings, "image_index", rows=3
        )
        col = row.column(align=True)
        col.operator("mesh.llm3d_add_images", text="", icon="ADD")
        col.operator("mesh.llm3d_remove_image", text="", icon="REMOVE")
        col.operator("mesh.llm3d_add_view", text="", icon="RESTRICT_VIEW_OFF")
        if 0 <= settings.image_index < len(settings.images):
            icon_id = thumbnail(settings.images[settings.image_index].path)
            if icon_id:
                box.template_icon(icon_value=icon_id, scale=6.0)
        box.prop(settings, "prompt", text="", icon="TEXT", placeholder="Prompt (optional)")
        if not settings.images:
            box.label(text="No images: the prompt alone describes the object", icon="INFO")

        box = layout.box()
        row = box.row()
        row.label(text="Model Endpoint", icon="URL")
        op = row.operator("preferences.addon_show", text="", icon="PREFERENCES")
        op.module = ADDON_ID
        addon_prefs = _addon_preferences(context)
        if addon_prefs is not None:
            col = box.column(align=True)
            col.prop(addon_prefs, "provider", text="Provider")
            col.prop(addon_prefs, "endpoint_url", text="URL")
            row = col.row(align=True)
            row.prop(addon_prefs, "model", text="Model")
            row.operator("mesh.llm3d_pick_model", text="", icon="DOWNARROW_HLT")
            row = box.row()
            row.operator("mesh.llm3d_test_connection", icon="LINKED")
            if connection_status():
                row.label(text=connection_status())
        else:
            box.label(text=f"Model: {prefs.model}")
        problem = online_access_problem(prefs.endpoint_url)
        if problem:
            for i, line in enumerate(_wrap(problem, 48)):
                box.label(text=line, icon="ERROR" if i == 0 else "BLANK1")
        if prefs.trusted_execution:
            box.label(text="Trusted execution: programs run unchecked", icon="ERROR")
        layers = background.describe_layers(prefs.trusted_execution)
        for i, line in enumerate(_wrap(layers, 48)):
            if i:
                box.label(text=line, icon="BLANK1")
            else:
                box.label(text=line, icon="ERROR" if prefs.trusted_execution else "LOCKED")
        box.prop(settings, "results", expand=True)
        if addon_prefs is not None:
            box.prop(addon_prefs, "candidates", text="Candidates")
        row = box.row(align=True)
        row.scale_y = 1.4
        row.operator("mesh.llm3d_generate", icon="PLAY")
        if busy:
            row.operator("mesh.llm3d_cancel", icon="CANCEL")
        if settings.status:
            box.label(text=settings.status, icon="TIME" if busy else "INFO")
        if settings.warning:
            for i, line in enumerate(_wrap(settings.warning, 48)):
                box.label(text=line, icon="ERROR" if i == 0 else "BLANK1")
        if settings.error:
            err = box.box()
            for line in _wrap(settings.error, 48):
                err.label(text=line)
        if len(settings.attempts):
            box.template_list(
                "LLM3D_UL_attempts", "", settings, "attempts", settings, "attempt_index", rows=2
            )
        if len(settings.candidates):
            box.template_list(
                "LLM3D_UL_candidates", "", settings, "candidates", settings, "candidate_index"
            )
            for i, line in enumerate(_wrap(settings.candidate_note, 48)):
                box.label(text=line, icon="INFO" if i == 0 else "BLANK1")

        box = layout.box()
        box.label(text="Program", icon="TEXT")
        box.prop(settings, "text", text="")
        row = box.row(align=True)
        row.operator("mesh.llm3d_run", icon="FILE_REFRESH")
        row = box.row(align=True)
        row.prop(settings, "refine_prompt", text="", placeholder="What to change")
        row.operator("mesh.llm3d_refine", icon="MODIFIER")
        box.prop(settings, "refine_render")
        if settings.collection is not None:
            box.label(text=f"Result: {settings.collection.name}", icon="OUTLINER_COLLECTION")

        draw_history(layout, settings)

        box = layout.box()
        box.label(text="Score", icon="DRIVER_DISTANCE")
        box.prop(settings, "reference", text="Reference")
        row = box.row(align=True)
        row.prop(settings, "score_points", text="Points")
        row.operator("mesh.llm3d_score", icon="CHECKMARK")
        if settings.has_score:
            col = box.column(align=True)
            col.label(text=f"F@0.05: {settings.f_score:.3f}")
            col.label(text=f"Chamfer-L2: {settings.chamfer:.5f}")


def _addon_preferences(context: bpy.types.Context) -> Any:
    preferences: Any = context.preferences
    addon = preferences.addons.get(ADDON_ID) if preferences is not None else None
    return addon.preferences if addon is not None else None


def _wrap(text: str, width: int) -> list[str]:
    """Split a message into lines of at most ``width`` characters at spaces."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        lines.append(current)
    return lines
