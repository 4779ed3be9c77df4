"""Booleans with Blender's exact solver: union, difference, intersection.

The first part keeps its name and receives the result; the other parts are consumed
(deleted). An empty result raises :class:`~bpy_lib._validate.GeometryError`.
"""

from __future__ import annotations

import bpy

from bpy_lib import _mesh

__all__ = ["difference", "intersection", "union"]


def _boolean(fn: str, operation: str, part: str, others: tuple[str, ...], empty: str) -> str:
    obj = _mesh.get(fn, "part", part)
    if not others:
        raise TypeError(f"{fn}: expected at least one other part after {part!r}")
    tools: list[bpy.types.Object] = []
    for i, other in enumerate(others):
        tool = _mesh.get(fn, f"parts[{i + 1}]", other)
        if tool == obj or tool in tools:
            raise ValueError(f"{fn}: the part {other!r} is given twice; name each part once")
        tools.append(tool)
    for tool in tools:
        mod = obj.modifiers.new(fn, "BOOLEAN")
        mod.operation = operation  # type: ignore[attr-defined]
        mod.solver = "EXACT"  # type: ignore[attr-defined]
        mod.object = tool  # type: ignore[attr-defined]
        _mesh.apply_modifier(obj, mod, fn, empty)
    for tool in tools:
        _mesh.remove(tool)
    return obj.name


def union(part: str, *others: str) -> str:
    """Merge parts into the first one (exact boolean union); the others are consumed."""
    return _boolean("union", "UNION", part, others, "check the parts")


def difference(part: str, *cutters: str) -> str:
    """Cut the cutters out of part (exact); the cutters are consumed."""
    return _boolean(
        "difference",
        "DIFFERENCE",
        part,
        cutters,
        "the cutters remove the whole part; make them smaller or move them",
    )


def intersection(part: str, *others: str) -> str:
    """Keep only the volume shared by all parts (exact); the others are consumed."""
    return _boolean(
        "intersection",
        "INTERSECT",
        part,
        others,
        "the parts do not overlap; move them so they share some volume",
    )
