"""llm3d's verifiers environment ``blender-3d`` (installable on its own: ``pip install -e .``).

``load_environment`` is imported lazily: the pure parts (:mod:`.dataset`,
:mod:`.harness`) are used by the evaluation runner without verifiers.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Blender3DEnvironment", "load_environment"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import blender_3d

        return getattr(blender_3d, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
