"""Multi-view rendering (real Blender) and the comparison grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from llm3d.config import RenderConfig, ViewConfig
from llm3d.exceptions import MeshError
from tests.helpers import meshes
from worker.grid import comparison_grid, format_metric

pytestmark = pytest.mark.blender

SMALL = RenderConfig(resolution=64, frame="object")  # each mesh's own box (the scene's:
# tests/datagen/test_render_stage.py)


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def background_colour(image: np.ndarray) -> np.ndarray:
    return image[0, 0]


@pytest.fixture(scope="module")
def render():  # type: ignore[no-untyped-def]
    bpy_render = pytest.importorskip("worker.render")
    return bpy_render.render_views


def test_writes_one_square_png_per_configured_view(render, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    paths = render(*meshes.parts_object(10), tmp_path / "views")
    assert [p.name for p in paths] == ["front.png", "side.png", "top.png", "three_quarter.png"]
    for path in paths:
        with Image.open(path) as image:
            assert image.size == (256, 256) and image.mode == "RGB"


def test_each_view_shows_the_object_in_its_centre(render, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for path in render(*meshes.unit_cube(centre=(10.0, -3.0, 2.0)), tmp_path, config=SMALL):
        image = pixels(path)
        bg = background_colour(image)
        # the corners are background, the centre is object
        for corner in (image[0, 0], image[0, -1], image[-1, 0], image[-1, -1]):
            assert np.array_equal(corner, bg)
        centre = image[24:40, 24:40]
        assert (np.abs(centre - bg).sum(axis=-1) > 30).all(), path.name


def test_the_object_fills_the_frame(render, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (front,) = render(
        *meshes.box((4.0, 1.0, 1.0)),
        tmp_path,
        config=RenderConfig(
            resolution=64, views=[ViewConfig(name="f", azimuth_deg=0, elevation_deg=0)]
        ),
    )
    image = pixels(front)
    columns = (np.abs(image - background_colour(image)).sum(axis=-1) > 30).any(axis=0)
    # a 4×1 box seen from the front spans most of the width, whatever its size
    assert 0.7 < columns.mean() < 0.95


def test_rendering_is_deterministic(render, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    mesh = meshes.parts_object(6, seed=3)
    first = render(*mesh, tmp_path / "a", config=SMALL)
    second = render(*mesh, tmp_path / "b", config=SMALL)
    for a, b in zip(first, second, strict=True):
        assert np.array_equal(pixels(a), pixels(b))


def test_views_differ_and_follow_the_rig(render, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rig = RenderConfig(
        resolution=48,
        views=[
            ViewConfig(name="front", azimuth_deg=0, elevation_deg=0),
            ViewConfig(name="top", azimuth_deg=0, elevation_deg=90),
        ],
    )
    # an L of two boxes: its front and top silhouettes differ
    a, fa = meshes.box((1.0, 0.2, 0.2))
    b, fb = meshes.box((0.2, 0.2, 1.0), centre=(0.4, 0.0, 0.5))
    front, top = render(
        np.vstack([a, b]), np.vstack([fa, fb + len(a)]), tmp_path, config=rig, prefix="x_"
    )
    assert (front.name, top.name) == ("x_front.png", "x_top.png")
    assert not np.array_equal(pixels(front), pixels(top))


def test_render_leaves_no_data_behind(render, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import bpy

    before = {
        k: len(getattr(bpy.data, k)) for k in ("objects", "meshes", "scenes", "cameras", "worlds")
    }
    render(*meshes.unit_cube(), tmp_path, config=SMALL)
    after = {k: len(getattr(bpy.data, k)) for k in before}
    assert after == before


def test_cycles_option_renders(render, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = RenderConfig(resolution=32, engine="cycles", cycles_samples=2)
    first = render(*meshes.unit_cube(), tmp_path / "a", config=config)
    second = render(*meshes.unit_cube(), tmp_path / "b", config=config)
    assert len(first) == 4
    assert np.array_equal(pixels(first[3]), pixels(second[3]))


def test_unrenderable_meshes_are_refused(render, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(MeshError, match="no faces"):
        render(*meshes.empty(), tmp_path)
    vertices, faces = meshes.unit_cube()
    vertices[0, 0] = np.nan
    with pytest.raises(MeshError, match="non-finite"):
        render(vertices, faces, tmp_path)


# ----------------------------------------------------------------------------- grid


def _solid(path: Path, colour: tuple[int, int, int], size: int = 40) -> Path:
    Image.new("RGB", (size, size), colour).save(path)
    return path


@pytest.mark.parametrize("pred_count", [2, 0])
def test_comparison_grid_places_both_rows_and_the_metrics(tmp_path: Path, pred_count: int) -> None:
    gt = [_solid(tmp_path / f"g{i}.png", (255, 0, 0)) for i in range(2)]
    pred = [_solid(tmp_path / f"p{i}.png", (0, 0, 255)) for i in range(pred_count)]
    metrics = {"f_score_0.05": 0.5, "chamfer_l2": float("inf"), "reward": None}
    out = comparison_grid(gt, pred, metrics, tmp_path / "sub" / "grid.png", title="task 1")
    image = pixels(out)
    height, width, _ = image.shape
    assert height > 80 and width > 80  # two rows of 40 px, the label column, the text
    label = width - 80
    assert (image[:40, label:] == [255, 0, 0]).all()
    if pred_count:
        assert (image[40:80, label:] == [0, 0, 255]).all()
    text = image[80:]
    assert (text < 128).any()  # the metrics are written


def test_comparison_grid_rejects_mismatched_rows(tmp_path: Path) -> None:
    gt = [_solid(tmp_path / "g.png", (0, 0, 0))]
    with pytest.raises(ValueError, match="ground-truth"):
        comparison_grid([], [], {}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="prediction views"):
        comparison_grid(gt, gt * 2, {}, tmp_path / "x.png")


def test_format_metric() -> None:
    assert format_metric(0.123456) == "0.1235"
    assert format_metric(float("inf")) == "inf"
    assert format_metric(float("nan")) == "nan"


def _object_share(path: Path) -> float:
    image = pixels(path)
    return float((np.abs(image - background_colour(image)).sum(axis=-1) > 30).mean())


def test_render_pair_shows_a_wrong_size_that_separate_framing_hides(tmp_path: Path) -> None:
    render_module = pytest.importorskip("worker.render")
    front = RenderConfig(
        resolution=64, frame="object", views=[ViewConfig(name="f", azimuth_deg=0, elevation_deg=0)]
    )
    gt = meshes.unit_cube()
    half = (np.asarray(gt[0]) * 0.5, gt[1])
    # framed alone, a half-size cube looks exactly like the cube
    (alone,) = render_module.render_views(*half, tmp_path / "alone", config=front)
    (gt_alone,) = render_module.render_views(*gt, tmp_path / "gt_alone", config=front)
    assert _object_share(alone) == pytest.approx(_object_share(gt_alone), abs=0.02)
    # framed together, the prediction covers about a quarter of the ground truth's area
    gt_views, pred_views = render_module.render_pair(gt, half, tmp_path / "pair", config=front)
    ratio = _object_share(pred_views[0]) / _object_share(gt_views[0])
    assert 0.15 < ratio < 0.35
    # without a prediction only the ground truth is drawn
    gt_only, none = render_module.render_pair(gt, None, tmp_path / "gt_only", config=front)
    assert none == [] and len(gt_only) == 1
