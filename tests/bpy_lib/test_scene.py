"""Scene and export: array contract, files that read back, determinism, join/duplicate/delete."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import trimesh

import bpy_lib as bl
from bpy_lib import examples
from tests.bpy_lib.helpers import volume

pytestmark = pytest.mark.blender


def test_export_contract() -> None:
    bl.box(size=1.0)
    bl.cylinder(radius=0.1, depth=0.5, location=[1, 0, 0], segments=8)
    bl.circle(radius=0.2)  # curves export nothing
    v, f = bl.export_scene()
    assert v.dtype == np.float32 and v.ndim == 2 and v.shape[1] == 3
    assert f.dtype == np.int32 and f.ndim == 2 and f.shape[1] == 3
    assert len(f) == 12 + 8 * 2 + 2 * 8  # box + cylinder side quads + two triangle fans
    assert f.min() == 0 and f.max() == len(v) - 1
    assert volume(v, f) > 1.0


def test_empty_scene_exports_empty_arrays() -> None:
    v, f = bl.export_scene()
    assert v.shape == (0, 3) and f.shape == (0, 3)


@pytest.mark.parametrize("suffix", [".obj", ".ply", ".glb"])
def test_export_files_read_back(tmp_path: Path, suffix: str) -> None:
    bl.box(size=[1.0, 0.5, 0.25], location=[0, 0, 0.5])
    v, f = bl.export_scene(str(tmp_path / f"part{suffix}"))
    mesh = trimesh.load(tmp_path / f"part{suffix}", force="mesh", process=False)
    assert len(mesh.faces) == len(f)
    if suffix == ".glb":  # glTF is Y-up: trimesh gives it back as stored
        np.testing.assert_allclose(
            mesh.bounds, [[-0.5, 0.375, -0.25], [0.5, 0.625, 0.25]], atol=1e-6
        )
    else:
        np.testing.assert_allclose(mesh.vertices, v, atol=1e-5)
    assert mesh.volume == pytest.approx(0.125, rel=1e-5)


def test_export_rejects_unknown_formats() -> None:
    with pytest.raises(ValueError, match=r"export_scene\(path\): expected a file name ending in"):
        bl.export_scene("part.stl")


def _digest() -> str:
    v, f = bl.export_scene()
    return hashlib.sha256(v.tobytes() + f.tobytes()).hexdigest()


def test_same_program_gives_byte_identical_arrays() -> None:
    digests = set()
    for path in (examples.HERE / "gear.py", examples.HERE / "teapot.py"):
        for _ in range(2):
            examples.run(path)
            digests.add((path.name, _digest()))
    assert len(digests) == 2


def test_join_duplicate_delete_bounds() -> None:
    a = bl.box(size=0.2, name="a")
    b = bl.box(size=0.2, location=[0.5, 0, 0], name="b")
    assert bl.join([a, b], name="pair") == "pair"
    assert bl.parts() == ["pair"]
    np.testing.assert_allclose(bl.bounds("pair"), [[-0.1, -0.1, -0.1], [0.6, 0.1, 0.1]], atol=1e-6)
    copy = bl.duplicate("pair", name="pair2")
    bl.move(copy, offset=[0, 0.5, 0])
    np.testing.assert_allclose(bl.bounds(), [[-0.1, -0.1, -0.1], [0.6, 0.6, 0.1]], atol=1e-6)
    bl.delete("pair")
    assert bl.parts() == ["pair2"]
    with pytest.raises(TypeError, match=r"join\(parts\): expected a list of at least 2"):
        bl.join(["pair2"])
    bl.clear_scene()
    with pytest.raises(ValueError, match=r"bounds: the scene has no parts yet"):
        bl.bounds()


def test_clear_scene_frees_names() -> None:
    assert bl.box(size=0.1) == "box"
    bl.clear_scene()
    assert bl.box(size=0.1) == "box"
