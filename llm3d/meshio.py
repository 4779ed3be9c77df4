"""Reading mesh files into ``(vertices, faces)`` arrays with trimesh (no Blender): the one reader
of ground-truth mesh files, for the reward, the task registry, the environment and the CLI.

OBJ, PLY, STL, GLB/GLTF and OFF are read; a file holding a scene of several objects is
flattened into one mesh with each object's transform applied.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from llm3d.exceptions import MeshError

__all__ = ["MESH_SUFFIXES", "load_mesh"]

MESH_SUFFIXES: frozenset[str] = frozenset({".obj", ".ply", ".stl", ".glb", ".gltf", ".off"})


def load_mesh(path: str | Path) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Read a triangle mesh from a file.

    Parameters
    ----------
    path : str or Path
        An ``.obj``, ``.ply``, ``.stl``, ``.glb``, ``.gltf`` or ``.off`` file.

    Returns
    -------
    vertices : (n, 3) float64
    faces : (m, 3) int64
        Triangles (polygons are triangulated by trimesh); a scene is concatenated.

    Raises
    ------
    MeshError
        When the file is missing, has another suffix, or trimesh cannot read it.
    """
    import trimesh

    file = Path(path)
    if not file.is_file():
        raise MeshError(f"mesh file not found: {file}")
    suffix = file.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise MeshError(
            f"{file}: unsupported mesh format {suffix!r}; use one of "
            f"{', '.join(sorted(MESH_SUFFIXES))}"
        )
    try:
        loaded = trimesh.load(file, force=None, process=False)
    except Exception as exc:  # trimesh raises many types for malformed files
        raise MeshError(f"{file}: trimesh could not read it: {exc}") from exc
    if isinstance(loaded, trimesh.Scene):
        meshes = [g for g in loaded.dump() if isinstance(g, trimesh.Trimesh)]
        if not meshes:
            return np.zeros((0, 3), dtype=np.float64), np.zeros((0, 3), dtype=np.int64)
        combined = trimesh.util.concatenate(meshes)
        if not isinstance(combined, trimesh.Trimesh):
            raise MeshError(f"{file}: its objects could not be joined into one mesh")
        mesh = combined
    elif isinstance(loaded, trimesh.Trimesh):
        mesh = loaded
    else:
        raise MeshError(
            f"{file}: holds a {type(loaded).__name__}, not a triangle mesh (a point cloud "
            "or a path cannot be scored)"
        )
    vertices = np.asarray(mesh.vertices, dtype=np.float64).reshape(-1, 3)
    faces = np.asarray(mesh.faces, dtype=np.int64).reshape(-1, 3)
    return vertices, faces
