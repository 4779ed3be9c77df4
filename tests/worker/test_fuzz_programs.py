"""Property-based fuzzing of the sandbox with programs from the allowed grammar (Hypothesis).

Hypothesis writes programs the way a policy searching for reward might: verbs, builtins and
``math``; attribute chains over real and dangerous attribute names; calls, subscripts,
f-strings and ``.format`` on literals with walking fields; ``match`` class patterns;
``try``/``except`` that keeps the error; loops. Each runs through the full sandbox (policy,
jail when available, the child's layers). Whatever the program does:

* it gets a status that is the program's, never ``infra_error``;
* no output, error or mesh carries the canary secret this process holds in its environment
  and in a ground-truth file where a dataset lives;
* the file is untouched, a bystander process lives, this process's environment is unchanged,
  and the fork server is the same one at the end (nothing killed or restarted it).

Bounded: a fixed number of examples (``LLM3D_FUZZ_EXAMPLES``, default 40), each with a short
timeout; derandomised so that CI sees the same programs every run.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm3d.config import ExecutorConfig
from llm3d.schemas import ExecStatus
from tests.worker.conftest import CUBE
from worker.execution.executor import Executor

pytestmark = [pytest.mark.blender, pytest.mark.slow]

SECRET = f"fuzz-canary-{uuid.uuid4().hex}"
EXAMPLES = int(os.environ.get("LLM3D_FUZZ_EXAMPLES", "40"))

NAMES = [
    "box", "sphere", "cylinder", "move", "union", "export_scene", "len", "str", "int",
    "repr", "print", "range", "sum", "min", "max", "iter", "map", "list", "tuple", "dict",
    "isinstance", "math", "math.sin", "math.pi", "ValueError", "Exception", "v0", "v1", "v2",
]  # fmt: skip
ATTRS = [
    "real", "imag", "upper", "join", "append", "keys", "items", "count", "index", "args",
    "conjugate", "add_note", "split", "encode", "decode", "fromhex", "hex", "bit_length",
    "format", "format_map", "mro", "data", "base", "resize", "ctypes", "gi_frame",
    "tb_frame", "f_globals", "with_traceback", "__class__", "__globals__", "__dict__",
    "__subclasses__", "environ", "modules", "system", "path", "strides", "tofile",
]  # fmt: skip
LITERALS = ["0", "1", "2.5", "-1", "'a'", "'{0}'", "'{0.__class__}'", "'{0[0]}'", "b'x'", "()"]


def expressions() -> st.SearchStrategy[str]:
    atom = st.sampled_from(NAMES + LITERALS)

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.tuples(inner, st.sampled_from(ATTRS)).map(lambda t: f"{t[0]}.{t[1]}"),
            st.tuples(inner, st.lists(inner, max_size=2)).map(
                lambda t: f"{t[0]}({', '.join(t[1])})"
            ),
            st.tuples(inner, st.integers(-1, 2)).map(lambda t: f"{t[0]}[{t[1]}]"),
            inner.map(lambda e: f'f"{{{e}}}"'),
            st.tuples(st.sampled_from(LITERALS[4:7]), inner).map(
                lambda t: f"{t[0]}.format({t[1]})"
            ),
            st.lists(inner, max_size=3).map(lambda xs: f"[{', '.join(xs)}]"),
            inner.map(lambda e: f"(lambda x: {e})(0)"),
        )

    return st.recursive(atom, extend, max_leaves=6)


def statements() -> st.SearchStrategy[str]:
    expr = expressions()
    var = st.sampled_from(["v0", "v1", "v2"])
    return st.one_of(
        st.tuples(var, expr).map(lambda t: f"{t[0]} = {t[1]}"),
        expr,
        st.tuples(expr, var).map(
            lambda t: f"try:\n    {t[1]} = {t[0]}\nexcept Exception as e:\n    {t[1]} = e"
        ),
        st.tuples(
            expr, st.sampled_from(["str", "int", "tuple", "ValueError"]), st.sampled_from(ATTRS)
        ).map(lambda t: f"match {t[0]}:\n    case {t[1]}({t[2]}=v2):\n        print(v2)"),
        st.tuples(var, expr).map(lambda t: f"for {t[0]} in range(2):\n    print({t[1]})"),
    )


def programs() -> st.SearchStrategy[str]:
    return st.lists(statements(), min_size=1, max_size=6).map(
        lambda body: (
            "from bpy_lib import *\nimport math\nv0 = v1 = v2 = 0\n"
            + "\n".join(body)
            + "\nbox(size=[1, 1, 1])\nexport_scene()\n"
        )
    )


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, executor_config: ExecutorConfig
) -> Iterator[dict[str, object]]:
    dataset = tmp_path_factory.mktemp("fuzz-dataset")
    truth = dataset / "gt.obj"
    truth.write_text(f"# {SECRET}\nv 0 0 0\n")
    os.environ["LLM3D_API_TOKEN"] = SECRET
    bystander = subprocess.Popen(["sleep", "600"])
    ex = Executor(executor_config)
    try:
        ex.start()
        yield {"executor": ex, "truth": truth, "bystander": bystander, "server": ex.server_pid}
    finally:
        ex.close()
        bystander.kill()
        bystander.wait()
        os.environ.pop("LLM3D_API_TOKEN", None)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(code=programs())
def test_no_generated_program_escapes_or_harms(world: dict[str, object], code: str) -> None:
    ex = world["executor"]
    assert isinstance(ex, Executor)
    truth = world["truth"]
    assert isinstance(truth, Path)
    environ = dict(os.environ)
    result = ex.run(code, timeout_s=3.0)
    assert result.status is not ExecStatus.INFRA_ERROR, (code, result.error)
    for text in (result.stdout, result.stderr, result.error or "", repr(result.diagnostics)):
        assert SECRET not in text, code
    assert truth.read_text().startswith(f"# {SECRET}")
    bystander = world["bystander"]
    assert isinstance(bystander, subprocess.Popen) and bystander.poll() is None
    assert dict(os.environ) == environ
    assert ex.server_pid == world["server"] and ex.restarts == 0


def test_the_fuzzed_server_still_scores_a_cube(world: dict[str, object]) -> None:
    ex = world["executor"]
    assert isinstance(ex, Executor)
    assert ex.run(CUBE).ok and ex.restarts == 0
