"""Mesh checks, normalisation and seeded area-uniform surface sampling (DESIGN §3).

Plain numpy, no Blender. Every function takes ``(n, 3)`` vertex and ``(m, 3)`` face arrays
(any real / integer dtype) and works in float64, so the metrics stay exact for huge
coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from llm3d.exceptions import MeshError

__all__ = [
    "Normalisation",
    "SampleStream",
    "SurfaceSample",
    "as_mesh_arrays",
    "box_normalisation",
    "is_finite_mesh",
    "sample_surface",
    "stream_seed",
]

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.int64]
Seed = int | np.random.SeedSequence


class SampleStream(IntEnum):
    """The independent random streams that one metrics seed gives (DESIGN §3).

    The ground truth and the prediction are each sampled from their **own** stream, as
    the CAD papers do: two meshes that share a triangulation (an exact copy, a copy moved
    or resized) must not be sampled at corresponding points, else the sampling floor
    vanishes and a copy of the ground truth's tessellation scores better than the shape
    deserves. The unit-cube Chamfer samples each mesh once more, from two further streams.
    """

    GROUND_TRUTH = 0
    PREDICTION = 1
    GROUND_TRUTH_UNIT = 2
    PREDICTION_UNIT = 3


def stream_seed(seed: int, stream: SampleStream) -> np.random.SeedSequence:
    """The seed of one sampling stream: ``numpy.random.SeedSequence(seed).spawn(4)[stream]``.

    Built directly from its spawn key (the same sequence, without spawning the others);
    the streams of one seed are statistically independent, and the same seed always
    gives the same streams.
    """
    if seed < 0:
        raise ValueError(f"a sampling seed must be a non-negative integer, got {seed}")
    return np.random.SeedSequence(int(seed), spawn_key=(int(stream),))


@dataclass(frozen=True)
class Normalisation:
    """A similarity transform ``x ↦ (x - centre) · scale`` (translation, then uniform scale).

    Attributes
    ----------
    centre : (3,) float
        Centre of the reference mesh's axis-aligned bounding box.
    scale : float
        1 / (longest side of that box).
    """

    centre: tuple[float, float, float]
    scale: float

    def apply(self, points: npt.ArrayLike) -> FloatArray:
        """Transform ``(n, 3)`` points into the normalised frame (float64)."""
        array = np.asarray(points, dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            return (array - np.asarray(self.centre, dtype=np.float64)) * self.scale


@dataclass(frozen=True, eq=False)
class SurfaceSample:
    """Points sampled on a surface with the unit normal of the face each lies on.

    Attributes
    ----------
    points : (n, 3) float64
    normals : (n, 3) float64
        Unit face normals; zero where the surface has no area (a point-only mesh).
    on_vertices : bool
        True when the mesh had no area and the points were drawn from its vertices (so
        many of them coincide).
    """

    points: FloatArray
    normals: FloatArray
    on_vertices: bool = False

    def __len__(self) -> int:
        return int(self.points.shape[0])


def as_mesh_arrays(vertices: npt.ArrayLike, faces: npt.ArrayLike) -> tuple[FloatArray, IndexArray]:
    """Validate and convert a mesh to ``(float64 (n, 3), int64 (m, 3))``.

    Raises
    ------
    MeshError
        When the shapes are wrong or a face indexes a vertex that does not exist.
    """
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces)
    if v.size == 0:
        v = v.reshape(0, 3)
    if f.size == 0:
        f = f.reshape(0, 3)
    if v.ndim != 2 or v.shape[1] != 3:
        raise MeshError(f"vertices must have shape (n, 3), got {v.shape}")
    if f.ndim != 2 or f.shape[1] != 3:
        raise MeshError(f"faces must be triangles with shape (m, 3), got {f.shape}")
    if f.size and not np.issubdtype(f.dtype, np.integer):
        raise MeshError(f"faces must hold integer vertex indices, got dtype {f.dtype}")
    f = f.astype(np.int64, copy=False)
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        raise MeshError(
            f"faces index vertices 0..{len(v) - 1}, but the indices span "
            f"{int(f.min())}..{int(f.max())}"
        )
    return v, f


def is_finite_mesh(vertices: npt.ArrayLike) -> bool:
    """True when every vertex coordinate is finite (no NaN or ±inf)."""
    return bool(np.isfinite(np.asarray(vertices, dtype=np.float64)).all())


def box_normalisation(vertices: npt.ArrayLike) -> Normalisation:
    """The transform that puts the vertices' bounding box centred in ``[-0.5, 0.5]³``.

    Raises
    ------
    MeshError
        For no vertices, non-finite vertices, or a box of zero size (a single point).
    """
    v = np.asarray(vertices, dtype=np.float64)
    if v.size == 0:
        raise MeshError("cannot normalise an empty mesh: it has no vertices")
    if not np.isfinite(v).all():
        raise MeshError("cannot normalise a mesh with non-finite (NaN or inf) vertices")
    lo, hi = v.min(axis=0), v.max(axis=0)
    # Halves first, so that coordinates near the float64 limit do not overflow.
    centre = lo / 2.0 + hi / 2.0
    longest = float((hi / 2.0 - lo / 2.0).max()) * 2.0
    if not longest > 0.0 or not np.isfinite(longest) or not np.isfinite(1.0 / longest):
        raise MeshError("cannot normalise a mesh whose bounding box has zero (or overflowing) size")
    return Normalisation(
        centre=(float(centre[0]), float(centre[1]), float(centre[2])), scale=1.0 / longest
    )


def face_areas_normals(vertices: FloatArray, faces: IndexArray) -> tuple[FloatArray, FloatArray]:
    """Triangle areas ``(m,)`` and unit normals ``(m, 3)`` (zero for zero-area faces)."""
    areas, normals, _ = _face_geometry(vertices, faces)
    return areas, normals


def _face_geometry(
    vertices: FloatArray, faces: IndexArray
) -> tuple[FloatArray, FloatArray, tuple[FloatArray, FloatArray, FloatArray]]:
    """Areas, unit normals, and each face's first corner and two edges from it."""
    tri = vertices[faces]
    origin = tri[:, 0]
    with np.errstate(over="ignore", invalid="ignore"):
        edge1, edge2 = tri[:, 1] - origin, tri[:, 2] - origin
        cross = np.cross(edge1, edge2)
        norm = np.linalg.norm(cross, axis=1)
    norm = np.where(np.isfinite(norm), norm, 0.0)
    normals = np.zeros_like(cross)
    good = norm > 0
    normals[good] = cross[good] / norm[good, None]
    return norm / 2.0, normals, (origin, edge1, edge2)


def sample_surface(
    vertices: npt.ArrayLike,
    faces: npt.ArrayLike,
    count: int,
    seed: Seed,
    *,
    by_face: bool = False,
) -> SurfaceSample:
    """Sample ``count`` points uniformly by area on a triangle mesh, seeded.

    Faces are drawn with probability proportional to their area (zero-area faces never),
    then a point uniformly inside the face (reflected barycentric coordinates). A mesh
    with no area at all (one point, a line, only degenerate faces) is sampled at its
    vertices instead, uniformly, with zero normals, so a point-like prediction still gets
    finite distances.

    Parameters
    ----------
    vertices : (n, 3) float
    faces : (m, 3) int
    count : int
        Number of points, ≥ 1.
    seed : int or numpy.random.SeedSequence
        Seed of ``numpy.random.default_rng``: the same inputs give the same sample. The
        metrics pass a :func:`stream_seed`, one stream per mesh.
    by_face : bool
        List the points face by face instead of in drawing order: the same set of points,
        but neighbours follow each other, which makes nearest-neighbour searches over them
        about a quarter faster (the metrics use it). Leave it off when taking a prefix of
        the sample as a random subset.

    Returns
    -------
    SurfaceSample
        ``count`` points and normals; empty when the mesh has no vertices.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    v, f = as_mesh_arrays(vertices, faces)
    rng = np.random.default_rng(seed)
    if len(v) == 0:
        empty = np.zeros((0, 3), dtype=np.float64)
        return SurfaceSample(empty, empty.copy())
    if len(f):
        areas, normals, (origin, edge1, edge2) = _face_geometry(v, f)
    else:
        areas, normals = np.zeros(0), np.zeros((0, 3))
    total = float(areas.sum())
    if not total > 0.0 or not np.isfinite(total):
        used = np.unique(f) if len(f) else np.arange(len(v))
        pick = used[rng.integers(0, len(used), size=count)]
        return SurfaceSample(
            v[pick].copy(), np.zeros((count, 3), dtype=np.float64), on_vertices=True
        )
    cumulative = np.cumsum(areas)
    face_index = np.searchsorted(cumulative, rng.random(count) * cumulative[-1], side="right")
    face_index = np.minimum(face_index, len(f) - 1)
    uv = rng.random((count, 2))
    flip = uv[:, 0] + uv[:, 1] > 1.0
    uv = np.where(flip[:, None], 1.0 - uv, uv)
    if by_face:  # the same points, in an order that keeps neighbours together (cache locality)
        order = _face_order(face_index, len(f))
        face_index, uv = face_index[order], uv[order]
    # corner + u·edge1 + w·edge2 with each face's edges computed once (bit for bit what
    # the per-point differences of its corners give)
    with np.errstate(over="ignore", invalid="ignore"):
        points = origin[face_index] + uv[:, :1] * edge1[face_index] + uv[:, 1:] * edge2[face_index]
    return SurfaceSample(points, normals[face_index])


def _face_order(face_index: IndexArray, n_faces: int) -> IndexArray:
    """A stable permutation sorting ``face_index`` (a radix sort when indices fit 16 bits)."""
    if n_faces <= np.iinfo(np.uint16).max:
        return np.argsort(face_index.astype(np.uint16), kind="stable")
    return np.argsort(face_index, kind="stable")
