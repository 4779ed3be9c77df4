"""Mesh fixtures as plain functions: each returns ``(vertices float64 (n, 3), faces int64 (m, 3))``.

Plain functions (not pytest fixtures) so tests, benchmarks and scripts can share them.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Mesh = tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]

_CUBE_VERTICES = np.array(
    [[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)], dtype=np.float64
)
# Outward-facing triangles of the cube above (two per side).
_CUBE_FACES = np.array(
    [
        [0, 1, 3], [0, 3, 2],  # x = -0.5
        [4, 6, 7], [4, 7, 5],  # x = +0.5
        [0, 4, 5], [0, 5, 1],  # y = -0.5
        [2, 3, 7], [2, 7, 6],  # y = +0.5
        [0, 2, 6], [0, 6, 4],  # z = -0.5
        [1, 5, 7], [1, 7, 3],  # z = +0.5
    ],
    dtype=np.int64,
)  # fmt: skip


def unit_cube(size: float = 1.0, centre: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> Mesh:
    """An axis-aligned cube of side ``size`` centred at ``centre`` (12 triangles)."""
    return _CUBE_VERTICES * size + np.asarray(centre), _CUBE_FACES.copy()


def box(
    extents: tuple[float, float, float], centre: tuple[float, float, float] = (0, 0, 0)
) -> Mesh:
    """An axis-aligned box with the given side lengths."""
    return _CUBE_VERTICES * np.asarray(extents) + np.asarray(centre), _CUBE_FACES.copy()


def sphere(
    radius: float = 0.5, subdivisions: int = 3, centre: tuple[float, float, float] = (0, 0, 0)
) -> Mesh:
    """An icosphere (outward normals)."""
    import trimesh

    mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return np.asarray(mesh.vertices) + np.asarray(centre), np.asarray(mesh.faces, dtype=np.int64)


def cylinder(radius: float = 0.3, height: float = 1.0, sections: int = 32) -> Mesh:
    """A closed cylinder along z, centred at the origin."""
    import trimesh

    mesh = trimesh.creation.cylinder(radius=radius, height=height, sections=sections)
    return np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64)


def flat_sheet(size: float = 1.0, z: float = 0.0) -> Mesh:
    """A square of side ``size`` in the plane ``z`` (two triangles, zero thickness)."""
    h = size / 2
    vertices = np.array([[-h, -h, z], [h, -h, z], [h, h, z], [-h, h, z]], dtype=np.float64)
    return vertices, np.array([[0, 1, 2], [0, 2, 3]], dtype=np.int64)


def single_point(point: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> Mesh:
    """One vertex used by one zero-area triangle: a mesh with no surface."""
    return np.array([point], dtype=np.float64), np.array([[0, 0, 0]], dtype=np.int64)


def empty() -> Mesh:
    """No vertices, no faces."""
    return np.zeros((0, 3), dtype=np.float64), np.zeros((0, 3), dtype=np.int64)


def flipped(mesh: Mesh) -> Mesh:
    """The same surface with every triangle's winding (so its normal) reversed."""
    vertices, faces = mesh
    return vertices.copy(), faces[:, ::-1].copy()


def with_duplicate_vertices(mesh: Mesh) -> Mesh:
    """The same surface where every face has its own copy of its three vertices."""
    vertices, faces = mesh
    return vertices[faces.reshape(-1)].copy(), np.arange(faces.size, dtype=np.int64).reshape(-1, 3)


def with_zero_area_faces(mesh: Mesh) -> Mesh:
    """The same surface plus degenerate triangles (a repeated vertex, three collinear points)."""
    vertices, faces = mesh
    extra_vertices = np.array([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.2, 0.0, 0.0]]) + vertices[0]
    n = len(vertices)
    extra_faces = np.array([[0, 0, 1], [n, n + 1, n + 2]], dtype=np.int64)
    return np.vstack([vertices, extra_vertices]), np.vstack([faces, extra_faces])


def parts_object(n_parts: int = 10, seed: int = 0) -> Mesh:
    """Several boxes and spheres side by side: a stand-in for a ``n_parts``-part object."""
    rng = np.random.default_rng(seed)
    vertices: list[npt.NDArray[np.float64]] = []
    faces: list[npt.NDArray[np.int64]] = []
    offset = 0
    for i in range(n_parts):
        centre = tuple(float(c) for c in rng.uniform(-1.0, 1.0, size=3))
        if i % 2:
            v, f = sphere(float(rng.uniform(0.1, 0.3)), 2, centre)  # type: ignore[arg-type]
        else:
            v, f = box(tuple(float(e) for e in rng.uniform(0.1, 0.6, size=3)), centre)  # type: ignore[arg-type]
        vertices.append(v)
        faces.append(f + offset)
        offset += len(v)
    return np.vstack(vertices), np.vstack(faces)
