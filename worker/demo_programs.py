"""Candidate programs of every kind, for the demo, the farm's tests and its benchmark.

Plain strings (no Blender here): ground-truth objects written against ``bpy_lib``, their
exact and perturbed copies, broken programs, hostile ones the sandbox must stop, and
programs that never finish. Each kind says what the reward service must answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "BROKEN",
    "HOSTILE",
    "OBJECTS",
    "TIMEOUT",
    "Candidate",
    "perturb",
]

_TABLE = """\
from bpy_lib import *

# object name: table
# part_1: top
box(size=[1.2, 0.8, 0.06], location=[0.0, 0.0, 0.75])
# part_2: legs
cylinder(radius=0.04, depth=0.72, location=[0.52, 0.32, 0.36])
cylinder(radius=0.04, depth=0.72, location=[-0.52, 0.32, 0.36])
cylinder(radius=0.04, depth=0.72, location=[0.52, -0.32, 0.36])
cylinder(radius=0.04, depth=0.72, location=[-0.52, -0.32, 0.36])
export_scene()
"""

_SNOWMAN = """\
from bpy_lib import *

# object name: snowman
# part_1: body
sphere(radius=0.5, location=[0.0, 0.0, 0.5])
# part_2: head
sphere(radius=0.3, location=[0.0, 0.0, 1.2])
# part_3: hat
cylinder(radius=0.2, depth=0.3, location=[0.0, 0.0, 1.6])
export_scene()
"""

_LAMP = """\
from bpy_lib import *

# object name: lamp
# part_1: base
cylinder(radius=0.25, depth=0.05, location=[0.0, 0.0, 0.025])
# part_2: pole
cylinder(radius=0.03, depth=1.2, location=[0.0, 0.0, 0.65])
# part_3: shade
sphere(radius=0.22, location=[0.0, 0.0, 1.3])
export_scene()
"""

_SHELF = """\
from bpy_lib import *

# object name: shelf
# part_1: sides
box(size=[0.04, 0.3, 1.6], location=[-0.5, 0.0, 0.8])
box(size=[0.04, 0.3, 1.6], location=[0.5, 0.0, 0.8])
# part_2: boards
box(size=[1.0, 0.3, 0.03], location=[0.0, 0.0, 0.2])
box(size=[1.0, 0.3, 0.03], location=[0.0, 0.0, 0.8])
box(size=[1.0, 0.3, 0.03], location=[0.0, 0.0, 1.4])
export_scene()
"""

OBJECTS: dict[str, str] = {
    "table": _TABLE,
    "snowman": _SNOWMAN,
    "lamp": _LAMP,
    "shelf": _SHELF,
}
"""Ground-truth programs by name: small, quick, made of the first verbs bpy_lib offers."""

_FLOAT = re.compile(r"(?<![\w.])(-?\d+\.\d+)")


def perturb(code: str, factor: float = 1.15) -> str:
    """The program with every decimal literal multiplied by ``factor`` (sizes and places)."""
    return _FLOAT.sub(lambda m: f"{float(m.group(1)) * factor:.3f}", code)


@dataclass(frozen=True)
class Candidate:
    """A program and the statuses the reward service may answer for it."""

    name: str
    code: str
    expect: frozenset[str]


def _c(name: str, code: str, *expect: str) -> Candidate:
    return Candidate(name, code, frozenset(expect))


BROKEN: tuple[Candidate, ...] = (
    _c("empty", "", "empty"),
    _c("no_import", "# object name: box\nbox(size=[1, 1, 1])\n", "empty"),
    _c(
        "syntax_error",
        "from bpy_lib import *\n# part_1: top\nbox(size=[1, 1, 1]\n",
        "refused",
        "exec_failed",
    ),
    _c(
        "bad_argument",
        "from bpy_lib import *\n# part_1: top\nbox(size=[-1, 1, 1])\nexport_scene()\n",
        "exec_failed",
    ),
    _c(
        "unknown_verb",
        "from bpy_lib import *\n# part_1: top\nteleport(size=1)\nexport_scene()\n",
        "exec_failed",
    ),
    _c(
        "nothing_built", "from bpy_lib import *\n# part_1: nothing\nexport_scene()\n", "no_geometry"
    ),
)
"""Programs a model writes by mistake: each gets its gate, never an error of the service."""

_H = "from bpy_lib import *\n"
HOSTILE: tuple[Candidate, ...] = (
    _c("os_system", _H + "import os\nos.system('touch /tmp/llm3d-pwned')\n", "refused"),
    _c("dunder_import", _H + "__import__('os').system('id')\n", "refused"),
    _c("open_file", _H + "print(open('/etc/passwd').read())\n", "refused"),
    _c("subprocess", _H + "import subprocess\nsubprocess.run(['id'])\n", "refused"),
    _c("socket", _H + "import socket\nsocket.create_connection(('1.1.1.1', 80))\n", "refused"),
    _c("eval", _H + "eval('1 + 1')\n", "refused"),
    _c("subclasses", _H + "().__class__.__bases__[0].__subclasses__()\n", "refused"),
    _c("getattr", _H + "getattr(box, '__globals__')\n", "refused"),
    _c("memory_bomb", _H + "x = [0] * (10 ** 10)\n", "exec_failed"),
    _c("recursion", _H + "def f():\n    return f()\nf()\n", "exec_failed"),
    _c("crash_exit", _H + "raise SystemExit(3)\n", "exec_failed", "no_geometry"),
    _c("output_flood", _H + "print('x' * 10_000_000)\n", "exec_failed", "no_geometry"),
)
"""Programs that attack the sandbox: refused before running, or stopped by its limits."""

TIMEOUT = _c(
    "busy_loop",
    _H + "# part_1: none\nwhile True:\n    pass\n",
    "timeout",
)
"""A program that never finishes: the executor's wall-clock limit stops it."""
