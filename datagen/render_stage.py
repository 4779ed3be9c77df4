"""Rendering and the reference text for the dataset builder (Blender-only: imports ``bpy``).

Kept apart so that the rest of :mod:`datagen` imports without Blender; the builder calls
these lazily, in its own process (renders are deterministic, :mod:`worker.render`).
"""

from __future__ import annotations

from pathlib import Path

import numpy.typing as npt

from llm3d.config import RenderConfig

__all__ = ["bpy_lib_reference", "render_object"]


def render_object(
    vertices: npt.ArrayLike, faces: npt.ArrayLike, out_dir: Path, config: RenderConfig
) -> list[Path]:
    """The configured views of one object, as PNGs in ``out_dir`` (``front.png``, ...)."""
    from worker.render import render_views

    return render_views(vertices, faces, out_dir, config=config)


def bpy_lib_reference() -> str:
    """The compact ``bpy_lib`` reference of the system message."""
    import bpy_lib

    return bpy_lib.reference()
