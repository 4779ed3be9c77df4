"""Any mesh made ready for the part fitter: checked, cleaned and brought into ``bpy_lib``'s frame.

``bpy_lib`` programs live in a small frame: the object fits in ``[-1, 1]³``, lengths lie in
``(0, 2]``, points in ``[-2, 2]`` and numbers are written with two decimals. Meshes made by
others come in millimetres, metres or inches, anywhere in space. :func:`prepare_mesh`
checks a mesh (one line saying what is wrong when it cannot be used), drops what cannot be
sampled (faces without area, vertices no face uses) and, when the mesh does not already sit
in the frame at a size two decimals can describe, moves and scales it there. The transform
is a :class:`FrameTransform`, recorded with the fitted program so that the program's mesh
can be put back where the original was (no Blender).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from llm3d.exceptions import MeshError

__all__ = ["FIT_SIZE", "FRAME_MODES", "FrameTransform", "prepare_mesh"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: The longest side of a normalised mesh: inside bpy_lib's [-1, 1]³ with room for the
#: optimiser to overshoot, large enough that two decimals are 0.3 % of the size.
FIT_SIZE = 1.8

#: A mesh is fitted where it is when its box lies in this cube ...
FRAME_LIMIT = 1.0
#: ... and its longest side is at least this (two decimals describe it to ~2 %).
MIN_KEPT_SIZE = 0.25

#: ``auto``: normalise only what is outside the frame or too small; ``keep``: never (parts
#: of one object keep the object's frame); ``normalise``: always.
FRAME_MODES = ("auto", "keep", "normalise")


@dataclass(frozen=True)
class FrameTransform:
    """The similarity that took the input mesh into the fitted program's frame.

    ``fitted = (original - centre) * scale``; :meth:`to_original` undoes it.

    Attributes
    ----------
    centre : (3,) float
        The point of the input that became the origin (its bounding box's centre).
    scale : float
        The uniform factor applied after the shift (1 when the mesh was kept as it was).
    """

    centre: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: float = 1.0

    @property
    def identity(self) -> bool:
        return self.scale == 1.0 and not any(self.centre)

    def to_fitted(self, points: npt.ArrayLike) -> FloatArray:
        """Input-frame ``(n, 3)`` points in the program's frame."""
        array = np.asarray(points, dtype=np.float64)
        return np.asarray((array - np.asarray(self.centre)) * self.scale, dtype=np.float64)

    def to_original(self, points: npt.ArrayLike) -> FloatArray:
        """Program-frame ``(n, 3)`` points (e.g. the program's mesh) back in the input's frame."""
        array = np.asarray(points, dtype=np.float64)
        return np.asarray(array / self.scale + np.asarray(self.centre), dtype=np.float64)

    def as_dict(self) -> dict[str, object]:
        return {
            "centre": [float(c) for c in self.centre],
            "scale": float(self.scale),
            "meaning": "fitted = (original - centre) * scale",
        }


def prepare_mesh(
    vertices: npt.ArrayLike, faces: npt.ArrayLike, *, frame: str = "auto"
) -> tuple[FloatArray, IntArray, FrameTransform]:
    """Check, clean and place a mesh for fitting.

    Parameters
    ----------
    vertices : (n, 3) float
    faces : (m, 3) int
    frame : {"auto", "keep", "normalise"}
        See :data:`FRAME_MODES`.

    Returns
    -------
    vertices : (k, 3) float64
        In the program's frame; only vertices that a kept face uses.
    faces : (j, 3) int64
        The faces with positive area (repeated-index and zero-area faces dropped).
    transform : FrameTransform

    Raises
    ------
    MeshError
        One line saying what is wrong: no vertices, no faces, non-finite coordinates, wrong
        shapes or indices, no face with area.
    ValueError
        For an unknown ``frame``.
    """
    if frame not in FRAME_MODES:
        raise ValueError(f"frame must be one of {', '.join(FRAME_MODES)}, got {frame!r}")
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces)
    if v.size == 0:
        raise MeshError("the mesh is empty (no vertices); give a triangle mesh with faces")
    if v.ndim != 2 or v.shape[1] != 3:
        raise MeshError(f"vertices must be an (n, 3) array of coordinates, got shape {v.shape}")
    if f.size == 0:
        raise MeshError(
            f"the mesh has {len(v)} vertices but no faces (a point cloud?); "
            "the fitter needs a triangle mesh"
        )
    if f.ndim != 2 or f.shape[1] != 3 or not np.issubdtype(f.dtype, np.integer):
        raise MeshError(
            f"faces must be an (m, 3) array of integer vertex indices, got shape {f.shape} "
            f"of {f.dtype}; triangulate polygons first"
        )
    f = f.astype(np.int64, copy=False)
    if f.min() < 0 or f.max() >= len(v):
        raise MeshError(
            f"faces index vertices {int(f.min())}..{int(f.max())}, but the mesh has only "
            f"{len(v)} vertices (0..{len(v) - 1})"
        )
    bad = ~np.isfinite(v).all(axis=1)
    if bad.any():
        raise MeshError(
            f"{int(bad.sum())} of {len(v)} vertices have non-finite (NaN or inf) coordinates; "
            "fix or remove them"
        )
    # faces with area (relative to the mesh's size: a cleaner than float64 round-off)
    size = float(np.ptp(v, axis=0).max())
    if not size > 0.0 or not np.isfinite(size):
        raise MeshError("all vertices are at one point (the box has zero size); nothing to fit")
    unit = (v - v.min(axis=0)) / size
    tri = unit[f]
    doubled = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    f = f[doubled > 1e-12]
    if not len(f):
        raise MeshError(
            "no face of the mesh has any area (all degenerate: repeated or collinear "
            "vertices); nothing to fit"
        )
    used, local = np.unique(f, return_inverse=True)
    v = v[used]
    f = local.reshape(-1, 3).astype(np.int64)
    transform = _placement(v, frame)
    return transform.to_fitted(v), f, transform


def _placement(vertices: FloatArray, frame: str) -> FrameTransform:
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    longest = float((hi - lo).max())
    inside = bool((lo >= -FRAME_LIMIT).all() and (hi <= FRAME_LIMIT).all())
    if frame == "keep" or (frame == "auto" and inside and longest >= MIN_KEPT_SIZE):
        return FrameTransform()
    centre = (lo + hi) / 2
    return FrameTransform(
        centre=(float(centre[0]), float(centre[1]), float(centre[2])), scale=FIT_SIZE / longest
    )
