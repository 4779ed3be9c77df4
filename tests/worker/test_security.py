"""Hostile programs, in real Blender: each ends as refused / exec_failed / timeout, writes
nothing outside its temporary directory, and the executor then still runs a normal program.

Two layers are attacked. ``HOSTILE`` goes through the whole sandbox (policy on). The tests
below it use the test-only ``policy=False`` server to attack what stands behind the policy:
the child's rlimits, Landlock and seccomp filters, network namespace and the server's
survival of crashes.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from llm3d.config import ExecutorConfig
from llm3d.schemas import ExecStatus
from tests.helpers.waiting import wait_until
from tests.worker.conftest import CUBE
from worker.execution.executor import Executor

pytestmark = pytest.mark.blender

R, F, T = ExecStatus.REFUSED, ExecStatus.EXEC_FAILED, ExecStatus.TIMEOUT

# name -> (body after "from bpy_lib import *", expected status). {canary} is an absolute
# directory outside the sandbox that must stay empty.
HOSTILE: dict[str, tuple[str, ExecStatus]] = {
    # imports of dangerous modules
    "import-os": ('import os\nos.system("touch {canary}/pwned")', R),
    "import-subprocess": ('import subprocess\nsubprocess.run(["touch", "{canary}/pwned"])', R),
    "import-socket": ('import socket\nsocket.create_connection(("127.0.0.1", 6379))', R),
    "import-ctypes": ("import ctypes\nctypes.string_at(0)", R),
    "import-sys-modules": ('import sys\nsys.modules["os"].system("id")', R),
    "import-multiprocessing-fork": ("import multiprocessing\nmultiprocessing.Process().start()", R),
    "dunder-import": ('__import__("os").system("touch {canary}/pwned")', R),
    "builtins-dict": ('__builtins__["__import__"]("os")', R),
    "bpy-lib-module": ("import bpy_lib\nbpy_lib.bpy.ops.wm.quit_blender()", R),
    "bpy-lib-private-name": ("from bpy_lib import bpy\nbpy.ops.wm.quit_blender()", R),
    # introspection walks
    "subclasses-walk": (
        "for c in ().__class__.__base__.__subclasses__():\n"
        '    if c.__name__ == "Popen":\n'
        '        c(["touch", "{canary}/pwned"])',
        R,
    ),
    "object-subclasses": ("object.__subclasses__()", R),
    "mro-walk": ("GeometryError.mro()[-1]", R),
    "generator-frame": ("g = (x for x in [1])\nf = g.gi_frame.f_back.f_globals", R),
    "traceback-frame": (
        "try:\n    box(size=[-1, 1, 1])\nexcept Exception as e:\n"
        '    e.__traceback__.tb_next.tb_frame.f_globals["bpy"].ops.wm.quit_blender()',
        R,
    ),
    "function-globals": ("(lambda: 0).__globals__", R),
    "globals-call": ('globals()["__builtins__"]', R),
    "vars-call": ("vars(box)", R),
    "getattr-alias": ('g = getattr\ng(box, "__glo" + "bals__")', R),
    "eval-string": ("eval(\"__import__('os').system('id')\")", R),
    "exec-in-dict": ('d = {{"run": exec}}\nd["run"]("import os")', R),
    "compile-call": ('compile("import os", "x", "exec")', R),
    "type-three-args": ('T = type("T", (), {{}})', R),
    "class-with-dunders": ("class A:\n    def __del__(self):\n        pass", R),
    "fullwidth-exec": ('ｅｘｅｃ("import os")', R),  # NFKC-normalised to exec by the parser
    "breakpoint": ("breakpoint()", R),
    # string formatting walks
    "format-literal-walk": ('"{{0.__globals__}}".format(box)', R),
    "format-variable": ('fmt = "{{0.__globals__[os]}}"\nfmt.format(box)', R),
    "format-map-variable": ('fmt = "{{a}}"\nfmt.format_map({{"a": box}})', R),
    # Blender machinery
    "quit-blender": ("bpy.ops.wm.quit_blender()", R),
    "handlers": ("import bpy\nbpy.app.handlers.load_post.append(print)", R),
    "timers": ("import bpy\nbpy.app.timers.register(lambda: 1.0)", R),
    "text-blocks": ('import bpy\nbpy.data.texts.new("x").write("import os")', R),
    "library-load": (
        'import bpy\nwith bpy.data.libraries.load("/etc/passwd") as (src, dst):\n    pass',
        R,
    ),
    "addon-registration": ('import addon_utils\naddon_utils.enable("node_wrangler")', R),
    "register-class": ("import bpy\nbpy.utils.register_class(object)", R),
    # files outside the sandbox
    "open-write": ('open("{canary}/pwned", "w").write("x")', R),
    "export-absolute": ('box(size=[1, 1, 1])\nexport_scene("{canary}/pwned.obj")', F),
    "export-dotdot": (
        'box(size=[1, 1, 1])\nexport_scene("../../../../../..{canary}/pwned.obj")',
        F,
    ),
    "array-tofile": (
        'box(size=[1, 1, 1])\nv, f = export_scene()\nv.tofile("{canary}/pwned")',
        R,
    ),
    "export-many-files": (
        'box(size=[1, 1, 1])\nfor i in range(300):\n    export_scene(f"m{{i}}.obj")',
        F,
    ),
    "array-raw-memory": ("box(size=[1, 1, 1])\nv, f = export_scene()\np = v.ctypes.data", R),
    # memory corruption: the red team's numpy use-after-free needs an array; there is none
    "array-resize-use-after-free": (
        "box(size=[1, 1, 1])\nv, f = export_scene()\nw = v[0]\n"
        "v.resize((1 << 16, 3), refcheck=False)\nprint(w)",
        F,
    ),
    "array-view-then-shrink": (
        "box(size=[1, 1, 1])\nv, f = export_scene()\nv.resize(0, refcheck=False)",
        F,
    ),
    # attribute walks through pattern matching (the red team's environment leak)
    "match-format-walk": (
        'match "{{0.__globals__[os].environ}}":\n    case str(format=fm):\n        print(fm(box))',
        R,
    ),
    "match-mro-walk": ("match box:\n    case object(mro=m):\n        m", R),
    # resources
    "infinite-loop": ("while True:\n    pass", T),
    "loop-swallowing-errors": (
        "while True:\n    try:\n        box(size=[-1, 1, 1])\n    except Exception:\n        pass",
        T,
    ),
    "memory-bomb-list": ("x = [0] * (10 ** 10)", F),
    "memory-bomb-doubling": ('s = "ab"\nwhile True:\n    s = s + s', F),
    "deep-recursion": ("def f(n):\n    return f(n + 1) + 1\nf(0)", F),
    "giant-subdivision": (
        "b = sphere(radius=1, segments=256, rings=128)\n"
        "for i in range(6):\n    subdivide(b, levels=3)",
        T,
    ),
    "print-flood": ('while True:\n    print("x" * 1000)', T),
    "exit-call": ("exit(0)", R),
    "raise-system-exit": ("raise SystemExit(0)", F),  # not in the builtins: a NameError
    "code-size": ("x = 1\n" + "# padding padding padding padding\n" * 3000, R),
    "nesting-bomb": ("x = 1" + " + 1" * 200_000, R),
}

# Statuses accepted where the OS decides which limit hits first.
_ALSO_OK = {"giant-subdivision": {F}, "memory-bomb-doubling": {T}}


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    path = tmp_path / "canary"
    path.mkdir()
    return path


def test_the_suite_is_large_enough() -> None:
    assert len(HOSTILE) >= 30


@pytest.mark.parametrize(("body", "expected"), HOSTILE.values(), ids=list(HOSTILE))
def test_hostile_program_is_contained(
    executor: Executor,
    canary: Path,
    body: str,
    expected: ExecStatus,
    request: pytest.FixtureRequest,
) -> None:
    name = request.node.callspec.id
    code = "from bpy_lib import *\n" + body.replace("{canary}", str(canary)).format()
    result = executor.run(code, timeout_s=2.0)
    allowed = {expected} | _ALSO_OK.get(name, set())
    assert result.status in allowed, (result.status, result.error)
    assert result.error  # every failure says what happened
    assert len(result.stdout.encode()) <= executor.config.output_tail_bytes
    assert list(canary.iterdir()) == []
    root = executor.host_path(executor.server_info["workdir_root"])
    # other runs may be in flight
    wait_until(lambda: not list(root.iterdir()), timeout=30, what="the workdirs' removal")
    after = executor.run(CUBE)
    assert after.status is ExecStatus.OK and after.vertices.shape == (8, 3)


# -- behind the policy: the test-only server with the policy off --------------------------


def test_segfault_in_the_child_is_exec_failed_and_the_server_carries_on(
    unsafe_executor: Executor,
) -> None:
    pid = unsafe_executor.server_pid
    result = unsafe_executor.run("import ctypes\nfrom bpy_lib import *\nctypes.string_at(0)\n")
    assert result.status is ExecStatus.EXEC_FAILED
    assert result.error is not None and "SIGSEGV" in result.error
    after = unsafe_executor.run(CUBE)
    assert after.status is ExecStatus.OK
    assert unsafe_executor.server_pid == pid and unsafe_executor.restarts == 0


def test_os_exit_in_the_child_is_exec_failed(unsafe_executor: Executor) -> None:
    result = unsafe_executor.run("import os\nfrom bpy_lib import *\nos._exit(3)\n")
    assert result.status is ExecStatus.EXEC_FAILED
    assert result.error is not None and "exit status 3" in result.error
    assert unsafe_executor.run(CUBE).ok


def test_child_has_no_network(unsafe_executor: Executor) -> None:
    if "not" in unsafe_executor.server_info["diagnostics"]["network"]:
        pytest.skip("this OS does not let the server drop its network")
    code = (
        "import socket\nfrom bpy_lib import *\n"
        'socket.create_connection(("127.0.0.1", 6379), timeout=2)\n'
    )
    result = unsafe_executor.run(code)
    assert result.status is ExecStatus.EXEC_FAILED
    # seccomp refuses socket() first (PermissionError); without it the namespace has no route
    assert result.error is not None and (
        "PermissionError" in result.error or "OSError" in result.error
    )


def test_rlimits_are_applied_in_the_child(
    unsafe_executor: Executor, executor_config: ExecutorConfig
) -> None:
    code = textwrap.dedent(
        """
        import resource
        from bpy_lib import *
        for name in ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_NOFILE", "RLIMIT_FSIZE", "RLIMIT_CORE"):
            print(name, resource.getrlimit(getattr(resource, name))[0])
        """
    )
    result = unsafe_executor.run(code)
    limits = dict(line.split() for line in result.stdout.splitlines())
    mib = 1 << 20
    assert int(limits["RLIMIT_AS"]) == executor_config.memory_mb * mib
    assert int(limits["RLIMIT_CPU"]) == executor_config.cpu_seconds
    assert int(limits["RLIMIT_NOFILE"]) == executor_config.max_open_files
    assert int(limits["RLIMIT_FSIZE"]) == executor_config.max_file_mb * mib
    assert int(limits["RLIMIT_CORE"]) == 0


def test_file_size_limit_stops_a_huge_write(
    unsafe_executor: Executor, executor_config: ExecutorConfig
) -> None:
    size = (executor_config.max_file_mb + 1) << 20
    code = f'from bpy_lib import *\nopen("big.bin", "wb").write(bytes({size}))\n'
    result = unsafe_executor.run(code)
    assert result.status is ExecStatus.EXEC_FAILED
    assert result.error is not None and (
        "File too large" in result.error or "SIGXFSZ" in result.error
    )


@pytest.mark.parametrize(
    "attempt",
    [
        'open("{canary}/pwned", "w").write("x")',
        'os.symlink("/", "{canary}/pwned")',
        'open("a", "w").close()\nos.rename("a", "{canary}/pwned")',
        'os.mkdir("{canary}/pwned")',
        'os.unlink("{canary}/keep")',
    ],
    ids=["write", "symlink", "rename-out", "mkdir", "unlink"],
)
def test_child_cannot_write_outside_its_directory(
    unsafe_executor: Executor, canary: Path, attempt: str
) -> None:
    if "landlock" in unsafe_executor.run(CUBE).diagnostics:
        pytest.skip("this kernel has no Landlock")
    (canary / "keep").write_text("kept")
    code = "import os\nfrom bpy_lib import *\n" + attempt.replace("{canary}", str(canary))
    result = unsafe_executor.run(code)
    assert result.status is ExecStatus.EXEC_FAILED
    assert result.error is not None and "PermissionError" in result.error
    assert sorted(p.name for p in canary.iterdir()) == ["keep"]
    assert (canary / "keep").read_text() == "kept"


def test_child_may_write_inside_its_directory(unsafe_executor: Executor) -> None:
    code = textwrap.dedent(
        """
        import os
        from bpy_lib import *
        os.mkdir("sub")
        open("sub/a.txt", "w").write("x")
        os.remove("sub/a.txt")
        box(size=[1, 1, 1])
        export_scene("mesh.obj")
        print(sorted(os.listdir(".")))
        """
    )
    result = unsafe_executor.run(code)
    assert result.status is ExecStatus.OK, result.error
    assert result.stdout.strip() == "['mesh.obj', 'sub']"


@pytest.mark.parametrize(
    "attempt",
    [
        "os.fork()",
        'subprocess.run(["true"])',
        'os.execv("/bin/true", ["true"])',
        'os.posix_spawn("/bin/true", ["true"], {})',
        "multiprocessing.Process(target=print).start()",
    ],
    ids=["fork", "subprocess", "execv", "posix_spawn", "multiprocessing"],
)
def test_child_cannot_create_processes(unsafe_executor: Executor, attempt: str) -> None:
    code = f"import os, subprocess, multiprocessing\nfrom bpy_lib import *\n{attempt}\n"
    result = unsafe_executor.run(code, timeout_s=10)
    assert result.status is ExecStatus.EXEC_FAILED
    assert result.error is not None and "PermissionError" in result.error
    assert result.error.endswith("(line 3)")


def test_threads_still_work_under_the_process_filter(unsafe_executor: Executor) -> None:
    code = textwrap.dedent(
        """
        import threading
        from bpy_lib import *
        out = []
        t = threading.Thread(target=out.append, args=(1,))
        t.start()
        t.join()
        print(out)
        box(size=[1, 1, 1])
        """
    )
    result = unsafe_executor.run(code)
    assert result.status is ExecStatus.OK and result.stdout.strip() == "[1]"


@pytest.mark.slow
def test_cpu_time_limit_kills_a_spinning_program(executor_config: ExecutorConfig) -> None:
    config = executor_config.model_copy(update={"cpu_seconds": 1})
    with Executor(config) as ex:
        result = ex.run("from bpy_lib import *\nwhile True:\n    pass\n", timeout_s=30)
    assert result.status is ExecStatus.EXEC_FAILED
    assert result.error is not None and "CPU time" in result.error


def test_many_attacks_in_a_row_leave_the_server_healthy(executor: Executor, canary: Path) -> None:
    bodies = [body.replace("{canary}", str(canary)).format() for body, _ in HOSTILE.values()]
    cheap = [b for b in bodies if "while True" not in b and "subdivide" not in b]
    codes = ["from bpy_lib import *\n" + b for b in cheap] + [CUBE] * 4
    results = executor.run_many(codes, timeout_s=3.0)
    assert all(r.status is not ExecStatus.INFRA_ERROR for r in results)
    assert all(r.ok and np.abs(r.vertices).max() == pytest.approx(0.5) for r in results[-4:])
    assert list(canary.iterdir()) == []
    assert executor.host_path(executor.server_info["workdir_root"]).is_dir()
