"""Example programs of everyday objects, written the way the model should write them.

Each ``*.py`` file here is a complete program: ``from bpy_lib import *``, one
``# part_k: label`` comment per part, ``export_scene()`` last. :func:`run` executes one in
a clean scene and returns its mesh; tests, the benchmark and the contact sheet use it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

HERE = Path(__file__).resolve().parent


def paths() -> list[Path]:
    """The example programs, sorted by name."""
    return sorted(p for p in HERE.glob("*.py") if not p.name.startswith("_"))


def run(path: Path) -> tuple[NDArray[np.float32], NDArray[np.int32]]:
    """Run one example in an emptied scene; return ``(vertices (N, 3), faces (M, 3))``."""
    from bpy_lib import scene

    scene.clear_scene()
    code = compile(path.read_text(encoding="utf-8"), str(path), "exec")
    exec(code, {"__name__": "__bpy_lib_example__"})
    return scene.export_scene()
