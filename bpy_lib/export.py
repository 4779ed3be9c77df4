"""Reading the scene as arrays, and mesh file writers in plain numpy (OBJ, PLY, GLB).

:func:`scene_arrays` is the one extraction path (and :func:`mesh_from_arrays` its inverse, for
the renderer and the add-on): ``export_scene()`` returns it and the
executor calls it after a program ends, so both see the same arrays. It reads loop
triangles with ``foreach_get`` (no exporters, no ``bpy.ops``). The writers use no Blender
operators and no optional packages: the bytes depend only on the arrays.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import cast

import bpy
import numpy as np
from numpy.typing import NDArray

from bpy_lib import _mesh

FORMATS = (".obj", ".ply", ".glb")

#: The kind of a bpy_lib part (a mesh object); curves have another kind.
PART = _mesh.PART


def kind_of(obj: bpy.types.Object) -> object:
    """What bpy_lib made ``obj`` as (:data:`PART`, a curve's kind), or ``None`` when bpy_lib
    did not make it (an artist's own object)."""
    return _mesh.prop(obj, _mesh.KIND)


def mark_part(obj: bpy.types.Object) -> None:
    """Tag ``obj`` as a bpy_lib part: :func:`scene_arrays` and the add-on then treat it as one."""
    obj[_mesh.KIND] = _mesh.PART


def _triangles(obj: bpy.types.Object) -> tuple[NDArray[np.float32], NDArray[np.int32]]:
    me = cast(bpy.types.Mesh, obj.data)
    me.calc_loop_triangles()
    tris = np.empty(len(me.loop_triangles) * 3, np.int32)
    me.loop_triangles.foreach_get("vertices", tris)
    verts = (_mesh.read_points(obj) + _mesh.location(obj)).astype(np.float32)
    return verts, tris.reshape(-1, 3)


def scene_arrays() -> tuple[NDArray[np.float32], NDArray[np.int32]]:
    """Every part of the scene as one triangle mesh, parts in name order.

    Returns
    -------
    vertices : (N, 3) float32
        World coordinates.
    faces : (M, 3) int32
        Triangles indexing ``vertices``; curves and parts without faces contribute nothing.
    """
    verts_all: list[NDArray[np.float32]] = []
    faces_all: list[NDArray[np.int32]] = []
    offset = 0
    for handle in _mesh.handles(_mesh.PART):
        verts, faces = _triangles(bpy.data.objects[handle])
        if len(faces) == 0:
            continue
        verts_all.append(verts)
        faces_all.append(faces + offset)
        offset += len(verts)
    if not verts_all:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int32)
    return np.concatenate(verts_all), np.concatenate(faces_all).astype(np.int32)


def mesh_from_arrays(
    name: str, vertices: NDArray[np.float32], faces: NDArray[np.int32], *, calc_edges: bool = True
) -> bpy.types.Mesh:
    """A new mesh datablock of triangles, the inverse of :func:`scene_arrays`.

    Parameters
    ----------
    name : str
    vertices : (N, 3) float32
    faces : (M, 3) int32
        Indices into ``vertices``.
    calc_edges : bool
        Build the edges too (a mesh an artist edits needs them; a render does not).
    """
    vertices = np.ascontiguousarray(vertices, dtype=np.float32)
    faces = np.ascontiguousarray(faces, dtype=np.int32)
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(vertices))
    mesh.vertices.foreach_set("co", vertices.ravel())
    mesh.loops.add(faces.size)
    mesh.loops.foreach_set("vertex_index", faces.ravel())
    mesh.polygons.add(len(faces))
    mesh.polygons.foreach_set("loop_start", np.arange(0, faces.size, 3, dtype=np.int32))
    mesh.update(calc_edges=calc_edges)
    return mesh


def write_obj(path: Path, vertices: NDArray[np.float32], faces: NDArray[np.int32]) -> None:
    """Write ``v``/``f`` lines (1-based indices)."""
    with path.open("w", encoding="ascii") as fh:
        fh.write("# bpy_lib export\n")
        np.savetxt(fh, vertices, fmt="v %.6f %.6f %.6f")
        np.savetxt(fh, faces.astype(np.int64) + 1, fmt="f %d %d %d")


def write_ply(path: Path, vertices: NDArray[np.float32], faces: NDArray[np.int32]) -> None:
    """Write binary little-endian PLY with float vertices and triangle lists."""
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {len(vertices)}\nproperty float x\nproperty float y\nproperty float z\n"
        f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    tri = np.zeros(len(faces), dtype=[("n", "u1"), ("i", "<i4", (3,))])
    tri["n"] = 3
    tri["i"] = faces
    with path.open("wb") as fh:
        fh.write(header.encode("ascii"))
        fh.write(vertices.astype("<f4").tobytes())
        fh.write(tri.tobytes())


def write_glb(path: Path, vertices: NDArray[np.float32], faces: NDArray[np.int32]) -> None:
    """Write one glTF 2.0 binary with a single triangle mesh (glTF is Y-up: Z-up is turned)."""
    pos = np.ascontiguousarray(vertices[:, [0, 2, 1]] * np.array([1, 1, -1], np.float32))
    pos = pos.astype("<f4")
    idx = faces.astype("<u4").ravel()
    pos_bytes, idx_bytes = pos.tobytes(), idx.tobytes()
    binary = pos_bytes + idx_bytes
    binary += b"\0" * (-len(binary) % 4)
    lo = pos.min(axis=0).tolist() if len(pos) else [0.0, 0.0, 0.0]
    hi = pos.max(axis=0).tolist() if len(pos) else [0.0, 0.0, 0.0]
    doc = {
        "asset": {"version": "2.0", "generator": "bpy_lib"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1}]}],
        "buffers": [{"byteLength": len(binary)}],
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": len(pos_bytes), "target": 34962},
            {
                "buffer": 0,
                "byteOffset": len(pos_bytes),
                "byteLength": len(idx_bytes),
                "target": 34963,
            },
        ],
        "accessors": [
            {
                "bufferView": 0,
                "componentType": 5126,
                "count": len(pos),
                "type": "VEC3",
                "min": lo,
                "max": hi,
            },
            {"bufferView": 1, "componentType": 5125, "count": len(idx), "type": "SCALAR"},
        ],
    }
    text = json.dumps(doc, separators=(",", ":")).encode("ascii")
    text += b" " * (-len(text) % 4)
    total = 12 + 8 + len(text) + 8 + len(binary)
    with path.open("wb") as fh:
        fh.write(struct.pack("<III", 0x46546C67, 2, total))
        fh.write(struct.pack("<II", len(text), 0x4E4F534A) + text)
        fh.write(struct.pack("<II", len(binary), 0x004E4942) + binary)


def write(path: Path, vertices: NDArray[np.float32], faces: NDArray[np.int32]) -> None:
    """Write by suffix: .obj, .ply or .glb."""
    writers = {".obj": write_obj, ".ply": write_ply, ".glb": write_glb}
    writers[path.suffix.lower()](path, vertices, faces)
