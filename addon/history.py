"""The history of attempts: every Generate, Refine and Run result, kept in the .blend.

Each finished job adds one :class:`LLM3D_PG_history` entry to ``scene.llm3d.history``: its
program, the prompt (or Refine's instruction), when, whether it built, its error, and a small
thumbnail of what it built (:func:`addon.snapshots.render_result`, a packed image datablock,
so it is saved inside the .blend and comes back when the file is opened). A program already
in the history is not added twice: its entry becomes the current one (a Restore, or Run of
an unchanged program). The oldest entries go beyond *History Size* (a preference).
*Restore* (:mod:`addon.operators_views`) rebuilds an entry's program in place.

Main thread only (called by :mod:`addon.jobs` when a result is delivered).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Sequence
from typing import Any, cast

import bpy

from .preferences import get_settings
from .snapshots import THUMBNAIL_PX, RenderUnavailableError, render_result

__all__ = [
    "LLM3D_PG_history",
    "LLM3D_UL_history",
    "draw_history",
    "make_thumbnail",
    "record",
    "trim",
]

logger = logging.getLogger(__name__)

#: Thumbnails are image datablocks named after this prefix.
THUMBNAIL_PREFIX = "llm3d thumbnail"


class LLM3D_PG_history(bpy.types.PropertyGroup):
    """One attempt in the history (``name`` is its one-line title)."""

    kind: bpy.props.StringProperty(name="Kind")  # type: ignore[valid-type]
    prompt: bpy.props.StringProperty(name="Prompt")  # type: ignore[valid-type]
    code: bpy.props.StringProperty(name="Program")  # type: ignore[valid-type]
    when: bpy.props.StringProperty(name="Time")  # type: ignore[valid-type]
    ok: bpy.props.BoolProperty(name="Built")  # type: ignore[valid-type]
    error: bpy.props.StringProperty(name="Error")  # type: ignore[valid-type]
    thumbnail: bpy.props.PointerProperty(type=bpy.types.Image, name="Thumbnail")  # type: ignore[valid-type]


def record(
    settings: Any,
    *,
    kind: str,
    prompt: str,
    code: str,
    ok: bool,
    error: str = "",
    objects: Sequence[str] = (),
) -> Any:
    """Add a finished attempt to ``settings.history`` (or make its program's entry current).

    Parameters
    ----------
    settings : LLM3D_PG_settings
        The scene's panel state.
    kind : str
        ``Generate``, ``Refine`` or ``Run``.
    prompt : str
        The artist's words (Refine: the instruction).
    code : str
        The program.
    ok, error
        Whether it built, and its error line.
    objects : sequence of str
        The result's objects (the thumbnail shows them).

    Returns
    -------
    LLM3D_PG_history
        The entry.
    """
    history = settings.history
    for index, entry in enumerate(history):
        if entry.code == code and entry.ok == ok:
            settings.history_index = index
            return entry
    entry = history.add()
    entry.kind = kind
    entry.prompt = " ".join(prompt.split())
    entry.code = code
    entry.when = time.strftime("%Y-%m-%d %H:%M:%S")
    entry.ok = ok
    entry.error = error
    entry.name = f"{kind} {entry.when[11:16]}" + (f": {entry.prompt}" if entry.prompt else "")
    if ok:
        entry.thumbnail = make_thumbnail(objects)
    trim(settings, get_settings(bpy.context).history_size)
    settings.history_index = len(history) - 1
    return history[len(history) - 1]


def trim(settings: Any, size: int) -> None:
    """Drop the oldest entries (and their thumbnails) beyond ``size``."""
    history = settings.history
    while len(history) > max(1, size):
        image = history[0].thumbnail
        history.remove(0)
        if image is not None and image.users == 0:
            bpy.data.images.remove(image)
    settings.history_index = min(settings.history_index, len(history) - 1)


def make_thumbnail(names: Sequence[str]) -> bpy.types.Image | None:
    """A packed image of the result's objects (None when it cannot be rendered: the entry
    is still kept, without a picture)."""
    found = (cast(Any, bpy.data.objects).get(n) for n in names)
    objects = [o for o in found if o is not None]
    if not objects:
        return None
    folder = tempfile.mkdtemp(prefix="llm3d-thumbnail-")
    try:
        path = render_result(objects, folder, THUMBNAIL_PX)
        image = bpy.data.images.load(str(path), check_existing=False)
        image.pack()  # saved inside the .blend; the file goes
        image.name = THUMBNAIL_PREFIX
        return image
    except (RenderUnavailableError, RuntimeError):  # a missing picture never fails a result
        logger.warning("llm3d: the history thumbnail could not be rendered", exc_info=True)
        return None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class LLM3D_UL_history(bpy.types.UIList):
    """The history: thumbnail, kind, time and prompt; failures with their error."""

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
        if item.thumbnail is not None:
            layout.label(text=item.name, icon_value=layout.icon(item.thumbnail))
        elif item.ok:
            layout.label(text=item.name, icon="MESH_DATA")
        else:
            layout.label(text=f"{item.name} (failed)", icon="CANCEL")
        op = layout.operator("mesh.llm3d_restore", text="", icon="LOOP_BACK", emboss=False)
        op.index = index or 0


def draw_history(layout: bpy.types.UILayout, settings: Any) -> None:
    """The panel's History section: the list, the chosen entry's picture and Restore."""
    box = layout.box()
    box.label(text="History", icon="TIME")
    if not len(settings.history):
        box.label(text="Each Generate, Refine and Run is kept here", icon="INFO")
        return
    box.template_list(
        "LLM3D_UL_history", "", settings, "history", settings, "history_index", rows=3
    )
    index = settings.history_index
    if not 0 <= index < len(settings.history):
        return
    entry = settings.history[index]
    if entry.thumbnail is not None:
        box.template_icon(icon_value=box.icon(entry.thumbnail), scale=6.0)
    if entry.error:
        box.label(text=entry.error, icon="ERROR")
    op = box.operator("mesh.llm3d_restore", icon="LOOP_BACK")
    op.index = index
