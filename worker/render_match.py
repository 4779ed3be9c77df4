"""How much a candidate's renders look like the views a model was given: a score that needs
no ground truth (plain numpy and Pillow, no Blender).

Best-of-N at test time renders each candidate program from the dataset's cameras
(:func:`worker.render.render_views`) and keeps the one whose renders match the input views
best. The definition, view by view, then the mean over the views:

- **silhouette**: the object's pixels. An image with transparency uses ``alpha > 127``.
  Otherwise the background is the median colour of the image's one-pixel border, and a pixel
  belongs to the object when any channel differs from it by more than :data:`BACKGROUND_TOL`.
  Our renders have a flat grey background, so this is exact for them. An image whose border
  is not one colour (fewer than :data:`UNIFORM_BORDER` of its pixels within the tolerance: a
  photo) cannot be matched: :class:`MatchUnavailableError` says so and what to use instead.
- ``iou``: intersection over union of the two silhouettes (1 when both are empty).
- ``edges``: the cosine similarity of the two grey images' Sobel gradient magnitudes inside
  the union of the silhouettes (shading and creases, not just the outline), clipped at 0.
- ``score = IOU_WEIGHT · iou + (1 − IOU_WEIGHT) · edges`` ∈ [0, 1].

A candidate image of another size than the input is resized to the input's size first. Our
renderer frames bpy_lib's box by default (``render.frame: scene``, as the dataset's views),
so the score sees size and place too; with ``render.frame: object`` each mesh fills its
views and the score compares shape and proportions only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from llm3d.exceptions import LLM3DError

__all__ = [
    "BACKGROUND_TOL",
    "IOU_WEIGHT",
    "MATCH_VERSION",
    "MAX_VIEW_PIXELS",
    "UNIFORM_BORDER",
    "MatchScore",
    "MatchUnavailableError",
    "PreparedView",
    "ViewMatch",
    "decode_png",
    "match_views",
    "prepare_view",
    "silhouette",
]

#: How far (0-255, any channel) a pixel may be from the background colour and still be background.
BACKGROUND_TOL = 12
#: The share of border pixels that must be the background colour for the image to count as
#: having a plain background.
UNIFORM_BORDER = 0.9
#: The most pixels an input view may have (a decompression bomb is refused, not decoded).
MAX_VIEW_PIXELS = 2048 * 2048
#: The name of this definition, in every answer of ``POST /select/batch``: change it when
#: the score changes (weights, silhouette rule), so that cached matches are not mixed.
MATCH_VERSION = "render-match-1"
#: Weight of the silhouette IoU against the edge similarity (see the module docstring).
IOU_WEIGHT = 0.7

Image = npt.NDArray[np.float32]  # (H, W, 4) RGBA in 0..255
Mask = npt.NDArray[np.bool_]


class MatchUnavailableError(LLM3DError, ValueError):
    """An input image has neither transparency nor a plain background: no silhouette."""


@dataclass(frozen=True)
class ViewMatch:
    """One view's comparison."""

    iou: float
    edges: float

    @property
    def score(self) -> float:
        return IOU_WEIGHT * self.iou + (1.0 - IOU_WEIGHT) * self.edges


@dataclass(frozen=True)
class MatchScore:
    """A candidate's match: the mean of its views' scores, and each view's parts."""

    score: float
    views: tuple[ViewMatch, ...]

    def as_dict(self) -> dict[str, object]:
        return {
            "score": round(self.score, 6),
            "views": [
                {"iou": round(v.iou, 6), "edges": round(v.edges, 6), "score": round(v.score, 6)}
                for v in self.views
            ],
        }


def _load(image: str | Path | Image, size: tuple[int, int] | None = None) -> Image:
    """RGBA float32 pixels of a file (or an array), resized to ``size`` = (width, height)."""
    from PIL import Image as PILImage

    if isinstance(image, np.ndarray):
        array = np.asarray(image, dtype=np.float32)
        if array.ndim == 2:
            array = np.repeat(array[..., None], 3, axis=2)
        if array.shape[2] == 3:
            array = np.concatenate([array, np.full((*array.shape[:2], 1), 255.0)], axis=2)
        if size is not None and (array.shape[1], array.shape[0]) != size:
            pil = PILImage.fromarray(np.clip(array, 0, 255).astype(np.uint8), "RGBA")
            array = np.asarray(pil.resize(size, PILImage.Resampling.BILINEAR), np.float32)
        return array
    try:
        with PILImage.open(image) as pil:
            rgba = pil.convert("RGBA")
            if size is not None and rgba.size != size:
                rgba = rgba.resize(size, PILImage.Resampling.BILINEAR)
            return np.asarray(rgba, dtype=np.float32)
    except OSError as exc:
        raise MatchUnavailableError(f"cannot read image {image}: {exc}") from exc


def decode_png(data: bytes, name: str = "the image") -> Image:
    """RGBA float32 pixels of an encoded image (PNG, or anything Pillow reads).

    Raises:
        MatchUnavailableError: ``data`` is not an image Pillow can read.
    """
    import io

    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        with PILImage.open(io.BytesIO(data)) as pil:
            if pil.width * pil.height > MAX_VIEW_PIXELS:
                raise MatchUnavailableError(
                    f"{name} is {pil.width}×{pil.height} pixels; at most {MAX_VIEW_PIXELS} "
                    "pixels are matched: send the views at the size the model saw them"
                )
            return np.asarray(pil.convert("RGBA"), dtype=np.float32)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise MatchUnavailableError(
            f"{name} is not a readable image ({exc}): send a PNG, base64-encoded"
        ) from exc


def silhouette(image: Image, *, name: str = "the image") -> tuple[Mask, npt.NDArray[np.float32]]:
    """The object's pixels and the background colour (RGB) of an RGBA image.

    Raises:
        MatchUnavailableError: the image has no transparency and no plain background.
    """
    alpha = image[..., 3]
    if float(alpha.min()) < 255.0:
        return alpha > 127.0, np.zeros(3, np.float32)
    rgb = image[..., :3]
    border = np.concatenate([rgb[0], rgb[-1], rgb[1:-1, 0], rgb[1:-1, -1]])
    background = np.median(border, axis=0).astype(np.float32)
    near = np.abs(border - background).max(axis=1) <= BACKGROUND_TOL
    if float(near.mean()) < UNIFORM_BORDER:
        raise MatchUnavailableError(
            f"{name} has neither transparency nor a plain background (only "
            f"{near.mean():.0%} of its border is one colour), so the object cannot be told "
            "from the background: use a render, a cut-out with alpha, or a photo on a plain "
            "background"
        )
    return np.abs(rgb - background).max(axis=2) > BACKGROUND_TOL, background


def _edges(image: Image, background: npt.NDArray[np.float32], mask: Mask) -> Image:
    """Sobel gradient magnitude of the grey image, the background made flat outside ``mask``."""
    rgb = np.where(mask[..., None], image[..., :3], background)
    grey = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    padded = np.pad(grey, 1, mode="edge")
    gx = (
        padded[:-2, 2:] + 2 * padded[1:-1, 2:] + padded[2:, 2:]
        - padded[:-2, :-2] - 2 * padded[1:-1, :-2] - padded[2:, :-2]
    )  # fmt: skip
    gy = (
        padded[2:, :-2] + 2 * padded[2:, 1:-1] + padded[2:, 2:]
        - padded[:-2, :-2] - 2 * padded[:-2, 1:-1] - padded[:-2, 2:]
    )  # fmt: skip
    magnitude: Image = np.hypot(gx, gy).astype(np.float32)
    return magnitude


@dataclass(frozen=True, eq=False)
class PreparedView:
    """An input view analysed once (:func:`prepare_view`): what every candidate is compared
    with, so that N candidates do not each decode and analyse it again."""

    name: str
    size: tuple[int, int]  # (width, height)
    mask: Mask
    edges: Image


def prepare_view(image: str | Path | Image, name: str | None = None) -> PreparedView:
    """The silhouette and edge image of an input view (a file or RGBA pixels).

    Raises:
        MatchUnavailableError: the view cannot be read or has no usable background.
    """
    if name is None:
        name = str(image) if not isinstance(image, np.ndarray) else "the view"
    pixels = _load(image)
    mask, background = silhouette(pixels, name=name)
    size = (pixels.shape[1], pixels.shape[0])
    return PreparedView(name, size, mask, _edges(pixels, background, mask))


def _match_view(candidate: Image, reference: PreparedView) -> ViewMatch:
    ref_mask = reference.mask
    cand_mask, cand_bg = silhouette(candidate, name=f"the candidate's render of {reference.name}")
    union = ref_mask | cand_mask
    if not union.any():
        return ViewMatch(1.0, 1.0)
    iou = float((ref_mask & cand_mask).sum() / union.sum())
    grown = union.copy()  # the outline's own gradient lies one pixel outside the silhouette
    grown[1:] |= union[:-1]
    grown[:-1] |= union[1:]
    grown[:, 1:] |= union[:, :-1]
    grown[:, :-1] |= union[:, 1:]
    a = reference.edges[grown]
    b = _edges(candidate, cand_bg, cand_mask)[grown]
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    edges = max(0.0, float(a @ b) / norm) if norm > 0 else float(np.array_equal(a, b))
    return ViewMatch(iou, edges)


def match_views(
    candidate: Sequence[str | Path | Image],
    reference: Sequence[str | Path | Image | PreparedView],
) -> MatchScore:
    """Score a candidate's renders against the input views, view by view, in order.

    Args:
        candidate: the candidate's renders (files or RGBA arrays), one a view.
        reference: the views the model was given, the same cameras in the same order (files,
            RGBA arrays, or :func:`prepare_view` s of them, to analyse each view once).

    Raises:
        ValueError: the two lists have different lengths or are empty.
        MatchUnavailableError: a view cannot be read or has no usable background.
    """
    if not reference or len(candidate) != len(reference):
        raise ValueError(
            f"match_views needs one candidate render a view: got {len(candidate)} renders "
            f"for {len(reference)} views"
        )
    views = []
    for index, (cand, ref) in enumerate(zip(candidate, reference, strict=True)):
        if not isinstance(ref, PreparedView):
            ref = prepare_view(ref, f"view {index}" if isinstance(ref, np.ndarray) else None)
        views.append(_match_view(_load(cand, size=ref.size), ref))
    return MatchScore(float(np.mean([v.score for v in views])), tuple(views))
