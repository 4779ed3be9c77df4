"""The executor in real Blender: the contract of DESIGN §2, status by status, and its plumbing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from llm3d.config import REPO_ROOT, ExecutorConfig
from llm3d.schemas import ExecStatus
from tests.helpers.waiting import wait_until
from tests.worker.conftest import CUBE
from worker.execution.executor import Executor, ExecutorPool
from worker.geometry.sampling import face_areas_normals

pytestmark = pytest.mark.blender

EXAMPLES = sorted((REPO_ROOT / "bpy_lib" / "examples").glob("[!_]*.py"))


def program(body: str) -> str:
    return "from bpy_lib import *\n" + textwrap.dedent(body).strip() + "\n"


def direct_arrays(paths: list[Path]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Run programs the plain way: one Blender process, real builtins, no sandbox."""
    script = textwrap.dedent(
        """
        import sys, numpy as np, bpy
        from bpy_lib.export import scene_arrays
        bpy.ops.wm.read_factory_settings(use_empty=True)
        out = {}
        for i, path in enumerate(sys.argv[2:]):
            for obj in list(bpy.data.objects):
                bpy.data.objects.remove(obj)
            exec(compile(open(path).read(), path, "exec"), {"__name__": "__main__"})
            v, f = scene_arrays()
            out[f"v{i}"], out[f"f{i}"] = v, f
        np.savez(sys.argv[1], **out)
        """
    )
    target = Path(os.environ.get("TMPDIR", "/tmp")) / f"direct-{os.getpid()}.npz"
    subprocess.run(
        [sys.executable, "-c", script, str(target), *map(str, paths)],
        check=True,
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=300,
    )
    with np.load(target) as data:
        arrays = {p.name: (data[f"v{i}"], data[f"f{i}"]) for i, p in enumerate(paths)}
    target.unlink()
    return arrays


# -- statuses, each caused by a real program --------------------------------------------


def test_ok_cube_has_the_cube_mesh(executor: Executor) -> None:
    result = executor.run(CUBE)
    assert result.status is ExecStatus.OK, result.error
    assert result.vertices.dtype == np.float32 and result.vertices.shape == (8, 3)
    assert result.faces.dtype == np.int32 and result.faces.shape == (12, 3)
    np.testing.assert_allclose(np.abs(result.vertices), 0.5, atol=1e-6)
    assert result.error is None and result.seconds > 0
    normals = face_areas_normals(result.vertices, result.faces)[1]
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-5)
    centres = result.vertices[result.faces].mean(axis=1)
    assert (np.einsum("ij,ij->i", normals, centres) > 0).all()  # outward: a closed cube


@pytest.mark.parametrize(
    ("code", "status", "error_part"),
    [
        ("", ExecStatus.EMPTY, "empty"),
        ("   \n# nothing\n", ExecStatus.EMPTY, "does not import bpy_lib"),
        ("x = 1\n", ExecStatus.EMPTY, "does not import bpy_lib"),
        (program("import os"), ExecStatus.REFUSED, "[import]"),
        (program("box(size=[1, 1, 1]"), ExecStatus.EXEC_FAILED, "SyntaxError"),
        (program("x = 1\ny = x / 0"), ExecStatus.EXEC_FAILED, "ZeroDivisionError"),
        (program("box(size=[-1, 1, 1])"), ExecStatus.EXEC_FAILED, "(line 2)"),
        (program("x = 1"), ExecStatus.NO_GEOMETRY, "0 triangles"),
        (
            program(
                "for i in range(4):\n"
                "    sphere(radius=0.2, segments=256, rings=128, location=[i * 0.5 - 1, 0, 0])"
            ),
            ExecStatus.DEGENERATE,
            "vertices",
        ),
    ],
    ids=[
        "empty",
        "comment",
        "no-import",
        "refused",
        "syntax",
        "exception",
        "bpy_lib-error",
        "no-geometry",
        "degenerate",
    ],
)
def test_each_status_from_a_real_program(
    executor: Executor, code: str, status: ExecStatus, error_part: str
) -> None:
    result = executor.run(code)
    assert result.status is status, (result.status, result.error)
    assert result.error is not None and error_part in result.error


def test_timeout_kills_the_program_and_says_so(executor: Executor) -> None:
    start = time.monotonic()
    result = executor.run(program("while True:\n    pass"), timeout_s=1.0)
    elapsed = time.monotonic() - start
    assert result.status is ExecStatus.TIMEOUT
    assert result.error is not None and "1 s" in result.error
    assert 1.0 <= elapsed < 5.0


def test_error_names_type_message_and_user_line_not_our_traceback(executor: Executor) -> None:
    code = program(
        """
        def make(n):
            return box(size=[n, 1, 1])

        make(1)
        make(-2)
        """
    )
    result = executor.run(code)
    assert result.status is ExecStatus.EXEC_FAILED
    assert result.error is not None
    assert result.error.startswith("ValueError: box")
    assert result.error.endswith("(line 3)")  # the deepest line of the user's own code
    assert "\n" not in result.error and "worker/" not in result.error
    assert "Traceback" not in result.error


def test_stdout_and_stderr_tails_are_kept_and_capped(
    executor: Executor, executor_config: ExecutorConfig
) -> None:
    code = program(
        """
        print("first")
        for i in range(20000):
            print("line", i)
        box(size=[1, 1, 1])
        """
    )
    result = executor.run(code)
    assert result.status is ExecStatus.OK
    assert result.stdout.endswith("line 19999\n")
    assert "first" not in result.stdout
    assert len(result.stdout.encode()) <= executor_config.output_tail_bytes
    assert int(result.diagnostics["stdout_dropped_bytes"]) > 100_000


def test_export_scene_with_a_relative_path_stays_in_the_sandbox(executor: Executor) -> None:
    info = executor.server_info
    code = program('box(size=[1, 1, 1])\nexport_scene("mesh.obj")')
    result = executor.run(code)
    assert result.status is ExecStatus.OK, result.error
    root = executor.host_path(info["workdir_root"])
    # removed when the child is reaped, just after the answer
    wait_until(lambda: not list(root.iterdir()), timeout=30, what="the workdir's removal")
    assert root.is_dir()


# -- faithfulness: the sandbox gives what running the program directly gives -------------


@pytest.mark.slow
def test_examples_give_the_same_arrays_as_running_them_directly(executor: Executor) -> None:
    if not EXAMPLES:
        pytest.skip("no bpy_lib examples yet")
    chosen = EXAMPLES  # one direct Blender process for all of them: a few seconds
    expected = direct_arrays(chosen)
    results = executor.run_many([p.read_text() for p in chosen])
    for path, result in zip(chosen, results, strict=True):
        assert result.status is ExecStatus.OK, (path.name, result.error)
        vertices, faces = expected[path.name]
        np.testing.assert_array_equal(result.vertices, vertices, err_msg=path.name)
        np.testing.assert_array_equal(result.faces, faces, err_msg=path.name)


# -- isolation between programs --------------------------------------------------------


def test_module_state_does_not_reach_the_next_program(executor: Executor) -> None:
    first = executor.run(program("import math\nmath.pi = 3\nprint(math.pi)\nbox(size=[1, 1, 1])"))
    assert first.stdout.strip() == "3"
    second = executor.run(program("import math\nprint(math.pi)\nbox(size=[1, 1, 1])"))
    assert float(second.stdout) == pytest.approx(np.pi)


def test_scene_starts_empty_for_every_program(executor: Executor) -> None:
    executor.run(program("box(size=[1, 1, 1])\nbox(size=[1, 1, 1], location=[2, 0, 0])"))
    result = executor.run(program("box(size=[1, 1, 1])\nprint(len(parts()))"))
    assert result.stdout.strip() == "1"
    assert result.vertices.shape == (8, 3)


def test_unsafe_state_changes_die_with_the_child(unsafe_executor: Executor) -> None:
    hostile = """
        import bpy, bpy_lib, math
        bpy_lib.box = None
        math.pi = 3
        bpy.context.scene.unit_settings.scale_length = 7.0
        bpy.ops.mesh.primitive_cube_add()
    """
    unsafe_executor.run(textwrap.dedent(hostile))
    probe = """
        import bpy, math
        from bpy_lib import *
        box(size=[1, 1, 1])
        print(math.pi, bpy.context.scene.unit_settings.scale_length, len(bpy.data.objects))
    """
    result = unsafe_executor.run(textwrap.dedent(probe))
    assert result.status is ExecStatus.OK, result.error
    pi, scale, objects = result.stdout.split()
    assert float(pi) == pytest.approx(np.pi) and float(scale) == 1.0 and objects == "1"


def test_child_runs_in_an_empty_private_directory(unsafe_executor: Executor) -> None:
    code = "import os\nfrom bpy_lib import *\nprint(os.getcwd())\nprint(os.listdir('.'))\n"
    first = unsafe_executor.run(code)
    second = unsafe_executor.run(code)
    root = unsafe_executor.server_info["workdir_root"]
    cwd1, listing = first.stdout.splitlines()
    assert cwd1.startswith(root) and listing == "[]"
    assert second.stdout.splitlines()[0] != cwd1
    gone = unsafe_executor.host_path(cwd1)
    # removed when the child is reaped, just after the answer
    wait_until(lambda: not gone.exists(), timeout=30, what="the workdir's removal")


def test_ps_names_the_server_and_the_program_child(unsafe_executor: Executor) -> None:
    code = "from bpy_lib import *\nprint(open('/proc/self/comm').read().strip())\n"
    result = unsafe_executor.run(code)
    assert result.stdout.strip() == "llm3d-program"
    server = unsafe_executor.server_pid
    assert Path(f"/proc/{server}/comm").read_text().strip() == "llm3d-forksrv"


# -- concurrency, pool, restart --------------------------------------------------------


def test_concurrent_programs_keep_their_own_results(executor: Executor) -> None:
    sizes = [0.1 * (i + 1) for i in range(10)]
    codes = [program(f"box(size=[{s:.2f}, 1, 1])") for s in sizes]
    results: list[Any] = [None] * len(codes)

    def worker(i: int) -> None:
        results[i] = executor.run(codes[i])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(codes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for size, result in zip(sizes, results, strict=True):
        assert result.status is ExecStatus.OK
        assert np.ptp(result.vertices[:, 0]) == pytest.approx(size, abs=1e-5)


def test_pool_runs_many_in_order(executor_config: ExecutorConfig) -> None:
    codes = [program(f"box(size=[1, 1, 1], location=[{i / 10}, 0, 0])") for i in range(12)]
    codes[5] = program("import os")
    with ExecutorPool(executor_config, size=2) as pool:
        results = pool.run_many(codes)
        pids = {ex.server_pid for ex in pool.executors}
    assert len(pids) == 2
    assert results[5].status is ExecStatus.REFUSED
    for i, result in enumerate(results):
        if i != 5:
            assert result.status is ExecStatus.OK
            assert result.vertices[:, 0].mean() == pytest.approx(i / 10, abs=1e-5)


def test_lost_server_gives_infra_error_then_restarts(executor_config: ExecutorConfig) -> None:
    with Executor(executor_config) as ex:
        pid = ex.server_pid
        assert pid is not None
        future = ex.submit(program("while True:\n    pass"), timeout_s=30)
        wait_until(lambda: _children_of(pid), timeout=10, what="the program's start")
        os.kill(pid, signal.SIGKILL)
        lost = future.result(timeout=10)
        assert lost.status is ExecStatus.INFRA_ERROR
        assert lost.error is not None and "fork server" in lost.error
        again = ex.run(CUBE)
        assert again.status is ExecStatus.OK
        assert ex.server_pid != pid and ex.restarts == 1


def test_programs_queued_behind_slow_ones_do_not_trip_the_watchdog(
    executor_config: ExecutorConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    import worker.execution.executor as executor_module

    monkeypatch.setattr(executor_module, "ANSWER_GRACE_S", 0.5)
    config = executor_config.model_copy(update={"children_per_server": 1})
    with Executor(config) as ex:
        spin = program("while True:\n    pass")
        results = ex.run_many([spin] * 3, timeout_s=0.8)  # the third waits 1.6 s to start
        assert [r.status for r in results] == [ExecStatus.TIMEOUT] * 3
        assert ex.restarts == 0


def test_a_server_that_stops_answering_is_killed_and_replaced(
    executor_config: ExecutorConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    import worker.execution.executor as executor_module

    monkeypatch.setattr(executor_module, "ANSWER_GRACE_S", 0.5)
    with Executor(executor_config) as ex:
        pid = ex.server_pid
        assert pid is not None
        future = ex.submit(program("while True:\n    pass"), timeout_s=0.5)
        wait_until(lambda: _children_of(pid), timeout=10, what="the program's start")
        os.kill(pid, signal.SIGSTOP)  # alive but deaf: it can no longer enforce the timeout
        stuck = future.result(timeout=15)
        assert stuck.status is ExecStatus.INFRA_ERROR
        assert ex.run(CUBE).ok and ex.server_pid != pid


def _children_of(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(entry.name))
    return children


def test_close_kills_running_children_and_the_server(executor_config: ExecutorConfig) -> None:
    ex = Executor(executor_config)
    ex.start()
    pid = ex.server_pid
    assert pid is not None
    futures = [ex.submit(program("while True:\n    pass"), timeout_s=60) for _ in range(2)]
    children = wait_until(
        lambda: (found := _children_of(pid)) and len(found) == 2 and found,
        timeout=10,
        what="two running programs",
    )
    ex.close()
    assert all(f.result(timeout=10).status is ExecStatus.INFRA_ERROR for f in futures)
    wait_until(
        lambda: not any(Path(f"/proc/{p}").exists() for p in [pid, *children]),
        timeout=10,
        what="the exit of the server and its children after close()",
    )


def test_server_that_cannot_start_is_an_infra_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import worker.execution.executor as executor_module

    monkeypatch.setattr(executor_module, "SERVER_MODULE", "worker.no_such_module")
    ex = Executor(ExecutorConfig())
    try:
        result = ex.run(CUBE)
    finally:
        ex.close()
    assert result.status is ExecStatus.INFRA_ERROR
    assert result.error is not None and "no_such_module" in result.error


def test_face_normals_of_a_flat_triangle() -> None:
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [2, 0, 0]], dtype=np.float32)
    faces = np.array([[0, 1, 2], [0, 1, 3]], dtype=np.int32)  # the second is degenerate
    np.testing.assert_allclose(face_areas_normals(vertices, faces)[1], [[0, 0, 1], [0, 0, 0]])


# -- CLI -------------------------------------------------------------------------------


def test_cli_run_prints_status_and_exports_obj(tmp_path: Path) -> None:
    from llm3d.cli import app

    source = tmp_path / "cube.py"
    source.write_text(CUBE)
    target = tmp_path / "out" / "cube.obj"
    result = CliRunner().invoke(app, ["run", str(source), "--export", str(target), "--json"])
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    payload = json.loads(result.stdout)
    assert payload["status"] == "ok" and payload["vertices"] == 8 and payload["faces"] == 12
    lines = target.read_text().splitlines()
    assert sum(line.startswith("v ") for line in lines) == 8
    assert sum(line.startswith("f ") for line in lines) == 12

    broken = tmp_path / "broken.py"
    broken.write_text(program("import os"))
    result = CliRunner().invoke(app, ["run", str(broken), "--timeout", "5"])
    assert result.exit_code == 1, (result.stdout, result.stderr, result.exception)
    assert "refused" in result.stdout
