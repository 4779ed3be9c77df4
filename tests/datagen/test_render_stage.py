"""The dataset's views in real Blender: ``render.frame`` decides whether a model can read from
them the size and place that the metrics score in the ground truth's frame (DESIGN §3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from llm3d.config import RenderConfig, ViewConfig
from tests.helpers import meshes

pytestmark = pytest.mark.blender


def front(frame: str) -> RenderConfig:
    return RenderConfig(
        resolution=64, frame=frame, views=[ViewConfig(name="front", azimuth_deg=0, elevation_deg=0)]
    )


def silhouette(mesh: meshes.Mesh, out: Path, config: RenderConfig) -> np.ndarray:
    """The front view's object pixels (differing from the background corner)."""
    from datagen.render_stage import render_object

    (path,) = render_object(*mesh, out, config)
    image = np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)
    return np.abs(image - image[0, 0]).sum(axis=-1) > 30


def centroid(mask: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(mask)
    return np.array([cols.mean(), rows.mean()])


def test_scene_framing_shows_where_an_object_is_and_how_big(tmp_path: Path) -> None:
    """The default: the same cube moved or doubled gives another picture, as the metrics see
    another object (a model trained on these views can learn location and size)."""
    assert RenderConfig().frame == "scene"
    config = front("scene")
    left = silhouette(meshes.unit_cube(0.4, (-0.5, 0.0, 0.0)), tmp_path / "left", config)
    right = silhouette(meshes.unit_cube(0.4, (0.5, 0.0, 0.0)), tmp_path / "right", config)
    big = silhouette(meshes.unit_cube(0.8, (0.5, 0.0, 0.0)), tmp_path / "big", config)
    # half a unit of x moves the silhouette by about a quarter of the 64-pixel picture
    assert abs(centroid(right)[0] - centroid(left)[0]) > 10
    assert abs(centroid(right)[1] - centroid(left)[1]) < 2
    # twice the side: about four times the area (perspective makes it not exactly four)
    assert 3.0 < big.sum() / right.sum() < 5.5
    # the whole [-1, 1]^3 frame is in view: a cube at its corner is not cut off
    corner = silhouette(meshes.unit_cube(0.1, (0.95, 0.0, 0.95)), tmp_path / "corner", config)
    assert corner.any() and not (corner[0].any() or corner[:, -1].any())


def test_object_framing_hides_place_and_size(tmp_path: Path) -> None:
    """``frame: object`` fills the picture with each mesh: moved or scaled, the same view."""
    config = front("object")
    a = silhouette(meshes.unit_cube(0.4, (-0.5, 0.0, 0.0)), tmp_path / "a", config)
    b = silhouette(meshes.unit_cube(0.8, (0.5, 0.0, 0.0)), tmp_path / "b", config)
    assert (a != b).mean() < 0.01
