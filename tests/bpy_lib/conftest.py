"""Fixtures of the bpy_lib tests: they run in real Blender (the ``bpy`` wheel).

Without the wheel the whole folder is skipped at collection (install the ``blender`` extra).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest

HAVE_BPY = importlib.util.find_spec("bpy") is not None
collect_ignore_glob = [] if HAVE_BPY else ["test_*.py", "helpers.py"]


@pytest.fixture(autouse=True)
def _empty_scene() -> Iterator[None]:
    """Every test starts from (and leaves) an empty scene."""
    import bpy_lib

    bpy_lib.clear_scene()
    yield
    bpy_lib.clear_scene()
