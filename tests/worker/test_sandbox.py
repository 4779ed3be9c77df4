"""The AST policy and the verb guard on their own (no Blender): what passes, what is refused."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from llm3d.config import REPO_ROOT
from llm3d.program import imports_bpy_lib
from worker.sandbox.policy import (
    FORBIDDEN_NAMES,
    SAFE_BUILTIN_NAMES,
    check_policy,
    restricted_builtins,
)
from worker.sandbox.verb_guard import guard_verb, is_plain

BPY_LIB_NAMES = ["box", "cylinder", "sphere", "move", "export_scene", "union"]


def verdict(code: str, **kwargs: object):  # type: ignore[no-untyped-def]
    return check_policy(
        textwrap.dedent(code),
        ("bpy_lib", "math"),
        module_names={"bpy_lib": BPY_LIB_NAMES},
        **kwargs,  # type: ignore[arg-type]
    )


ALLOWED = {
    "star import": "from bpy_lib import *\nbox()\nexport_scene()",
    "named import": "from bpy_lib import box, move as mv\nmv(box(), [0, 0, 1])",
    "math": "from bpy_lib import *\nimport math\nfrom math import pi, cos as c\nx = math.sin(pi) + c(0)",
    "loops and functions": """
        from bpy_lib import *
        def leg(i, *, h=0.5):
            return box(size=[0.1, 0.1, h], location=[i, 0, 0])
        legs = [leg(i) for i in range(4)]
        for i, name in enumerate(legs):
            if i % 2:
                move(name, [0, 0, 0.1])
        total = sum(len(n) for n in legs)
        """,
    "literal format": 'from bpy_lib import *\nname = "leg_{}_{:02d}".format("a", 3)',
    "f-string": 'from bpy_lib import *\ni = 2\nname = f"leg_{i:02d}"',
    "main guard": 'from bpy_lib import *\nif __name__ == "__main__":\n    box()',
    "try/except": "from bpy_lib import *\ntry:\n    box()\nexcept ValueError as e:\n    print(e)",
    "lambda and comprehension": "from bpy_lib import *\nf = lambda x: x * 2\nd = {k: f(k) for k in range(3)}",
    "string methods": 'from bpy_lib import *\ns = "a,b".split(",")\nt = "-".join(s).upper()',
    "container methods": (
        "from bpy_lib import *\nxs = [3, 1, 2]\nxs.remove(1)\nxs.sort(reverse=True)\n"
        "d = {'a': 1}\nd.update(b=2)\nv = d.get('a')\ns = {1}\ns.discard(1)"
    ),
}


@pytest.mark.parametrize("code", ALLOWED.values(), ids=list(ALLOWED))
def test_ordinary_modeling_programs_are_allowed(code: str) -> None:
    result = verdict(code)
    assert result.ok, result.describe()
    assert result.imports_bpy_lib


REFUSED = {
    # (code, rule, line)
    "import os": ("from bpy_lib import *\nimport os", "import", 2),
    "import subprocess": ("from bpy_lib import *\nimport subprocess as sp", "import", 2),
    "from os import": ("from bpy_lib import *\nfrom os import system", "import", 2),
    "import bpy": ("from bpy_lib import *\nimport bpy", "import", 2),
    "plain import bpy_lib": ("from bpy_lib import *\nimport bpy_lib", "import", 2),
    "private bpy_lib name": ("from bpy_lib import _mesh", "private_name", 1),
    "non-public bpy_lib name": ("from bpy_lib import np", "forbidden_name", 1),
    "unknown bpy_lib name": ("from bpy_lib import frobnicate", "import", 1),
    "relative import": ("from bpy_lib import *\nfrom . import x", "import", 2),
    "submodule import": ("from bpy_lib import *\nfrom bpy_lib.scene import parts", "import", 2),
    "import math submodule": ("from bpy_lib import *\nimport math.foo", "import", 2),
    "unknown math name": ("from bpy_lib import *\nfrom math import nothing", "import", 2),
    "dunder attribute": ("from bpy_lib import *\nx = ().__class__", "private_name", 2),
    "subclasses walk": (
        "from bpy_lib import *\nfor c in ().__class__.__base__.__subclasses__(): pass",
        "private_name",
        2,
    ),
    "dunder name": ("from bpy_lib import *\nb = __builtins__", "private_name", 2),
    "assign __name__": ("from bpy_lib import *\n__name__ = 'x'", "private_name", 2),
    "private attribute": ("from bpy_lib import *\nx = box._cache", "private_name", 2),
    "exec alias": ("from bpy_lib import *\nf = exec", "forbidden_name", 2),
    "eval call": ("from bpy_lib import *\neval('1')", "forbidden_name", 2),
    "open": ("from bpy_lib import *\nopen('/tmp/x', 'w')", "forbidden_name", 2),
    "getattr": ("from bpy_lib import *\ngetattr(box, 'x')", "forbidden_name", 2),
    "globals": ("from bpy_lib import *\ng = globals()", "forbidden_name", 2),
    "vars": ("from bpy_lib import *\nv = vars()", "forbidden_name", 2),
    "compile": ("from bpy_lib import *\ncompile('1', 'x', 'eval')", "forbidden_name", 2),
    "breakpoint": ("from bpy_lib import *\nbreakpoint()", "forbidden_name", 2),
    "input": ("from bpy_lib import *\ninput()", "forbidden_name", 2),
    "type": ("from bpy_lib import *\nT = type('T', (), {})", "forbidden_name", 2),
    "bpy name": ("from bpy_lib import *\nbpy.ops.wm.quit_blender()", "forbidden_name", 2),
    "os name": ("from bpy_lib import *\nos.system('id')", "forbidden_name", 2),
    "shadowing a forbidden name": ("from bpy_lib import *\nsys = 1", "forbidden_name", 2),
    "generator frame": (
        "from bpy_lib import *\ng = (i for i in [1])\nf = g.gi_frame.f_back",
        "forbidden_attribute",
        3,
    ),
    "traceback frame": (
        "from bpy_lib import *\ntry:\n    box(size=-1)\nexcept Exception as e:\n    t = e.with_traceback",
        "forbidden_attribute",
        5,
    ),
    "array tofile": (
        "from bpy_lib import *\nv, f = export_scene()\nv.tofile('x')",
        "forbidden_attribute",
        3,
    ),
    "array ctypes": (
        "from bpy_lib import *\nv, f = export_scene()\np = v.ctypes",
        "forbidden_attribute",
        3,
    ),
    "array data": (
        "from bpy_lib import *\nv, f = export_scene()\nm = v.data",
        "forbidden_attribute",
        3,
    ),
    "array dump": (
        "from bpy_lib import *\nv, f = export_scene()\nv.dump('x')",
        "forbidden_attribute",
        3,
    ),
    "mro walk": ("from bpy_lib import *\nm = int.mro()", "forbidden_attribute", 2),
    "handlers": ("from bpy_lib import *\nx.app.handlers", "forbidden_attribute", 2),
    "format on a variable": ('from bpy_lib import *\ns = "{0}"\ns.format(1)', "format_string", 3),
    "format attribute walk": (
        'from bpy_lib import *\n"{0.__class__}".format(1)',
        "format_string",
        2,
    ),
    "format item walk": ('from bpy_lib import *\n"{0[x]}".format({})', "format_string", 2),
    "nested format spec walk": (
        'from bpy_lib import *\n"{0:{1.x}}".format(1, 2)',
        "format_string",
        2,
    ),
    "format_map on a variable": (
        'from bpy_lib import *\nt = "{a.b}"\nt.format_map({"a": 1})',
        "format_string",
        3,
    ),
    "class definition": ("from bpy_lib import *\nclass A:\n    pass", "statement", 2),
    "async": ("from bpy_lib import *\nasync def f():\n    pass", "statement", 2),
    "dunder argument": ("from bpy_lib import *\ndef f(__x):\n    return __x", "private_name", 2),
    "dunder keyword": ("from bpy_lib import *\nbox(__class__=1)", "private_name", 2),
    "global private": ("from bpy_lib import *\ndef f():\n    global _x", "private_name", 3),
}


@pytest.mark.parametrize(("code", "rule", "line"), REFUSED.values(), ids=list(REFUSED))
def test_hostile_constructs_are_refused_with_rule_and_line(code: str, rule: str, line: int) -> None:
    result = verdict(code)
    assert not result.ok
    assert (result.rule, result.line) == (rule, line), result.describe()
    described = result.describe()
    assert f"[{rule}]" in described and f"(line {line})" in described


def test_allowed_imports_are_configurable() -> None:
    code = "from bpy_lib import *\nimport math"
    assert check_policy(code, ("bpy_lib", "math")).ok
    refused = check_policy(code, ("bpy_lib",))
    assert (refused.rule, refused.line) == ("import", 2)
    assert "allowed: bpy_lib" in (refused.message or "")


def test_program_without_bpy_lib_import_is_flagged() -> None:
    assert not verdict("x = 1").imports_bpy_lib
    assert not verdict("import os").imports_bpy_lib  # empty comes before refused
    assert verdict("from bpy_lib import *\nimport os").imports_bpy_lib


def test_syntax_error_is_reported_with_its_line_not_as_refusal() -> None:
    result = verdict("from bpy_lib import *\nbox(\nx = = 1")
    assert result.rule == "syntax"
    assert result.line is not None and result.line >= 2
    assert result.describe().startswith("SyntaxError")
    assert result.imports_bpy_lib  # textual check: the gate then says exec_failed, not empty
    assert imports_bpy_lib("  from bpy_lib import box")
    assert not imports_bpy_lib("# no import here\nx = 1")


def test_size_limit() -> None:
    code = "from bpy_lib import *\n" + "# padding\n" * 1000
    assert verdict(code, max_code_bytes=len(code)).ok
    refused = verdict(code, max_code_bytes=100)
    assert refused.rule == "code_size"
    assert str(len(code)) in (refused.message or "")


def test_pathologically_nested_code_is_refused_not_crashing() -> None:
    deep = "from bpy_lib import *\nx = 1" + " + 1" * 200_000
    result = verdict(deep)
    assert not result.ok and result.rule == "too_complex"


def test_safe_builtins_hold_no_forbidden_name() -> None:
    assert not SAFE_BUILTIN_NAMES & FORBIDDEN_NAMES
    assert "print" in SAFE_BUILTIN_NAMES and "range" in SAFE_BUILTIN_NAMES
    assert not {n for n in SAFE_BUILTIN_NAMES if n.startswith("_")}


# -- the verb guard: what bpy_lib verbs may take and give back -----------------------------


def test_guarded_verb_refuses_paths_outside_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written: list[str] = []

    def export(path: str | None = None) -> str:
        written.append(str(path))
        return "done"

    monkeypatch.chdir(tmp_path)
    guarded = guard_verb(export)
    assert guarded() == "done" and guarded("mesh.obj") == "done"
    assert guarded(path="sub/mesh.obj") == "done"
    for bad in ("/etc/passwd", "../x.obj", "a/../../x.obj", ""):
        with pytest.raises(ValueError, match="plain file name"):
            guarded(bad)
    with pytest.raises(TypeError, match="file name"):
        guarded(path=3)
    assert written == ["None", "mesh.obj", "sub/mesh.obj"]


def test_guarded_verb_only_returns_plain_values() -> None:
    class Handle:
        secret = "bpy"

    assert guard_verb(lambda: ["a", 1, 2.0, None, (True,)])() == ["a", 1, 2.0, None, (True,)]
    arrays = guard_verb(lambda: (np.zeros((2, 3), np.float32), np.ones((1, 3), np.int32)))()
    # numpy arrays expose raw memory (resize(refcheck=False) was a use-after-free): programs
    # get tuples of plain numbers instead, and numpy scalars become int/float/bool
    assert arrays == (((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)), ((1, 1, 1),))
    assert type(arrays[0][0][0]) is float and type(arrays[1][0][0]) is int
    assert type(guard_verb(lambda: np.float32(1.5))()) is float
    assert type(guard_verb(lambda: {"n": np.int64(3)})()["n"]) is int
    with pytest.raises(TypeError, match="returned a str_subclass"):
        guard_verb(lambda: type("str_subclass", (str,), {})("x"))()
    assert guard_verb(Handle) is Handle  # classes (GeometryError) pass through unchanged
    with pytest.raises(TypeError, match="returned a Handle"):
        guard_verb(lambda: Handle())()
    with pytest.raises(TypeError, match="returned a list"):
        guard_verb(lambda: [Handle()])()
    with pytest.raises(TypeError, match="returned a ndarray"):
        guard_verb(lambda: np.array([Handle()], dtype=object))()


def test_guarded_verb_scrubs_objects_out_of_exception_arguments() -> None:
    class Handle:
        def __repr__(self) -> str:
            return "<Handle>"

    def broken() -> None:
        raise KeyError(Handle(), "plain")

    with pytest.raises(KeyError) as caught:
        guard_verb(broken)()
    assert caught.value.args == ("<Handle>", "plain")
    # no traceback into bpy_lib's frames, no chained cause or context to walk
    frames = []
    tb = caught.value.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert "broken" not in frames
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert is_plain({"a": [1, 2]}) and not is_plain({1: "a"}) and not is_plain(object())


def test_every_bpy_lib_example_passes_the_policy() -> None:
    examples = sorted((REPO_ROOT / "bpy_lib" / "examples").glob("[!_]*.py"))
    if not examples:
        pytest.skip("no bpy_lib examples")
    for path in examples:
        result = check_policy(path.read_text(encoding="utf-8"), ("bpy_lib", "math"))
        assert result.ok and result.imports_bpy_lib, (path.name, result.describe())


# -- attribute walks without an Attribute node: match class patterns -----------------------

MATCH_WALKS = {
    # the red team's route: str.format bound without `.format`, then a field walk to globals
    "format-keyword": "match 'x':\n    case str(format=fm):\n        fm",
    "format-map-keyword": "match 'x':\n    case str(format_map=fm):\n        fm",
    "forbidden-attribute": "match box:\n    case object(mro=m):\n        m",
    "frame-prefix": "g = (i for i in [1])\nmatch g:\n    case x(gi_frame=f):\n        f",
    "traceback-method": "match ValueError():\n    case ValueError(with_traceback=w):\n        w",
    "numpy-data": "match v:\n    case tuple(data=d):\n        d",
    "private": "match box:\n    case int(__globals__=g):\n        g",
}


@pytest.mark.parametrize("body", MATCH_WALKS.values(), ids=list(MATCH_WALKS))
def test_match_class_patterns_obey_the_attribute_rules(body: str) -> None:
    result = verdict("from bpy_lib import *\nv = 1\nx = int\n" + body)
    assert not result.ok
    assert result.rule in {"forbidden_attribute", "format_string", "private_name", "forbidden_name"}


def test_match_class_patterns_with_plain_attributes_are_allowed() -> None:
    result = verdict(
        "from bpy_lib import *\nmatch 3 + 4j:\n    case complex(real=r, imag=i):\n        box()"
    )
    assert result.ok, result.describe()


# -- shared modules: every program gets its own -------------------------------------------


def test_restricted_builtins_hand_out_fresh_modules_each_time() -> None:
    import math

    first = restricted_builtins({"math": math})
    code = "import math\nmath.pi = 3\nmath.radians = lambda d: 0\n"
    exec(compile(code, "<program>", "exec"), {"__builtins__": first})
    second = restricted_builtins({"math": math})
    namespace: dict[str, object] = {"__builtins__": second}
    exec(compile("import math\nvalue = math.pi, math.radians(180)", "<program>", "exec"), namespace)
    assert namespace["value"] == (math.pi, math.pi)
    assert math.pi == 3.141592653589793 and math.radians(180) == math.pi  # the real module


def test_programs_get_no_numpy_from_any_guarded_verb_or_error() -> None:
    def export_scene() -> tuple[object, object]:
        return np.zeros((3, 3), np.float32), np.zeros((1, 3), np.int32)

    def broken() -> None:
        raise ValueError("bad", np.arange(3))

    vertices, faces = guard_verb(export_scene)()
    assert not any(isinstance(x, np.ndarray | np.generic) for x in (*vertices, *faces))
    with pytest.raises(ValueError) as caught:
        guard_verb(broken)()
    assert caught.value.args == ("bad", (0, 1, 2))
