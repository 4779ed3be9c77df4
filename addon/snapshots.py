"""Pictures the add-on renders itself (Blender: main thread only).

Three uses, two ways of rendering:

- **the current result** (:func:`render_result`): Refine's optional render (what the program
  builds, sent with the artist's instruction) and the history's thumbnails. The result's
  evaluated, world-space triangles go through the project's own renderer
  (:func:`worker.render.render_views`: a private scene, Workbench, a camera framing the
  result's box from the front-right and above, a neutral background), so the artist's scene,
  its settings and its undo history are not touched;
- **the artist's view** (:func:`render_view`, *Use Current View*): in the Blender window the
  3D view the artist looks through (``bpy.ops.render.opengl`` from the view's own matrix);
  without a window (background mode: no drawing context) the scene's active camera, rendered
  with Workbench. The picture is written into :func:`views_dir` and joins the reference
  images, so it is downscaled to *Image Size* like any other image when sent.

Both block the main thread while Blender draws (Blender renders only there); the sizes are
kept small for that reason (``benchmarks/addon_bench.py`` measures them).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, cast

import bpy

from llm3d.config import RenderConfig, ViewConfig
from llm3d.exceptions import MeshError
from worker.render import render_views

from .scoring import object_triangles

__all__ = [
    "REFINE_PX",
    "THUMBNAIL_PX",
    "VIEW_PX",
    "RenderUnavailableError",
    "refine_render",
    "render_result",
    "render_view",
    "views_dir",
]

#: Side of the square render sent with Refine.
REFINE_PX = 384
#: Side of a history thumbnail.
THUMBNAIL_PX = 128
#: Longer side of a *Use Current View* picture (the camera's or the view's aspect is kept).
VIEW_PX = 768
#: The camera of a result render: front-right and above, as the renderer's three-quarter view.
RESULT_VIEW = ViewConfig(name="result", azimuth_deg=45.0, elevation_deg=30.0)


class RenderUnavailableError(RuntimeError):
    """There is nothing to render; the message says what to do."""


def render_result(objects: Iterable[bpy.types.Object], out_dir: str | Path, px: int) -> Path:
    """Render ``objects`` (the result) into a square PNG of ``px`` pixels in ``out_dir``.

    Raises
    ------
    RenderUnavailableError
        When the objects have no faces (no result yet).
    """
    depsgraph = bpy.context.evaluated_depsgraph_get()
    vertices, faces = object_triangles(objects, depsgraph)
    if len(faces) == 0:
        raise RenderUnavailableError("the result has no faces to render; Generate or Run first")
    config = RenderConfig(resolution=px, workbench_aa="FXAA", views=[RESULT_VIEW], frame="object")
    stamp = f"{time.time_ns()}_"
    try:
        (path,) = render_views(vertices, faces, out_dir, config=config, prefix=stamp)
    except MeshError as e:  # non-finite coordinates: nothing to frame
        raise RenderUnavailableError(f"the result cannot be rendered: {e}") from e
    return path


def views_dir() -> Path:
    """Where *Use Current View* pictures are kept (the system's temporary folder)."""
    folder = Path(tempfile.gettempdir()) / "llm3d-views"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def render_view(context: bpy.types.Context, out_dir: str | Path, longest: int = VIEW_PX) -> Path:
    """Render what the artist looks at into a PNG in ``out_dir``: the 3D view (in the
    Blender window), else the scene's active camera.

    Raises
    ------
    RenderUnavailableError
        With neither a 3D view nor an active camera; the message says what to do.
    """
    scene = context.scene
    if scene is None:
        raise RenderUnavailableError("no scene to render")
    view = None if bpy.app.background else _view3d(context)
    if view is None and scene.camera is None:
        raise RenderUnavailableError(
            "nothing to render the view from: add a camera to the scene (Add > Camera) and "
            "make it the active camera, or press Use Current View in an open 3D view"
        )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    which = "view" if view is not None else f"camera {scene.camera.name}"  # type: ignore[union-attr]
    path = Path(out_dir) / f"{which} {stamp}-{time.time_ns() % 1000:03d}.png"
    render: Any = scene.render
    try:
        if view is not None:
            window, area, region = view
            size = _fit(region.width, region.height, longest)
            with _render_settings(scene, size, path):
                with context.temp_override(window=window, area=area, region=region):
                    bpy.ops.render.opengl(write_still=False, view_context=True)
                result = cast(Any, bpy.data.images).get("Render Result")
                if result is None:
                    raise RenderUnavailableError("the viewport render gave no image; try again")
                result.save_render(str(path), scene=scene)
        else:
            aspect = render.pixel_aspect_x / max(render.pixel_aspect_y, 1e-6)
            size = _fit(round(render.resolution_x * aspect), render.resolution_y, longest)
            with _render_settings(scene, size, path, engine="BLENDER_WORKBENCH"):
                bpy.ops.render.render(write_still=True, scene=scene.name)
    except RuntimeError as e:  # e.g. a render already running (F12)
        if isinstance(e, RenderUnavailableError):
            raise
        raise RenderUnavailableError(
            f"Blender could not render the view ({' '.join(str(e).split())}); wait for a "
            "running render to finish and try again"
        ) from e
    if not path.is_file():
        raise RenderUnavailableError(f"the render was not written to {path}; check the folder")
    return path


def _fit(width: int, height: int, longest: int) -> tuple[int, int]:
    """``(width, height)`` scaled so that the longer side is ``longest``."""
    width, height = max(1, int(width)), max(1, int(height))
    factor = longest / max(width, height)
    return max(1, round(width * factor)), max(1, round(height * factor))


def _view3d(context: bpy.types.Context) -> tuple[Any, Any, Any] | None:
    """The 3D view to render: the one the operator was pressed in, else the window's first."""
    window = context.window
    areas: list[Any] = []
    if context.area is not None and context.area.type == "VIEW_3D":
        areas.append(context.area)
    if window is not None and window.screen is not None:
        areas.extend(a for a in window.screen.areas if a.type == "VIEW_3D")
    for area in areas:
        region = next((r for r in area.regions if r.type == "WINDOW"), None)
        if region is not None and region.width > 1 and region.height > 1:
            return window, area, region
    return None


@contextlib.contextmanager
def _render_settings(
    scene: bpy.types.Scene, size: tuple[int, int], path: Path, engine: str = ""
) -> Iterator[None]:
    """The scene's output settings for one small PNG; the artist's come back afterwards."""
    render: Any = scene.render
    display: Any = scene.display
    image: Any = render.image_settings
    saved_render = {
        name: getattr(render, name)
        for name in (
            "engine",
            "resolution_x",
            "resolution_y",
            "resolution_percentage",
            "pixel_aspect_x",
            "pixel_aspect_y",
            "filepath",
            "use_file_extension",
            "use_border",
        )
    }
    saved_image = {name: getattr(image, name) for name in ("file_format", "color_mode")}
    saved_aa = display.render_aa
    try:
        if engine:
            render.engine = engine
            display.render_aa = "FXAA"  # one pass: the main thread waits for it
        render.resolution_x, render.resolution_y = size
        render.resolution_percentage = 100
        render.pixel_aspect_x = render.pixel_aspect_y = 1.0
        render.filepath = str(path)
        render.use_file_extension = False
        render.use_border = False
        image.file_format = "PNG"
        image.color_mode = "RGB"
        yield
    finally:
        for name, value in saved_image.items():
            setattr(image, name, value)
        for name, value in saved_render.items():
            setattr(render, name, value)
        display.render_aa = saved_aa


def refine_render(collection: bpy.types.Collection | None, scratch: str) -> tuple[str, str]:
    """Refine's render of the current result, written into the job's scratch folder (made
    when ``scratch`` is ''; the job removes it once the request is built).

    Returns
    -------
    (str, str)
        The PNG's path and the scratch folder.

    Raises
    ------
    RenderUnavailableError
        When there is no result to render.
    """
    objects = list(collection.all_objects) if collection is not None else []
    if not objects:
        raise RenderUnavailableError("there is no result to render; press Run first")
    folder = scratch or tempfile.mkdtemp(prefix="llm3d-images-")
    try:
        path = render_result(objects, folder, REFINE_PX)
    except RenderUnavailableError:
        if not scratch:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return str(path), folder
