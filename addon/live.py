"""A streamed answer shown while it arrives (Blender: main thread only).

The worker thread collects the answer in a :class:`addon.streaming.StreamState`; the drain
timer (:func:`addon.jobs.drain`) calls :func:`show_stream` on each tick, which copies the
text so far into the result's text block and scrolls a Text Editor that exists to it (no
window is ever created: headless there is none), and :func:`stream_status` for the panel's
progress line. When the answer never becomes a result (Cancel, a failed request)
:func:`unstream` puts back what the text block held before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import bpy

from .streaming import StreamSnapshot

__all__ = [
    "StreamTarget",
    "ensure_text",
    "settle_failed",
    "show_stream",
    "stream_status",
    "unstream",
]


@dataclass
class StreamTarget:
    """The text block an attempt streams into and what it held before (None: it is new)."""

    name: str = ""
    before: str | None = None
    shown: int = -1


def ensure_text(name: str, new_name: str) -> bpy.types.Text:
    """The text block ``name``; a new one called ``new_name`` when it is empty or missing."""
    text: bpy.types.Text | None = cast(Any, bpy.data.texts).get(name) if name else None
    return text if text is not None else bpy.data.texts.new(new_name)


def show_stream(
    target: StreamTarget, snapshot: StreamSnapshot, text_name: str, new_name: str
) -> str:
    """Copy the answer so far into the text block (created at the first text); return its
    name ('' while nothing has arrived)."""
    if not snapshot.text:
        return target.name
    if len(snapshot.text) == target.shown:
        return target.name
    text: bpy.types.Text | None = (
        cast(Any, bpy.data.texts).get(target.name) if target.name else None
    )
    if text is None:
        existing: bpy.types.Text | None = (
            cast(Any, bpy.data.texts).get(text_name) if text_name else None
        )
        target.before = existing.as_string() if existing is not None else None
        text = ensure_text(text_name, new_name)
        target.name = text.name
    text.from_string(snapshot.text)
    target.shown = len(snapshot.text)
    _show_in_editor(text)
    return target.name


def _show_in_editor(text: bpy.types.Text) -> None:
    """Show ``text`` at its end in one Text Editor (one already showing it, else the first)."""
    wm = bpy.context.window_manager
    areas = [
        area
        for window in (wm.windows if wm is not None else ())
        for area in window.screen.areas
        if area.type == "TEXT_EDITOR"
    ]
    if not areas:
        return
    area = next((a for a in areas if cast(Any, a.spaces.active).text == text), areas[0])
    space: Any = area.spaces.active
    if space.text != text:
        space.text = text
    lines = len(text.lines)
    space.top = max(0, lines - max(1, int(space.visible_lines)) + 1)
    area.tag_redraw()


def unstream(target: StreamTarget) -> None:
    """Undo an attempt's streaming: the text block gets back what it held, a new one goes."""
    text: bpy.types.Text | None = (
        cast(Any, bpy.data.texts).get(target.name) if target.name else None
    )
    if text is not None:
        if target.before is None:
            bpy.data.texts.remove(text)
        else:
            text.from_string(target.before)
    target.name, target.before, target.shown = "", None, -1


def settle_failed(
    target: StreamTarget, snapshot: StreamSnapshot, text_name: str, new_name: str
) -> None:
    """After a failed request (cut off, an error mid-stream): a program the block held comes
    back; a new block keeps what arrived, for the artist to read."""
    if target.before is not None:
        unstream(target)
        return
    if not target.name and text_name and cast(Any, bpy.data.texts).get(text_name) is not None:
        return  # nothing was shown in the artist's block: it stays as it is
    show_stream(target, snapshot, text_name, new_name)


def stream_status(model: str, snapshot: StreamSnapshot) -> str:
    """The panel's progress line while the model answers."""
    if not snapshot.receiving:
        return f"Waiting for {model}... {snapshot.seconds:.0f} s"
    rate = f", {snapshot.tokens_per_s:.1f} tokens/s" if snapshot.tokens_per_s > 0 else ""
    return f"Receiving from {model}: {snapshot.tokens} tokens{rate}, {snapshot.seconds:.0f} s"
