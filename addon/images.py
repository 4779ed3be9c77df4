"""Reference images made small enough to send (Blender: runs on the main thread).

Vision models see an image as patches, and a 4,000 px photo costs a local model with a 4 K
context more than it holds. Before a request, images whose longer side exceeds the artist's
*Image Size* are scaled down with Blender's own image code (no extra wheel) and saved as
PNG in a scratch folder, which the job removes once the request is built.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import bpy

__all__ = ["downscaled"]


def downscaled(paths: Sequence[str], max_px: int) -> tuple[list[str], str]:
    """The images to send and the scratch folder holding the smaller copies ('' if none).

    Parameters
    ----------
    paths : sequence of str
        The reference images, in order.
    max_px : int
        Longest side allowed; 0 sends every image as it is.

    Returns
    -------
    (list of str, str)
        A path for each image (the original when it is small enough or cannot be read by
        Blender, which then reports its own error at sending) and the scratch folder.
    """
    if max_px <= 0:
        return list(paths), ""
    out: list[str] = []
    scratch = ""
    for i, path in enumerate(paths):
        try:
            image = bpy.data.images.load(path, check_existing=False)
        except RuntimeError:  # not an image Blender reads: sent as is, the client says why
            out.append(path)
            continue
        try:
            width, height = (int(v) for v in cast(Any, image).size)
            if max(width, height) <= max_px or not width or not height:
                out.append(path)
                continue
            factor = max_px / max(width, height)
            image.scale(max(1, round(width * factor)), max(1, round(height * factor)))
            if not scratch:
                scratch = tempfile.mkdtemp(prefix="llm3d-images-")
            target = Path(scratch) / f"{i:02d}_{Path(path).stem}.png"
            image.filepath_raw = str(target)
            image.file_format = "PNG"
            image.save()
            out.append(str(target))
        finally:
            bpy.data.images.remove(image)
    return out, scratch
