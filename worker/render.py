"""Multi-view images of a mesh, rendered in the current Blender process (Blender-only: imports bpy).

:func:`render_views` puts ``(vertices, faces)`` in a private scene, frames bpy_lib's box
(``render.frame: scene``, the default: size and place show, as the metrics score them) or the
mesh's own bounding box (``object``) with a camera on the rig of ``config.render.views``
(azimuth/elevation around the box's centre; default front, side, top and three-quarter), and
writes one square PNG a view.
Workbench by default (fast on CPU), Cycles as an option; a neutral grey background,
studio lighting that turns with the camera (so every view is lit alike), one neutral
material colour. Nothing random: the same input gives the same pixels.

:func:`comparison_grid` (re-exported from :mod:`worker.grid`, which needs only Pillow)
puts ground-truth views beside prediction views with the metrics written underneath.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bpy
import numpy as np
import numpy.typing as npt
from mathutils import Euler, Quaternion, Vector

from llm3d.config import RenderConfig, ViewConfig
from llm3d.exceptions import MeshError
from llm3d.sections import SCENE_LIMIT
from worker.grid import comparison_grid

__all__ = ["BACKGROUND", "OBJECT_COLOUR", "camera_position", "comparison_grid", "render_views"]

logger = logging.getLogger(__name__)

BACKGROUND = (0.8, 0.8, 0.8)  # linear RGB of the world: a neutral light grey
OBJECT_COLOUR = (0.35, 0.45, 0.6)  # a neutral blue-grey, distinct from the background
FOV_DEG = 40.0  # full field of view of the perspective camera
MARGIN = 1.1  # the bounding box fills the frame up to this margin
_PREFIX = "llm3d_render"


def camera_position(
    view: ViewConfig, centre: npt.ArrayLike, distance: float
) -> npt.NDArray[np.float64]:
    """Where the camera of ``view`` stands: azimuth 0 looks along +Y (front), 90 along -X
    (the right side), elevation 90 looks straight down."""
    az, el = math.radians(view.azimuth_deg), math.radians(view.elevation_deg)
    direction = np.array([math.sin(az) * math.cos(el), -math.cos(az) * math.cos(el), math.sin(el)])
    return np.asarray(centre, dtype=np.float64) + distance * direction


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Silence Blender's C-level "Saved: ..." lines (fd 1) while rendering."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # pytest capture or no real stdout
        yield
        return
    sys.stdout.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def _build_mesh(vertices: npt.NDArray[np.float32], faces: npt.NDArray[np.int32]) -> bpy.types.Mesh:
    from bpy_lib.export import mesh_from_arrays

    return mesh_from_arrays(_PREFIX, vertices, faces, calc_edges=False)


def _configure(scene: Any, config: RenderConfig) -> str:
    """Set up engine, colour management, background and shading; return the world's name."""
    # bpy's stubs mark most nested settings Optional; they always exist on a new scene.
    render = scene.render
    render.resolution_x = render.resolution_y = config.resolution
    render.resolution_percentage = 100
    render.film_transparent = False
    render.image_settings.file_format = "PNG"
    render.image_settings.color_mode = "RGB"
    render.image_settings.compression = 15
    render.use_file_extension = False
    render.dither_intensity = 0.0  # dithering adds noise
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    world: Any = bpy.data.worlds.new(_PREFIX)
    world.color = BACKGROUND
    scene.world = world
    if config.engine == "cycles":
        render.engine = "CYCLES"
        scene.cycles.device = "CPU"
        scene.cycles.samples = config.cycles_samples
        scene.cycles.seed = 0
        scene.cycles.use_animated_seed = False
        scene.cycles.use_denoising = False
        world.use_nodes = True
        background = world.node_tree.nodes["Background"]
        background.inputs["Color"].default_value = (*BACKGROUND, 1.0)
        background.inputs["Strength"].default_value = 1.0
        return str(world.name)
    render.engine = "BLENDER_WORKBENCH"
    shading = scene.display.shading
    shading.light = "STUDIO"
    shading.use_world_space_lighting = False  # the light turns with the camera
    shading.color_type = "SINGLE"
    shading.single_color = OBJECT_COLOUR
    shading.show_cavity = False
    shading.show_shadows = False
    shading.show_specular_highlight = False
    scene.display.render_aa = config.workbench_aa
    return str(world.name)


def _material(config: RenderConfig) -> bpy.types.Material | None:
    if config.engine != "cycles":
        return None
    material = bpy.data.materials.new(_PREFIX)
    material.use_nodes = True
    tree: Any = material.node_tree
    bsdf = tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (*OBJECT_COLOUR, 1.0)
    bsdf.inputs["Roughness"].default_value = 0.6
    return material


def _frame(view: ViewConfig, corners: npt.NDArray[np.float64]) -> tuple[Quaternion, float]:
    """The camera's rotation for ``view`` and the distance at which the bounding box
    (``corners``, relative to its centre) just fills the frame, with :data:`MARGIN`."""
    direction = camera_position(view, np.zeros(3), 1.0)
    if abs(view.elevation_deg) >= 89.999:  # straight down/up: image-up is +Y / -Y
        rotation = Euler((0.0 if view.elevation_deg > 0 else math.pi, 0.0, 0.0)).to_quaternion()
    else:
        rotation = Vector((-direction).tolist()).to_track_quat("-Z", "Y")
    axes = np.array(rotation.to_matrix())  # columns: right, up, back (towards the camera)
    local = corners @ axes  # (8, 3): x right, y up, z back
    tangent = math.tan(math.radians(FOV_DEG) / 2.0) / MARGIN
    needed = local[:, 2] + np.abs(local[:, :2]).max(axis=1) / tangent
    return rotation, max(float(needed.max()), 1e-6)


def render_views(
    vertices: npt.ArrayLike,
    faces: npt.ArrayLike,
    out_dir: str | Path,
    *,
    config: RenderConfig | None = None,
    prefix: str = "",
    bounds: tuple[npt.ArrayLike, npt.ArrayLike] | None = None,
) -> list[Path]:
    """Render the configured views of a mesh into ``out_dir``.

    Parameters
    ----------
    vertices : (n, 3) float
    faces : (m, 3) int
        Triangles; at least one.
    out_dir : str or Path
        Created if missing. Files are ``{prefix}{view.name}.png``.
    config : RenderConfig, optional
        Resolution, engine and camera rig (default: the built-in configuration).
    prefix : str
        Put before each file name (e.g. ``"gt_"``).
    bounds : ((3,) float, (3,) float), optional
        The box ``(lo, hi)`` the cameras frame. Default: ``config.frame``: ``scene``, bpy_lib's
        box (:data:`~llm3d.sections.SCENE_LIMIT`; with the mesh's when it reaches beyond), so
        that size and place show as in the dataset's views; ``object``, the mesh's own
        bounding box. Give two meshes the same box to compare them (:func:`render_pair`).

    Returns
    -------
    list of Path
        One PNG a view, in the order of ``config.views``.

    Raises
    ------
    MeshError
        For an empty or non-finite mesh (nothing to frame).
    """
    config = config or RenderConfig()
    v = np.ascontiguousarray(vertices, dtype=np.float32).reshape(-1, 3)
    f = np.ascontiguousarray(faces, dtype=np.int32).reshape(-1, 3)
    if len(v) == 0 or len(f) == 0:
        raise MeshError("nothing to render: the mesh has no faces")
    if not np.isfinite(v).all():
        raise MeshError("cannot render a mesh with non-finite (NaN or inf) vertices")
    if f.min() < 0 or f.max() >= len(v):
        raise MeshError("faces index vertices that do not exist")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    if bounds is None:
        lo, hi = v.min(axis=0).astype(np.float64), v.max(axis=0).astype(np.float64)
        if config.frame == "scene":  # bpy_lib's box, grown only by a mesh reaching beyond it
            lo, hi = np.minimum(lo, -SCENE_LIMIT), np.maximum(hi, SCENE_LIMIT)
    else:
        lo = np.asarray(bounds[0], dtype=np.float64).reshape(3)
        hi = np.asarray(bounds[1], dtype=np.float64).reshape(3)
    centre = (lo + hi) / 2.0
    radius = max(float(np.linalg.norm(hi - lo)) / 2.0, 1e-6)
    corners = np.array(
        [[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
    )
    corners -= centre

    scene = bpy.data.scenes.new(_PREFIX)
    mesh = _build_mesh(v, f)
    material = _material(config)
    if material is not None:
        mesh.materials.append(material)
    obj = bpy.data.objects.new(_PREFIX, mesh)
    camera_data = bpy.data.cameras.new(_PREFIX)
    camera_data.angle = math.radians(FOV_DEG)
    camera = bpy.data.objects.new(_PREFIX + "_camera", camera_data)
    objects = [obj, camera]
    lights: list[Any] = []
    world_name = ""
    paths: list[Path] = []
    try:
        scene.collection.objects.link(obj)
        scene.collection.objects.link(camera)
        scene.camera = camera
        world_name = _configure(scene, config)
        if config.engine == "cycles":
            sun_data: Any = bpy.data.lights.new(_PREFIX, type="SUN")
            sun_data.energy = 3.0
            lights.append(sun_data)
            sun = bpy.data.objects.new(_PREFIX + "_sun", sun_data)
            objects.append(sun)
            sun.parent = camera  # the light turns with the camera
            sun.rotation_euler = (math.radians(-25), math.radians(25), 0.0)
            scene.collection.objects.link(sun)
        for view in config.views:
            rotation, distance = _frame(view, corners)
            camera.rotation_euler = rotation.to_euler()
            camera.location = camera_position(view, centre, distance).tolist()
            camera_data.clip_start = distance * 1e-3
            camera_data.clip_end = distance + radius * 4.0
            path = out / f"{prefix}{view.name}.png"
            scene.render.filepath = str(path)
            with _quiet_stdout():
                bpy.ops.render.render(write_still=True, scene=scene.name)
            paths.append(path)
    finally:
        for created in reversed(objects):
            bpy.data.objects.remove(created)
        bpy.data.scenes.remove(scene)
        bpy.data.meshes.remove(mesh)
        bpy.data.cameras.remove(camera_data)
        for light in lights:
            bpy.data.lights.remove(light)
        scene_world: Any = bpy.data.worlds.get(world_name)
        if scene_world is not None:
            bpy.data.worlds.remove(scene_world)
        if material is not None:
            bpy.data.materials.remove(material)
    logger.debug("rendered %d views into %s", len(paths), out)
    return paths


def render_pair(
    gt: tuple[npt.ArrayLike, npt.ArrayLike],
    pred: tuple[npt.ArrayLike, npt.ArrayLike] | None,
    out_dir: str | Path,
    *,
    config: RenderConfig | None = None,
) -> tuple[list[Path], list[Path]]:
    """Render a ground truth and a prediction framed by the same box (the union of both).

    Each mesh framed by its own box would hide a wrong size or place; sharing the box shows
    them, as the metrics (computed in the ground truth's frame) see them.

    Parameters
    ----------
    gt : ((n, 3) float, (m, 3) int)
        The ground truth's vertices and faces.
    pred : ((n, 3) float, (m, 3) int) or None
        The prediction's, or None when it has no mesh (then only the ground truth is drawn).
    out_dir : str or Path
        Folder of the PNGs (``gt_<view>.png``, ``pred_<view>.png``).

    Returns
    -------
    (list of Path, list of Path)
        The ground truth's views and the prediction's (empty without a prediction).
    """
    gt_v = np.asarray(gt[0], dtype=np.float64).reshape(-1, 3)
    boxes = [gt_v]
    pred_v = None
    if pred is not None:
        pred_v = np.asarray(pred[0], dtype=np.float64).reshape(-1, 3)
        if len(pred_v) and np.isfinite(pred_v).all():
            boxes.append(pred_v)
    stacked = np.concatenate(boxes)
    box = (stacked.min(axis=0), stacked.max(axis=0))
    gt_views = render_views(gt[0], gt[1], out_dir, config=config, prefix="gt_", bounds=box)
    pred_views: list[Path] = []
    if pred is not None:
        pred_views = render_views(
            pred[0], pred[1], out_dir, config=config, prefix="pred_", bounds=box
        )
    return gt_views, pred_views
