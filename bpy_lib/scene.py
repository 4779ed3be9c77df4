"""Scene and export: clear_scene, parts, join, duplicate, delete, bounds, export_scene."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import cast

import bpy
import numpy as np
from numpy.typing import NDArray

from bpy_lib import _mesh
from bpy_lib import _validate as check
from bpy_lib import export as _export
from bpy_lib._geom import FaceGroups, FloatArray

__all__ = ["bounds", "clear_scene", "delete", "duplicate", "export_scene", "join", "parts"]


def clear_scene() -> None:
    """Remove every object and mesh so the program starts from an empty scene."""
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    for pool in (bpy.data.meshes, bpy.data.curves, bpy.data.cameras, bpy.data.lights):
        for block in list(pool):
            pool.remove(block)  # type: ignore[arg-type]


def parts() -> list[str]:
    """Names of all parts in the scene, sorted."""
    return _mesh.handles(_mesh.PART)


def join(parts: Sequence[str], name: str | None = None) -> str:
    """Merge several parts into one (no boolean: overlaps stay); returns the first part, renamed to name if given."""
    fn = "join"
    if isinstance(parts, str) or not isinstance(parts, Sequence) or len(parts) < 2:
        raise TypeError(f"{fn}(parts): expected a list of at least 2 part names, got {parts!r}")
    objs = [_mesh.get(fn, f"parts[{i}]", p) for i, p in enumerate(parts)]
    if len({o.name for o in objs}) != len(objs):
        raise ValueError(f"{fn}(parts): a part is listed twice; list each part once")
    new_name = check.name(fn, name)
    if new_name is not None and new_name in bpy.data.objects and new_name != objs[0].name:
        raise ValueError(f"{fn}(name): the name {new_name!r} is already used; choose another")
    first = objs[0]
    pivot = _mesh.location(first)
    verts_all: list[FloatArray] = []
    groups_all: FaceGroups = []
    offset = 0
    for obj in objs:
        verts, groups = _mesh.read(obj)
        verts_all.append(verts + _mesh.location(obj) - pivot)
        groups_all.extend(g + offset for g in groups)
        offset += len(verts)
    _mesh.write(first, np.concatenate(verts_all), groups_all)
    for obj in objs[1:]:
        _mesh.remove(obj)
    if new_name is not None:
        first.name = new_name
        cast(bpy.types.Mesh, first.data).name = new_name
    return first.name


def duplicate(part: str, name: str | None = None) -> str:
    """Copy a part (or curve); returns the copy's name."""
    fn = "duplicate"
    obj = _mesh.get(fn, "part", part, (_mesh.PART, _mesh.CURVE))
    return _mesh.duplicate(fn, obj, check.name(fn, name)).name


def delete(part: str) -> None:
    """Remove a part (or curve) from the scene."""
    _mesh.remove(_mesh.get("delete", "part", part, (_mesh.PART, _mesh.CURVE)))


def bounds(part: str | None = None) -> tuple[list[float], list[float]]:
    """World bounding box ([min x, y, z], [max x, y, z]) of one part or of all parts."""
    fn = "bounds"
    objs = (
        [_mesh.get(fn, "part", part)]
        if part is not None
        else [bpy.data.objects[h] for h in parts()]
    )
    if not objs:
        raise ValueError(f"{fn}: the scene has no parts yet; create one first")
    pts = np.concatenate([_mesh.world_points(o) for o in objs])
    return pts.min(axis=0).round(6).tolist(), pts.max(axis=0).round(6).tolist()


def export_scene(path: str | None = None) -> tuple[NDArray[np.float32], NDArray[np.int32]]:
    """Last call of every program: all parts as triangles (vertices N×3, faces M×3); path may end in .obj/.glb/.ply."""
    fn = "export_scene"
    target = None
    if path is not None:
        if not isinstance(path, str):
            raise TypeError(f"{fn}(path): expected a file name ending in .obj, .glb or .ply")
        target = Path(path)
        if target.suffix.lower() not in _export.FORMATS:
            raise ValueError(
                f"{fn}(path): expected a file name ending in .obj, .glb or .ply, got {path!r}"
            )
    vertices, faces = _export.scene_arrays()
    if target is not None:
        _export.write(target, vertices, faces)
    return vertices, faces
