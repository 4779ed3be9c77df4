"""The render-match score (worker/render_match.py): silhouettes on plain or transparent
backgrounds, IoU and edge similarity, and the clear refusal of images it cannot read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from worker.render_match import (
    IOU_WEIGHT,
    MatchUnavailableError,
    match_views,
    silhouette,
)

GREY = 128.0


def canvas(size: int = 64, background: float = GREY) -> np.ndarray:
    image = np.full((size, size, 4), background, np.float32)
    image[..., 3] = 255.0
    return image


def square(x0: int, y0: int, side: int, shade: float = 200.0, size: int = 64) -> np.ndarray:
    image = canvas(size)
    image[y0 : y0 + side, x0 : x0 + side, :3] = shade
    return image


def disk(cx: float, cy: float, r: float, size: int = 64) -> np.ndarray:
    image = canvas(size)
    yy, xx = np.mgrid[0:size, 0:size]
    inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2
    image[inside, :3] = (200.0 - 60.0 * (xx[inside] - cx) / r)[:, None]  # shaded left to right
    return image


def test_identical_views_match_perfectly() -> None:
    view = disk(32, 32, 20)
    match = match_views([view, view], [view, view])
    assert match.score == pytest.approx(1.0)
    assert all(v.iou == 1.0 and v.edges == pytest.approx(1.0) for v in match.views)


def test_iou_is_the_overlap_of_the_silhouettes() -> None:
    reference = square(10, 10, 20)
    shifted = square(20, 10, 20)  # overlaps half: IoU = 200 / 600
    match = match_views([shifted], [reference])
    assert match.views[0].iou == pytest.approx(200 / 600)
    assert match.score < 0.6


def test_a_closer_shape_scores_higher() -> None:
    reference = disk(32, 32, 20)
    near = disk(33, 32, 19)
    square_one = square(12, 12, 40)
    far = square(2, 2, 10)
    scores = [match_views([c], [reference]).score for c in (reference, near, square_one, far)]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] == pytest.approx(1.0) and scores[-1] < 0.2


def test_edges_see_shading_the_silhouette_misses() -> None:
    reference = disk(32, 32, 20)
    flat = reference.copy()
    flat[np.abs(reference[..., 0] - GREY) > 12, :3] = 200.0  # same outline, no shading
    match = match_views([flat], [reference]).views[0]
    assert match.iou == 1.0
    assert match.edges < 0.99
    assert match.score == pytest.approx(IOU_WEIGHT + (1 - IOU_WEIGHT) * match.edges)


def test_a_render_of_another_size_is_resized_to_the_input(tmp_path: Path) -> None:
    from PIL import Image

    reference = disk(32, 32, 20)
    big = disk(64, 64, 40, size=128)
    Image.fromarray(reference.astype(np.uint8), "RGBA").save(tmp_path / "ref.png")
    Image.fromarray(big.astype(np.uint8), "RGBA").save(tmp_path / "cand.png")
    assert match_views([tmp_path / "cand.png"], [tmp_path / "ref.png"]).score > 0.9


def test_transparency_gives_the_silhouette() -> None:
    image = canvas()
    image[..., 3] = 0.0
    image[8:24, 8:40, 3] = 255.0
    mask, _ = silhouette(image)
    assert mask.sum() == 16 * 32


def test_a_photo_without_plain_background_is_refused_with_what_to_do() -> None:
    rng = np.random.default_rng(0)
    photo = canvas()
    photo[..., :3] = rng.uniform(0, 255, size=(64, 64, 3))
    with pytest.raises(MatchUnavailableError, match="plain background"):
        match_views([disk(32, 32, 20)], [photo])


def test_mismatched_view_lists_are_an_error() -> None:
    with pytest.raises(ValueError, match="one candidate render a view"):
        match_views([canvas()], [canvas(), canvas()])
    with pytest.raises(MatchUnavailableError, match="cannot read image"):
        match_views([canvas()], [Path("/nonexistent/view.png")])
