"""The plain-text API reference that goes into the model's system prompt.

It is generated from the signatures and the first docstring line of each public function,
so it cannot drift from the code. ``python -m bpy_lib`` rewrites
``docs/bpy_lib.md``.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from bpy_lib import arrays, booleans, curves, modifiers, primitives, scene, sweeps, transforms


def _names(text: str) -> tuple[str, ...]:
    return tuple(text.split())


FAMILIES: tuple[tuple[str, ModuleType, tuple[str, ...]], ...] = (
    (
        "Primitives (all also take location=[0, 0, 0], rotation=[0, 0, 0]; built along +Z)",
        primitives,
        _names("box cylinder cone sphere torus capsule wedge prism plane"),
    ),
    (
        "Curves (reusable inputs of sweeps; export no faces)",
        curves,
        _names("polyline bezier arc circle rectangle rounded_rectangle polygon helix"),
    ),
    ("Sweeps (return a new part)", sweeps, _names("extrude revolve sweep loft")),
    (
        "Booleans (exact; the first part keeps the result, the others are consumed)",
        booleans,
        _names("union difference intersection"),
    ),
    (
        "Transforms (in place; return the name)",
        transforms,
        _names("move rotate scale mirror align align_axis"),
    ),
    (
        "Arrays (copies merged into the part)",
        arrays,
        _names("linear_array grid_array radial_array"),
    ),
    (
        "Modifiers and deformers (applied)",
        modifiers,
        _names("bevel solidify subdivide taper twist bend simple_deform"),
    ),
    ("Scene", scene, _names("clear_scene join duplicate delete parts bounds export_scene")),
)

#: Parameters left out of the per-function lines because a heading or the header states them.
SHARED = {"bpy_lib.primitives": ("location", "rotation")}
COMMON = ("name",)

HEADER = """\
bpy_lib: build one object with `from bpy_lib import *`, then calls, then `export_scene()` last.
- Frame: right-handed, Z up, the object fits in [-1, 1]^3; lengths in (0, 2], points in [-2, 2].
- Angles in degrees; rotation=[x, y, z] is Euler XYZ. Use at most two decimals.
- Every creating call returns the part's name (a string); pass it to other calls.
  name="seat" names a part (names must be new); omitted, a name is made up.
- Rotations/scales turn about the part's pivot (where it was made) unless pivot=[x, y, z].
- 2-D curves lie in plane 'XY' (default), 'XZ' or 'YZ': point [u, v] -> [u, v, 0], [u, 0, v], [0, u, v].
- Mistakes raise ValueError/TypeError naming the function, the argument and the allowed values.
- Write one `# part_k: label` comment before each part.
"""

EXAMPLE = """\
Example:
from bpy_lib import *
# part_1: seat
seat = box(size=[0.8, 0.8, 0.08], round=0.02)
# part_2: legs
leg = cylinder(radius=0.03, depth=0.8, location=[0.35, 0.35, -0.44])
grid_array(leg, counts=[2, 2], spacing=[-0.7, -0.7])
# part_3: back
back = box(size=[0.8, 0.06, 0.8], location=[0, 0.37, 0.44])
export_scene()
"""


def _fmt_default(value: object) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(_fmt_default(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return repr(value)


def signature(func: Callable[..., object]) -> str:
    """``name(arg, arg=default, ...)`` without annotations and without ``name=None``."""
    items = []
    for p in inspect.signature(func).parameters.values():
        if p.name in COMMON or p.name in SHARED.get(func.__module__, ()):
            continue
        if p.kind is p.VAR_POSITIONAL:
            items.append(f"*{p.name}")
        elif p.default is p.empty:
            items.append(p.name)
        else:
            items.append(f"{p.name}={_fmt_default(p.default)}")
    return f"{func.__name__}({', '.join(items)})"


def summary(func: Callable[..., object]) -> str:
    """The first line of the docstring."""
    doc = inspect.getdoc(func) or ""
    return doc.splitlines()[0].rstrip(".") if doc else ""


def reference(*, short: bool = False) -> str:
    """The compact API reference (plain text, Markdown-friendly) for the model's prompt.

    ``short=True`` gives the reference for models with a small context (a 4 K local model):
    the rules and every signature, without the one-line summaries and the example (about
    half the tokens).
    """
    lines = [HEADER]
    for title, module, names in FAMILIES:
        lines.append(f"## {title}")
        for fname in names:
            func = getattr(module, fname)
            lines.append(signature(func) if short else f"{signature(func)}: {summary(func)}")
        lines.append("")
    if not short:
        lines.append(EXAMPLE)
    return "\n".join(lines)


def estimate_tokens(text: str) -> int:
    """Rough BPE token count: words and punctuation runs, long words counted per 4 letters.

    Calibrated to land near GPT/Qwen-style tokenisers on English and code (±15 %); no
    tokeniser vocabulary ships offline here.
    """
    count = 0
    for piece in re.findall(r"[A-Za-z]+|\d|\s+|[^\sA-Za-z\d]", text):
        if piece.isspace():
            count += max(0, piece.count("\n") - 1) + (1 if len(piece) > 4 else 0)
        elif piece.isalpha():
            count += max(1, (len(piece) + 3) // 5)
        else:
            count += 1
    return count


def write_markdown(path: Path) -> Path:
    """Write the reference to ``path`` (``docs/bpy_lib.md`` in the repository)."""
    body = reference()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "# bpy_lib reference\n\n"
        "Generated by `python -m bpy_lib` from the code; this exact text "
        "(between the fences) is what the model sees in its system prompt. "
        f"About {estimate_tokens(body)} tokens.\n\n```text\n" + body + "```\n",
        encoding="utf-8",
    )
    return path


DOCS_PATH = Path(__file__).resolve().parent.parent / "docs" / "bpy_lib.md"
