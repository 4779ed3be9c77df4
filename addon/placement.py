"""Where a result goes in the artist's scene: its collection, the 3D cursor, the selection
and the framing of the 3D views (main thread only)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, cast

import bpy

from bpy_lib.export import kind_of

__all__ = ["ensure_collection", "is_result", "place_and_frame"]

logger = logging.getLogger(__name__)


def place_and_frame(scene: bpy.types.Scene, names: Sequence[str], origin: Sequence[float]) -> None:
    """Move the result to ``origin``, make it the selection (the first part active) and frame
    it in every 3D view, so it lands where the artist looks."""
    objects = [o for o in (cast(Any, bpy.data.objects).get(n) for n in names) if o is not None]
    if not objects:
        return
    for obj in objects:
        if obj.parent is None:
            obj.location = (
                obj.location[0] + origin[0],
                obj.location[1] + origin[1],
                obj.location[2] + origin[2],
            )
    view_layer = bpy.context.view_layer
    if view_layer is None or cast(Any, bpy.context).scene != scene:
        return
    for obj in view_layer.objects:
        obj.select_set(False)
    for obj in objects:
        if view_layer.objects.get(obj.name) is not None:
            obj.select_set(True)
    view_layer.objects.active = objects[0]
    _frame_selected()


def _frame_selected() -> None:
    """``View Selected`` in each 3D view (none without a UI: nothing to frame)."""
    wm = bpy.context.window_manager
    for window in wm.windows if wm is not None else ():
        for area in window.screen.areas:
            if area.type != "VIEW_3D":
                continue
            region = next((r for r in area.regions if r.type == "WINDOW"), None)
            if region is None:
                continue
            try:
                with bpy.context.temp_override(window=window, area=area, region=region):
                    bpy.ops.view3d.view_selected()
            except RuntimeError:  # a view that cannot frame now: the selection stays
                logger.debug("llm3d: framing the result failed", exc_info=True)


def is_result(collection: bpy.types.Collection) -> bool:
    """Whether ``collection`` holds only what the add-on built (Replace Previous may empty it)."""
    if cast(Any, collection).library is not None:
        return False
    return all(kind_of(obj) is not None for obj in collection.all_objects)


def ensure_collection(scene: bpy.types.Scene, name: str, new_name: str) -> bpy.types.Collection:
    """The collection ``name`` linked under the scene; a new ``new_name`` when missing.

    A new collection never reuses an earlier result's: Blender numbers it (``.001``).
    """
    collection: bpy.types.Collection | None = (
        cast(Any, bpy.data.collections).get(name) if name else None
    )
    if collection is None or cast(Any, collection).library is not None:
        collection = bpy.data.collections.new(new_name)
    if collection.name not in scene.collection.children:
        scene.collection.children.link(collection)
    return collection
