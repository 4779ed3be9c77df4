"""The Blender side of bpy_lib: parts as mesh objects, read and written through the data API.

Every handle is an object name. A *part* is a mesh object with faces; a *curve* is a mesh
object with only vertices and edges (a polyline, open or closed) that sweeps consume. The
object's location is the part's pivot; its rotation and scale stay identity, so mesh
coordinates plus location are world coordinates. Nothing here uses ``bpy.ops``.
"""

from __future__ import annotations

from typing import Any, cast

import bpy
import numpy as np

from bpy_lib import _validate as check
from bpy_lib._geom import FaceGroups, FloatArray, IntArray, pack, unpack

KIND = "bpy_lib_kind"
CLOSED = "bpy_lib_closed"
PART = "part"
CURVE = "curve"


def _collection() -> bpy.types.Collection:
    scene = bpy.context.scene
    if scene is None:
        raise RuntimeError("bpy_lib needs a Blender scene; none is active")
    return scene.collection


def prop(obj: bpy.types.Object, key: str) -> object:
    """A custom property of an object, or ``None`` (the stubs type ``get`` as returning None)."""
    return cast(Any, obj).get(key)


def _mesh(obj: bpy.types.Object) -> bpy.types.Mesh:
    return cast(bpy.types.Mesh, obj.data)


def handles(kind: str = PART) -> list[str]:
    """Names of the objects of one kind in the scene, sorted."""
    return sorted(o.name for o in _collection().all_objects if prop(o, KIND) == kind)


def get(fn: str, arg: str, value: object, kinds: tuple[str, ...] = (PART,)) -> bpy.types.Object:
    """Resolve a handle, or raise an error that lists what exists."""
    what = " or ".join(kinds)
    if not isinstance(value, str):
        raise TypeError(f"{fn}({arg}): expected the name of a {what}, got {value!r}")
    obj: bpy.types.Object | None = cast(Any, bpy.data.objects).get(value)
    if obj is None or prop(obj, KIND) not in kinds:
        known = [h for k in kinds for h in handles(k)]
        listing = ", ".join(repr(h) for h in known[:20]) or "none yet"
        raise ValueError(f"{fn}({arg}): no {what} named {value!r}; existing: {listing}")
    return obj


def _build_mesh(
    name: str,
    verts: FloatArray,
    groups: FaceGroups,
    edges: IntArray | None = None,
) -> bpy.types.Mesh:
    me = bpy.data.meshes.new(name)
    me.vertices.add(len(verts))
    me.vertices.foreach_set("co", np.ascontiguousarray(verts, dtype=np.float32).ravel())
    corners, starts = pack(groups)
    if len(starts):
        me.loops.add(len(corners))
        me.loops.foreach_set("vertex_index", corners.astype(np.int32))
        me.polygons.add(len(starts))
        me.polygons.foreach_set("loop_start", starts.astype(np.int32))
    if edges is not None and len(edges):
        me.edges.add(len(edges))
        me.edges.foreach_set("vertices", np.ascontiguousarray(edges, dtype=np.int32).ravel())
    me.update(calc_edges=bool(len(starts)))
    return me


def new_object(
    fn: str,
    user_name: str | None,
    verts: FloatArray,
    groups: FaceGroups,
    location: tuple[float, float, float] = (0.0, 0.0, 0.0),
    *,
    kind: str = PART,
    edges: IntArray | None = None,
    closed: bool = False,
) -> str:
    """Link a new object made of local ``verts``/``groups`` at ``location``; return its name."""
    if user_name is not None and user_name in bpy.data.objects:
        raise ValueError(
            f"{fn}(name): the name {user_name!r} is already used; choose another or leave it out"
        )
    base = user_name or fn
    me = _build_mesh(base, verts, groups, edges)
    obj = bpy.data.objects.new(base, me)
    obj.location = location
    obj[KIND] = kind
    if kind == CURVE:
        obj[CLOSED] = closed
    _collection().objects.link(obj)
    me.name = obj.name
    return obj.name


def read(obj: bpy.types.Object) -> tuple[FloatArray, FaceGroups]:
    """Local vertex coordinates ``(n, 3)`` and face groups of a mesh object."""
    me = _mesh(obj)
    n = len(me.vertices)
    co = np.empty(n * 3, np.float32)
    me.vertices.foreach_get("co", co)
    nl, npoly = len(me.loops), len(me.polygons)
    corners = np.empty(nl, np.int32)
    me.loops.foreach_get("vertex_index", corners)
    starts = np.empty(npoly, np.int32)
    me.polygons.foreach_get("loop_start", starts)
    groups = unpack(corners.astype(np.int64), starts.astype(np.int64))
    return co.reshape(n, 3).astype(np.float64), groups


def read_points(obj: bpy.types.Object) -> FloatArray:
    """Local vertex coordinates ``(n, 3)`` of a mesh object."""
    me = _mesh(obj)
    co = np.empty(len(me.vertices) * 3, np.float32)
    me.vertices.foreach_get("co", co)
    return co.reshape(-1, 3).astype(np.float64)


def location(obj: bpy.types.Object) -> FloatArray:
    """The object's location (its pivot) as a float array."""
    return np.array(obj.location[:], dtype=np.float64)


def world_points(obj: bpy.types.Object) -> FloatArray:
    """World vertex coordinates ``(n, 3)``."""
    return read_points(obj) + location(obj)


def write(obj: bpy.types.Object, verts: FloatArray, groups: FaceGroups) -> None:
    """Replace a part's mesh with local ``verts``/``groups`` (the old mesh is freed)."""
    old = _mesh(obj)
    obj.data = _build_mesh(obj.name, verts, groups)
    bpy.data.meshes.remove(old)
    _mesh(obj).name = obj.name


def set_points(obj: bpy.types.Object, verts: FloatArray) -> None:
    """Move a mesh's vertices in place (same topology)."""
    me = _mesh(obj)
    me.vertices.foreach_set("co", np.ascontiguousarray(verts, dtype=np.float32).ravel())
    me.update()


def apply_modifier(
    obj: bpy.types.Object, mod: bpy.types.Modifier, fn: str, empty: str = ""
) -> None:
    """Evaluate one modifier through the depsgraph and make its result the real mesh.

    Raises :class:`GeometryError` (with ``empty`` as the hint) when nothing is left.
    """
    try:
        depsgraph = bpy.context.evaluated_depsgraph_get()
        evaluated = obj.evaluated_get(depsgraph)
        new = bpy.data.meshes.new_from_object(evaluated)
    finally:
        obj.modifiers.remove(mod)
    if len(new.polygons) == 0:
        bpy.data.meshes.remove(new)
        hint = empty or "the part was left unchanged"
        raise check.GeometryError(f"{fn}: the result is empty (no faces); {hint}")
    old = _mesh(obj)
    obj.data = new
    bpy.data.meshes.remove(old)
    new.name = obj.name


def remove(obj: bpy.types.Object) -> None:
    """Delete an object and its mesh."""
    me = _mesh(obj)
    bpy.data.objects.remove(obj)
    if me is not None and me.users == 0:
        bpy.data.meshes.remove(me)


def face_count(obj: bpy.types.Object) -> int:
    """Number of polygons of a mesh object."""
    return len(_mesh(obj).polygons)


def duplicate(fn: str, obj: bpy.types.Object, user_name: str | None) -> bpy.types.Object:
    """A full copy (object and mesh) of ``obj`` linked to the scene, named ``user_name`` or auto."""
    if user_name is not None and user_name in bpy.data.objects:
        raise ValueError(
            f"{fn}(name): the name {user_name!r} is already used; choose another or leave it out"
        )
    new = obj.copy()
    new.data = _mesh(obj).copy()
    new.name = user_name or obj.name.split(".")[0]
    _collection().objects.link(new)
    _mesh(new).name = new.name
    return new


def transform(obj: bpy.types.Object, linear: FloatArray, flip: bool = False) -> None:
    """Apply a 3×3 linear map to the local coordinates; ``flip`` reverses the faces."""
    from mathutils import Matrix

    m4 = np.eye(4)
    m4[:3, :3] = linear
    me = _mesh(obj)
    me.transform(Matrix(m4.tolist()))
    if flip:
        me.flip_normals()
    me.update()
