"""Mesh checks shared by the bpy_lib tests (invariants, not stored answers)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

import bpy_lib


def volume(vertices: NDArray[np.float32], faces: NDArray[np.int32]) -> float:
    """Signed volume of a triangle mesh (positive when the faces point outwards)."""
    v = vertices.astype(np.float64)
    a, b, c = v[faces[:, 0]], v[faces[:, 1]], v[faces[:, 2]]
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def area(vertices: NDArray[np.float32], faces: NDArray[np.int32]) -> float:
    """Surface area of a triangle mesh."""
    v = vertices.astype(np.float64)
    a, b, c = v[faces[:, 0]], v[faces[:, 1]], v[faces[:, 2]]
    return float(np.linalg.norm(np.cross(b - a, c - a), axis=1).sum() / 2.0)


def is_closed_and_consistent(faces: NDArray[np.int32]) -> bool:
    """Every edge is used by exactly two triangles, once in each direction (watertight, oriented)."""
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    undirected = np.sort(directed, axis=1)
    _, counts = np.unique(undirected, axis=0, return_counts=True)
    _, dcounts = np.unique(directed, axis=0, return_counts=True)
    return bool(np.all(counts == 2) and np.all(dcounts == 1))


def scene_mesh() -> tuple[NDArray[np.float32], NDArray[np.int32]]:
    """The whole scene as exported."""
    return bpy_lib.export_scene()


def only(name: str) -> tuple[NDArray[np.float32], NDArray[np.int32]]:
    """The mesh of one part, as exported (all other parts deleted first)."""
    for other in bpy_lib.parts():
        if other != name:
            bpy_lib.delete(other)
    return bpy_lib.export_scene()


def box_of(vertices: NDArray[np.float32]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Axis-aligned bounding box ``(min, max)`` of an ``(n, 3)`` array."""
    v = vertices.astype(np.float64)
    return v.min(axis=0), v.max(axis=0)
