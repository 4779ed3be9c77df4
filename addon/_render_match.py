"""Render candidates' meshes and score them against the reference images, in a background
Blender (our own code only: meshes in, numbers out; no model-written code runs here).

``python _render_match.py JOB_DIR`` with the ``bpy`` wheel, or ``blender -b --factory-startup
--python _server_boot.py -- _render_match.py JOB_DIR`` with the Blender application. Started
by :func:`addon.candidates.render_and_match` on a worker thread, so that the artist's Blender
never renders: its main thread stays free.

``JOB_DIR/job.json`` holds ``references`` (image paths, in the rig's view order),
``candidates`` (numbers) and ``size`` (pixels); ``JOB_DIR/mesh_<number>.npz`` each candidate's
``vertices`` and ``faces``. Each candidate is drawn from the first views of the training
renders' rig (:class:`llm3d.config.RenderConfig`: front, side, top, three-quarter) by
:func:`worker.render.render_views` and scored by :func:`worker.render_match.match_views`, the
same code best-of-N uses. Images are read and resized by Blender (no Pillow needed). The
answer is ``JOB_DIR/result.json``: ``{"scores": {number: {"score", "views"} or {"error"}},
"note": str}``, the note saying why nothing could be matched (a photo without a plain
background) or that only the first views were used.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, cast

__all__ = ["main"]


def _pixels(path: str, fit: int = 0, size: tuple[int, int] | None = None) -> Any:
    """RGBA pixels (0..255, float32, top row first) of an image file, scaled to ``size``
    (width, height) or to fit ``fit`` pixels on its longer side."""
    import bpy
    import numpy as np

    image = bpy.data.images.load(path, check_existing=False)
    try:
        width, height = (int(v) for v in image.size)
        if not width or not height:
            raise ValueError(f"cannot read image {path}")
        if size is None and fit and max(width, height) > fit:
            factor = fit / max(width, height)
            size = (max(1, round(width * factor)), max(1, round(height * factor)))
        if size is not None and size != (width, height):
            image.scale(*size)
            width, height = size
        buffer = np.empty(width * height * 4, np.float32)
        cast(Any, image).pixels.foreach_get(buffer)
        return (buffer.reshape(height, width, 4)[::-1] * 255.0).round()
    finally:
        bpy.data.images.remove(image)


def run(job_dir: Path) -> dict[str, Any]:
    """Render and score every candidate of ``job_dir`` (see the module docstring)."""
    import numpy as np

    from llm3d.config import RenderConfig
    from worker.render import render_views
    from worker.render_match import MatchUnavailableError, match_views, silhouette

    job = json.loads((job_dir / "job.json").read_text(encoding="utf-8"))
    size = int(job.get("size", 256))
    rig = RenderConfig(resolution=size)
    references = [str(p) for p in job["references"]][: len(rig.views)]
    note = ""
    if len(job["references"]) > len(rig.views):
        note = (
            f"matched the first {len(rig.views)} images only (the views "
            f"{', '.join(v.name for v in rig.views)}, in that order)"
        )
    # the artist's images frame their object, not bpy_lib's box: each candidate framed alike
    config = RenderConfig(resolution=size, views=rig.views[: len(references)], frame="object")
    try:
        reference_pixels = [_pixels(p, fit=size) for p in references]
        for path, pixels in zip(references, reference_pixels, strict=True):
            silhouette(pixels, name=Path(path).name)  # a photo is refused here, by its name
    except MatchUnavailableError as exc:
        return {"scores": {}, "note": str(exc)}
    except (RuntimeError, ValueError) as exc:
        return {"scores": {}, "note": f"cannot read a reference image: {exc}"}
    scores: dict[str, dict[str, Any]] = {}
    for number in job["candidates"]:
        mesh = np.load(job_dir / f"mesh_{number}.npz", allow_pickle=False)
        folder = job_dir / f"views_{number}"
        try:
            paths = render_views(mesh["vertices"], mesh["faces"], folder, config=config)
            renders = [
                _pixels(str(p), size=(ref.shape[1], ref.shape[0]))
                for p, ref in zip(paths, reference_pixels, strict=True)
            ]
            scores[str(number)] = match_views(renders, reference_pixels).as_dict()
        except MatchUnavailableError as exc:
            return {"scores": {}, "note": str(exc)}
        except (RuntimeError, ValueError) as exc:  # this candidate only
            scores[str(number)] = {"error": f"{type(exc).__name__}: {exc}"}
    return {"scores": scores, "note": note}


def main(argv: list[str] | None = None) -> None:
    """``_render_match.py JOB_DIR``: write ``JOB_DIR/result.json``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        raise SystemExit("usage: _render_match.py JOB_DIR")
    job_dir = Path(args[0])
    result = run(job_dir)
    (job_dir / "result.json").write_text(json.dumps(result), encoding="utf-8")


if __name__ == "__main__":
    main()
