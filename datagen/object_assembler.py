"""Stage 2: object programs composed of labelled parts, and their difficulty (no Blender).

An object is a list of :class:`Part` (a label and the ``bpy_lib`` lines that build it);
:func:`assemble` writes it in the house style of DESIGN §6 / STYLE.md::

    from bpy_lib import *

    # object: chair
    # part_1: seat
    seat = box(...)
    # part_2: legs
    leg = cylinder(...)
    grid_array(leg, counts=[2, 2], spacing=[...])
    export_scene()

The parts come from the category templates of :mod:`datagen.templates` (drawn by
:func:`make_object`, seeded), which build in bpy_lib's frame (Z up, inside [-1, 1]³) and
express symmetric parts with ``mirror``/``*_array`` calls. :func:`difficulty` ranks an
object easy/medium/hard by its part count and the kinds of operations it uses (the
curriculum of DESIGN §6).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from datagen.families import ops_used, sample_rng
from datagen.templates import TEMPLATES, Part
from llm3d.exceptions import ConfigError

__all__ = [
    "DIFFICULTIES",
    "OP_WEIGHTS",
    "Category",
    "ObjectProgram",
    "assemble",
    "complexity",
    "difficulty",
    "load_categories",
    "make_object",
    "part_body",
]

DIFFICULTIES = ("easy", "medium", "hard")

#: How much each kind of operation adds to an object's complexity (primitives add 0).
OP_WEIGHTS: dict[str, float] = {
    **dict.fromkeys(("move", "rotate", "scale", "mirror", "align", "align_axis"), 0.25),
    **dict.fromkeys(("linear_array", "grid_array", "radial_array", "duplicate", "join"), 0.5),
    **dict.fromkeys(("polyline", "polygon", "rectangle", "rounded_rectangle", "circle"), 0.25),
    **dict.fromkeys(("arc", "bezier", "helix"), 0.5),
    **dict.fromkeys(("extrude", "revolve"), 1.0),
    **dict.fromkeys(("sweep", "loft"), 1.5),
    **dict.fromkeys(("union", "difference", "intersection"), 1.5),
    **dict.fromkeys(("bevel", "solidify", "subdivide"), 1.0),
    **dict.fromkeys(("taper", "twist", "bend", "simple_deform"), 1.0),
}
#: complexity ≤ EASY_MAX is easy, ≤ MEDIUM_MAX medium, else hard.
EASY_MAX = 3.5
MEDIUM_MAX = 6.0


@dataclass(frozen=True)
class Category:
    """One entry of ``configs/categories.yaml``."""

    name: str
    weight: float
    template: str
    noun: str


@dataclass(frozen=True)
class ObjectProgram:
    """An object of a category: its parts and what is derived from them."""

    id: str
    category: str
    noun: str
    parts: tuple[Part, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def code(self) -> str:
        return assemble(self.noun, self.parts)

    @property
    def n_parts(self) -> int:
        return len(self.parts)

    @property
    def ops(self) -> list[str]:
        return ops_used(self.code)

    @property
    def complexity(self) -> float:
        return complexity(self.code, self.n_parts)

    @property
    def difficulty(self) -> str:
        return difficulty(self.code, self.n_parts)


def assemble(name: str, parts: Sequence[Part]) -> str:
    """The program of an object: header, ``# part_k: label`` before each part, export last.

    Raises
    ------
    ValueError
        When there are no parts, or a part calls ``export_scene``/``clear_scene`` itself.
    """
    if not parts:
        raise ValueError(f"object {name!r} has no parts")
    lines = ["from bpy_lib import *", "", f"# object: {name}"]
    for k, part in enumerate(parts, 1):
        if "export_scene(" in part.code or "clear_scene(" in part.code:
            raise ValueError(f"part {part.label!r}: export_scene/clear_scene belong to the object")
        lines.append(f"# part_{k}: {part.label}")
        lines.extend(part.code.strip().splitlines())
    lines.append("export_scene()")
    return "\n".join(lines) + "\n"


def part_body(program: str) -> str:
    """A one-part program's body: without its import, ``# part_`` comments and export."""
    keep = []
    for line in program.splitlines():
        text = line.strip()
        if not text or text.startswith(
            ("from bpy_lib import", "# part_", "# object:", "export_scene(")
        ):
            continue
        keep.append(line)
    return "\n".join(keep)


def complexity(code: str, n_parts: int) -> float:
    """Part count plus the weights of the operations used (each kind counted once)."""
    return n_parts + sum(OP_WEIGHTS.get(op, 0.0) for op in ops_used(code))


def difficulty(code: str, n_parts: int) -> str:
    """``easy`` / ``medium`` / ``hard`` from :func:`complexity`."""
    score = complexity(code, n_parts)
    if score <= EASY_MAX:
        return "easy"
    return "medium" if score <= MEDIUM_MAX else "hard"


def load_categories(path: str | Path) -> dict[str, Category]:
    """Read ``configs/categories.yaml``; every template must exist.

    Raises
    ------
    ConfigError
        For a missing file, a malformed entry or an unknown template, naming it.
    """
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"categories file not found: {file} (see configs/categories.yaml)")
    data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    entries = data.get("categories") if isinstance(data, Mapping) else None
    if not isinstance(entries, Mapping) or not entries:
        raise ConfigError(f"{file}: expected a 'categories:' mapping of name -> settings")
    out: dict[str, Category] = {}
    for name, entry in entries.items():
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{file}: category {name!r} must be a mapping")
        template = str(entry.get("template", name))
        if template not in TEMPLATES:
            raise ConfigError(
                f"{file}: category {name!r} uses unknown template {template!r}; "
                f"known: {', '.join(TEMPLATES)}"
            )
        weight = float(entry.get("weight", 1.0))
        if weight < 0:
            raise ConfigError(f"{file}: category {name!r} has a negative weight")
        out[str(name)] = Category(str(name), weight, template, str(entry.get("noun", name)))
    return out


def make_object(category: Category, seed: int, index: int) -> ObjectProgram:
    """Object ``index`` of ``category`` in a run seeded with ``seed`` (deterministic)."""
    salt = zlib.crc32(category.name.encode("utf-8"))
    rng = sample_rng(seed, (salt << 24) + index)
    parts = TEMPLATES[category.template](rng)
    return ObjectProgram(
        id=f"{category.name}-{index:05d}",
        category=category.name,
        noun=category.noun,
        parts=tuple(parts),
    )
