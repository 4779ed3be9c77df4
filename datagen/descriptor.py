"""A cheap shape descriptor and a near-duplicate index over it (plain numpy, no Blender).

The descriptor of a mesh, in the GT frame of DESIGN §3 (its bounding box centred and
scaled into ``[-0.5, 0.5]³``), concatenates

- the box extents (3 values, the longest is 1): proportions and orientation,
- the per-axis standard deviation of area-uniform surface samples (3),
- a D2 histogram: distances between random pairs of samples (16 bins over [0, √3]),
- a histogram of the samples' distances from the box centre (8 bins over [0, √3/2]).

Two programs whose meshes are the same shape up to sampling noise land within a few
hundredths of each other; different families or visibly different parameters land
further apart. :class:`DescriptorIndex` answers "is there an earlier descriptor closer
than ``threshold``?" with a KD-tree rebuilt in batches plus a brute-force tail.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from worker.geometry.sampling import box_normalisation, sample_surface

__all__ = ["DESCRIPTOR_SIZE", "DescriptorIndex", "shape_descriptor"]

_D2_BINS = 16
_RADIAL_BINS = 8
DESCRIPTOR_SIZE = 3 + 3 + _D2_BINS + _RADIAL_BINS
_POINTS = 512

FloatArray = npt.NDArray[np.float64]


def shape_descriptor(
    vertices: npt.ArrayLike, faces: npt.ArrayLike, *, points: int = _POINTS, seed: int = 0
) -> npt.NDArray[np.float32]:
    """The descriptor of a triangle mesh.

    Parameters
    ----------
    vertices : (n, 3) float
    faces : (m, 3) int
    points : int
        Surface samples (512 is enough to tell shapes apart and costs well under 1 ms).
    seed : int
        Sampling seed (the same mesh always gives the same descriptor).

    Returns
    -------
    (DESCRIPTOR_SIZE,) float32

    Raises
    ------
    MeshError
        For an empty mesh or one whose box has zero size.
    """
    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    norm = box_normalisation(v)
    local = norm.apply(v)
    extents = local.max(axis=0) - local.min(axis=0)
    sample = sample_surface(local, f, points, seed).points
    spread = sample.std(axis=0)
    rng = np.random.default_rng(seed)
    a = sample[rng.integers(0, len(sample), points * 2)]
    b = sample[rng.integers(0, len(sample), points * 2)]
    d2 = np.linalg.norm(a - b, axis=1)
    d2_hist = np.histogram(d2, bins=_D2_BINS, range=(0.0, float(np.sqrt(3.0))))[0]
    radial = np.linalg.norm(sample, axis=1)
    radial_hist = np.histogram(radial, bins=_RADIAL_BINS, range=(0.0, float(np.sqrt(3.0) / 2)))[0]
    return np.concatenate(
        [
            extents,
            spread * 2.0,
            d2_hist / max(len(d2), 1) * 2.0,
            radial_hist / max(len(radial), 1) * 2.0,
        ]
    ).astype(np.float32)


class DescriptorIndex:
    """Descriptors seen so far; finds near-duplicates.

    Parameters
    ----------
    threshold : float
        A descriptor closer (Euclidean) than this to an earlier one is a near-duplicate.
    rebuild_every : int
        Descriptors added between KD-tree rebuilds (the newest are searched by brute force).
    """

    def __init__(self, threshold: float, rebuild_every: int = 2048) -> None:
        if threshold < 0:
            raise ValueError(f"threshold must be ≥ 0, got {threshold}")
        self.threshold = threshold
        self.rebuild_every = rebuild_every
        self._indexed = np.zeros((0, DESCRIPTOR_SIZE), dtype=np.float32)
        self._tail: list[npt.NDArray[np.float32]] = []
        self._tree: object | None = None

    def __len__(self) -> int:
        return len(self._indexed) + len(self._tail)

    def nearest_distance(self, descriptor: npt.ArrayLike) -> float:
        """Distance to the closest stored descriptor (``inf`` when there is none)."""
        d = np.asarray(descriptor, dtype=np.float32).reshape(1, -1)
        best = np.inf
        if self._tree is not None:
            dist, _ = self._tree.query(d, k=1)  # type: ignore[attr-defined]
            best = float(dist[0])
        if self._tail:
            tail = np.stack(self._tail)
            best = min(best, float(np.linalg.norm(tail - d, axis=1).min()))
        return best

    def is_duplicate(self, descriptor: npt.ArrayLike) -> bool:
        """True when an earlier descriptor is closer than the threshold."""
        return self.nearest_distance(descriptor) < self.threshold

    def add(self, descriptor: npt.ArrayLike) -> None:
        """Store one descriptor."""
        self._tail.append(np.asarray(descriptor, dtype=np.float32).reshape(-1))
        if len(self._tail) >= self.rebuild_every:
            self._rebuild()

    def extend(self, descriptors: npt.ArrayLike) -> None:
        """Store many descriptors at once (used when resuming a run)."""
        block = np.asarray(descriptors, dtype=np.float32).reshape(-1, DESCRIPTOR_SIZE)
        if len(block):
            self._tail.extend(block)
            self._rebuild()

    def _rebuild(self) -> None:
        from pykdtree.kdtree import KDTree

        self._indexed = np.concatenate([self._indexed, np.stack(self._tail)])
        self._tail = []
        self._tree = KDTree(self._indexed)
