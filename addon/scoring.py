"""Score: compare a result with a reference mesh using the project's own metrics.

The metrics are :mod:`worker.metrics` (DESIGN §3), the same code the reward farm uses, on
the evaluated, world-space triangles of the objects: the reference is the ground truth,
so the result is measured in the reference's frame (wrong size or place counts).
"""

from __future__ import annotations

from collections.abc import Iterable

import bpy
import numpy as np
import numpy.typing as npt

__all__ = ["ScoreUnavailableError", "object_triangles", "score_objects"]


class ScoreUnavailableError(RuntimeError):
    """The metrics cannot run in this Blender (a dependency is missing)."""


def object_triangles(
    objects: Iterable[bpy.types.Object], depsgraph: bpy.types.Depsgraph
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """World-space triangles of the evaluated meshes of ``objects`` (modifiers applied).

    Returns
    -------
    vertices : (n, 3) float
    faces : (m, 3) int
    """
    verts_all: list[npt.NDArray[np.float64]] = []
    faces_all: list[npt.NDArray[np.int64]] = []
    offset = 0
    for obj in objects:
        if obj.type != "MESH":
            continue
        evaluated = obj.evaluated_get(depsgraph)
        mesh = evaluated.to_mesh()
        try:
            mesh.calc_loop_triangles()
            co = np.empty(len(mesh.vertices) * 3, np.float32)
            mesh.vertices.foreach_get("co", co)
            tris = np.empty(len(mesh.loop_triangles) * 3, np.int32)
            mesh.loop_triangles.foreach_get("vertices", tris)
        finally:
            evaluated.to_mesh_clear()
        if len(tris) == 0:
            continue
        matrix = np.array(obj.matrix_world, dtype=np.float64)
        local = co.reshape(-1, 3).astype(np.float64)
        world = local @ matrix[:3, :3].T + matrix[:3, 3]
        verts_all.append(world)
        faces_all.append(tris.reshape(-1, 3).astype(np.int64) + offset)
        offset += len(world)
    if not verts_all:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    return np.concatenate(verts_all), np.concatenate(faces_all)


def score_objects(
    result: Iterable[bpy.types.Object],
    reference: Iterable[bpy.types.Object],
    depsgraph: bpy.types.Depsgraph,
    *,
    points: int = 10_000,
    seed: int = 0,
) -> dict[str, float]:
    """The §3 metrics of ``result`` against ``reference`` (the ground truth).

    Raises
    ------
    ScoreUnavailableError
        When :mod:`worker.metrics` or one of its dependencies cannot be imported.
    ValueError
        When either side has no faces (the message says which).
    """
    try:
        from worker.metrics import compute_metrics, prepare_ground_truth
    except ImportError as e:
        raise ScoreUnavailableError(
            f"Score needs the metrics package, which failed to load ({e}); "
            "reinstall the add-on zip built for this platform"
        ) from e
    gt_v, gt_f = object_triangles(reference, depsgraph)
    if len(gt_f) == 0:
        raise ValueError("the reference object has no faces; pick a mesh object")
    v, f = object_triangles(result, depsgraph)
    if len(f) == 0:
        raise ValueError("the result has no faces to score; Generate or Run first")
    try:
        gt = prepare_ground_truth(gt_v, gt_f, points=points, seed=seed)
        return compute_metrics(v, f, gt)
    except ImportError as e:  # numba: only for predictions far from the reference
        raise ScoreUnavailableError(
            f"this comparison needs {e.name or 'a module'} (not bundled with the add-on): "
            "the result is far from the reference; move it onto the reference and Score again"
        ) from e
