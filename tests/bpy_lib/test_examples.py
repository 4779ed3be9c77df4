"""Every example program: the model's program shape, runs, fits the frame, matches its snapshot.

The snapshot (``examples_expected.json``: face count and bounding box of each example) turns
any change of the library's geometry into a visible diff. After an intended change rewrite
it with ``.venv/bin/python -m tests.bpy_lib.test_examples`` and review the diff.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from bpy_lib import examples

pytestmark = pytest.mark.blender

SNAPSHOT = Path(__file__).with_name("examples_expected.json")
PROGRAMS = examples.paths()


def measure(path: Path) -> dict[str, object]:
    """Face count and rounded bounding box of one example."""
    v, f = examples.run(path)
    return {
        "faces": len(f),
        "min": np.round(v.min(axis=0).astype(np.float64), 4).tolist(),
        "max": np.round(v.max(axis=0).astype(np.float64), 4).tolist(),
    }


def test_there_are_at_least_25_examples() -> None:
    assert len(PROGRAMS) >= 25


@pytest.mark.parametrize("path", PROGRAMS, ids=[p.stem for p in PROGRAMS])
def test_program_shape(path: Path) -> None:
    lines = [ln.rstrip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    assert lines[0] == "from bpy_lib import *"
    assert lines[-1] == "export_scene()"
    numbers = [int(m.group(1)) for ln in lines if (m := re.match(r"# part_(\d+): \S", ln))]
    assert numbers == list(range(1, len(numbers) + 1)) and numbers


@pytest.mark.parametrize("path", PROGRAMS, ids=[p.stem for p in PROGRAMS])
def test_example_runs_and_matches_snapshot(path: Path) -> None:
    got = measure(path)
    lo, hi = np.array(got["min"]), np.array(got["max"])
    assert np.all(lo >= -1.0) and np.all(hi <= 1.0), "the object must fit in [-1, 1]^3"
    assert (hi - lo).max() >= 1.0, "examples should use the frame, not a corner of it"
    expected = json.loads(SNAPSHOT.read_text(encoding="utf-8"))[path.stem]
    assert got["faces"] == expected["faces"]
    np.testing.assert_allclose(lo, expected["min"], atol=2e-4)
    np.testing.assert_allclose(hi, expected["max"], atol=2e-4)


def test_snapshot_lists_exactly_the_examples() -> None:
    assert sorted(json.loads(SNAPSHOT.read_text(encoding="utf-8"))) == [p.stem for p in PROGRAMS]


if __name__ == "__main__":
    SNAPSHOT.write_text(
        json.dumps({p.stem: measure(p) for p in PROGRAMS}, indent=1, sort_keys=True) + "\n",
        encoding="utf-8",
    )
