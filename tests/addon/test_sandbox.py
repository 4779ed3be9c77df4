"""The add-on runs untrusted programs out of the artist's process (issue 15, point 3).

Each class of attack the red team ran against ``addon/runner.py`` in the artist's Blender:
a loop inside C that ignored the watchdog, a program changing ``math`` (or ``bpy_lib``) for
the rest of the session, and, once the language layer is assumed to have fallen, a marker
file written, a secret read from the environment, ``/etc/shadow`` read and a server on
127.0.0.1 reached. Plus the life cycle: the background server stops on Cancel and unregister
and leaves no process behind, and the start-up path of the Blender application.
"""

from __future__ import annotations

import math
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bpy
import pytest

from addon.runner import run_program
from tests.addon.conftest import drain_until_done

# addon.background and addon._server_boot are imported inside the tests, so that the tests of
# behaviour (a loop inside C, shared modules) also run, and fail, against the old in-process
# runner.
pytestmark = pytest.mark.blender

SECRET_NAME = "LLM3D_ADDON_TEST_SECRET"
SECRET = "s3cret-token-of-the-artist"


@pytest.fixture
def target(addon: Any) -> bpy.types.Collection:
    collection = bpy.data.collections.new("llm3d sandbox test")
    bpy.context.scene.collection.children.link(collection)
    return collection


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_gone(pids: list[int], timeout_s: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive = [p for p in pids if _alive(p)]
        if not alive:
            return []
        time.sleep(0.05)
    return [p for p in pids if _alive(p)]


def _run_text(code: str) -> None:
    """Put ``code`` into the panel's text block and press Run."""
    settings = bpy.context.scene.llm3d
    text = bpy.data.texts.new("llm3d sandbox.py")
    text.from_string(code)
    settings.text = text
    assert bpy.ops.mesh.llm3d_run() == {"FINISHED"}


# -- a loop inside C -------------------------------------------------------------------------


@pytest.mark.timeout(90, method="thread")  # the old in-process runner never came back
@pytest.mark.parametrize("loop", ["x = 10 ** (10 ** 9)", "max(iter(int, 1))"])
def test_a_loop_inside_c_is_killed_and_blender_stays_responsive(addon: Any, loop: str) -> None:
    from addon import jobs

    bpy.context.preferences.addons["addon"].preferences.run_timeout_s = 2.0
    scene = bpy.context.scene
    begin = time.monotonic()
    _run_text(f"from bpy_lib import *\nbox(size=[1, 1, 1])\n{loop}\n")
    assert time.monotonic() - begin < 1.0  # Run returned at once: the main thread is free
    job = jobs.active_job(scene)
    assert job is not None
    ticks: list[float] = []
    while jobs.active_job(scene) is not None:
        tick = time.perf_counter()
        jobs.drain(scene.name)
        mesh = bpy.data.meshes.new("llm3d responsive")  # the main thread does other work
        bpy.data.meshes.remove(mesh)
        ticks.append(time.perf_counter() - tick)
        assert time.monotonic() - begin < 30, "the program was not stopped"
        time.sleep(0.02)
    elapsed = time.monotonic() - begin
    settings = scene.llm3d
    assert settings.error.startswith("TimeoutError: the program did not finish within 2 s")
    assert settings.status.startswith("Run failed: TimeoutError")
    # the limit is 2 s from the fork; the first run also starts the background Blender
    from addon import background

    assert elapsed < 2.0 + (background.get_sandbox().started_s or 0.0) + 3.0, elapsed
    assert max(ticks) < 0.25, max(ticks)
    tick = time.perf_counter()
    bpy.data.meshes.remove(bpy.data.meshes.new("llm3d after"))  # responsive right after
    assert time.perf_counter() - tick < 0.1
    sandbox = background.get_sandbox()
    assert sandbox.running  # the server survived its child's kill, ready for the next run
    begin = time.monotonic()
    assert run_program("from bpy_lib import *\nbox(size=[1, 1, 1])\n", settings.collection).ok
    assert time.monotonic() - begin < 3.0  # warm: no new start-up


# -- programs changing shared modules ----------------------------------------------------------


def test_changes_to_math_and_bpy_lib_do_not_outlive_a_run(target: bpy.types.Collection) -> None:
    import bpy_lib

    pi, radians = math.pi, math.radians
    poison = (
        "from bpy_lib import *\n"
        "import math\n"
        "math.pi = 3\n"
        "math.radians = lambda degrees: 0.0\n"
        "box.llm3d_mark = 'poisoned'\n"
        "box(size=[1, 1, 1])\n"
    )
    check = (
        "from bpy_lib import *\n"
        "import math\n"
        "assert math.pi == 3.141592653589793, f'math.pi is {math.pi}'\n"
        "assert math.radians(180) == math.pi, 'math.radians was replaced'\n"
        "try:\n"
        "    box.llm3d_mark\n"
        "except AttributeError:\n"
        "    pass\n"
        "else:\n"
        "    raise ValueError('bpy_lib.box kept a mark from an earlier run')\n"
        "box(size=[1, 1, 1])\n"
    )
    assert run_program(poison, target).ok
    second = run_program(check, target)
    assert second.ok, second.error
    # nor did the artist's own modules change
    assert math.pi == pi and math.radians is radians and math.radians(180) == pi
    assert not hasattr(bpy_lib.box, "llm3d_mark")
    assert not hasattr(bpy_lib.primitives.box, "llm3d_mark")


# -- a program that escaped the language layer ---------------------------------------------------

ESCAPED = """\
import os, socket
from bpy_lib import *
found = []
try:
    with open({marker!r}, "w") as fh:
        fh.write("pwned")
    found.append("MARKER WRITTEN")
except OSError as exc:
    found.append(f"marker: {{type(exc).__name__}}")
found.append("SECRET " + str(os.environ.get({secret_name!r})))
try:
    with open("/etc/shadow") as fh:
        found.append("SHADOW " + fh.read(20))
except OSError as exc:
    found.append(f"shadow: {{type(exc).__name__}}")
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
    found.append("CONNECTED")
except OSError as exc:
    found.append(f"network: {{type(exc).__name__}}")
try:
    os.kill({artist_pid}, 0)
    found.append("ARTIST SIGNALLABLE")
except OSError as exc:
    found.append(f"signal: {{type(exc).__name__}}")
print(" | ".join(found))
box(size=[1, 1, 1])
"""


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A server on 127.0.0.1 of the artist's machine (Redis stood here in the red team's run)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        server.setblocking(False)
        yield server


@pytest.mark.parametrize("mode", ["fork_server", "subprocess"])
def test_an_escaped_program_cannot_reach_the_artists_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, listener: socket.socket, mode: str
) -> None:
    monkeypatch.setenv(SECRET_NAME, SECRET)
    marker = tmp_path / "pwned"
    code = ESCAPED.format(
        marker=str(marker),
        secret_name=SECRET_NAME,
        port=listener.getsockname()[1],
        artist_pid=os.getpid(),
    )
    from addon.background import Sandbox

    # policy=False stands for the red team's escapes (full Python inside the program)
    sandbox = Sandbox(mode=mode, policy=False)  # type: ignore[arg-type]
    try:
        result = sandbox.run(code, timeout_s=30)
        assert result.ok, (result.status, result.error, result.stdout)
        assert "SECRET None" in result.stdout, result.stdout  # an allow-listed environment
        assert SECRET not in result.stdout
        if mode == "fork_server":
            server_pid = sandbox._executor.server_pid if sandbox._executor else None
            assert server_pid is not None
            environ = Path(f"/proc/{server_pid}/environ").read_bytes()
            assert SECRET.encode() not in environ and SECRET_NAME.encode() not in environ
            if sandbox._executor and sandbox._executor.jail == "bwrap":
                assert "MARKER WRITTEN" not in result.stdout and not marker.exists()
                assert "SHADOW" not in result.stdout
                assert "CONNECTED" not in result.stdout
                assert "ARTIST SIGNALLABLE" not in result.stdout
                with pytest.raises(BlockingIOError):
                    listener.accept()  # nobody knocked
    finally:
        sandbox.close()


# -- the life cycle ------------------------------------------------------------------------------


@pytest.mark.timeout(90, method="thread")
def test_cancel_kills_the_program_and_leaves_no_process_of_it(addon: Any) -> None:
    from addon import background, jobs

    bpy.context.preferences.addons["addon"].preferences.run_timeout_s = 60.0
    scene = bpy.context.scene
    _run_text("from bpy_lib import *\nwhile True:\n    pass\n")
    sandbox = background.get_sandbox()
    deadline = time.monotonic() + 30
    while sandbox._executor is None or sandbox._executor.in_flight == 0 or not sandbox.running:
        assert time.monotonic() < deadline, "the program never started"
        time.sleep(0.05)
    server_pid = sandbox._executor.server_pid
    assert server_pid is not None
    deadline = time.monotonic() + 30
    while not (children := _children(server_pid)):  # the forked child running the program
        assert time.monotonic() < deadline, "the program never forked"
        time.sleep(0.05)
    begin = time.perf_counter()
    assert bpy.ops.mesh.llm3d_cancel() == {"FINISHED"}
    assert time.perf_counter() - begin < 0.5  # the main thread does not wait
    assert scene.llm3d.status.startswith("Cancelled"), scene.llm3d.status
    assert jobs.active_job(scene) is None
    assert _wait_gone(children) == []  # the program's process is gone, by pid
    assert _alive(server_pid) and not sandbox.closed  # the server stays warm
    deadline = time.monotonic() + 10
    while sandbox._executor.in_flight:
        assert time.monotonic() < deadline, "the cancelled program was never answered"
        time.sleep(0.05)
    begin = time.monotonic()
    collection = bpy.data.collections.new("llm3d after cancel")
    assert run_program("from bpy_lib import *\nbox(size=[1, 1, 1])\n", collection).ok
    assert time.monotonic() - begin < 3.0  # warm: no new start-up


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.extend(int(c) for c in (task / "children").read_text().split())
    return found


def test_unregister_stops_the_background_server(addon: Any, target: bpy.types.Collection) -> None:
    import addon_utils

    from addon import background

    assert run_program("from bpy_lib import *\nbox(size=[1, 1, 1])\n", target).ok
    sandbox = background.get_sandbox()
    pids = sandbox.pids()
    assert pids and all(_alive(p) for p in pids)
    addon_utils.disable("addon", default_set=True)
    assert sandbox.closed
    assert _wait_gone(pids) == []
    addon_utils.enable("addon", default_set=True)  # the fixture disables it again


def test_the_panel_says_which_layers_hold(addon: Any, target: bpy.types.Collection) -> None:
    from addon import background
    from addon.background import Sandbox

    assert background.describe_layers(True) == "Trusted: programs run inside Blender, unchecked"
    assert "starts at the first run" in background.describe_layers(False)
    assert run_program("from bpy_lib import *\nbox(size=[1, 1, 1])\n", target).ok
    layers = background.describe_layers(False)
    executor = background.get_sandbox()._executor
    assert executor is not None
    if executor.jail == "bwrap":
        assert layers.startswith("Sandbox: bubblewrap jail, separate process"), layers
    else:
        assert layers.startswith("Sandbox: separate process, no jail"), layers
    assert "no jail" in Sandbox(mode="subprocess").layers()


# -- how the background Blender is started --------------------------------------------------------


def test_the_runner_follows_the_blender_in_use() -> None:
    from addon._server_boot import target_arguments
    from addon.background import BOOTSTRAP, Sandbox, server_runner

    assert bpy.app.binary_path == ""  # the bpy wheel
    assert Sandbox().runner == [sys.executable, "-m"]
    command = server_runner("/opt/blender/blender")
    assert command[:3] == ["/opt/blender/blender", "-b", "--factory-startup"]
    assert command[-3:] == ["--python", str(BOOTSTRAP), "--"]
    # Blender's argv as the bootstrap sees it: its own arguments, then the module's
    argv = [*command, "worker.execution.blender_server", "--fd", "5", "--jailed"]
    assert target_arguments(argv) == ["worker.execution.blender_server", "--fd", "5", "--jailed"]
    with pytest.raises(SystemExit, match="usage"):
        target_arguments(["blender", "-b"])


def test_the_bootstrap_starts_the_fork_server() -> None:
    """The Blender application's path, with the wheel's Python standing in for Blender."""
    from addon.background import BOOTSTRAP, Sandbox

    sandbox = Sandbox(runner=[sys.executable, str(BOOTSTRAP), "--"])
    try:
        result = sandbox.run("from bpy_lib import *\nbox(size=[1, 2, 0.5])\n", timeout_s=30)
        assert result.ok, (result.status, result.error)
        assert result.faces.shape == (12, 3)
        assert sandbox._executor is not None
        assert sandbox._executor.server_info["diagnostics"]["blender"] == bpy.app.version_string
    finally:
        sandbox.close()


@pytest.mark.timeout(120, method="thread")
def test_the_fallback_runs_each_program_in_its_own_process(target: bpy.types.Collection) -> None:
    """Where the fork server cannot run (Windows, macOS): a Blender per program, hard kill."""
    from addon.background import Sandbox

    sandbox = Sandbox(mode="subprocess")
    try:
        made = run_program("from bpy_lib import *\nbox(size=[1, 1, 1])\n", target, sandbox=sandbox)
        assert made.ok, made.error
        refused = run_program("from bpy_lib import *\nimport os\n", target, sandbox=sandbox)
        assert refused.refused and "refused by sandbox policy" in refused.error
        broken = run_program("from bpy_lib import *\nbox(size=[1, 1])\n", target, sandbox=sandbox)
        assert not broken.ok and "(line 2)" in broken.error
        begin = time.monotonic()
        result = sandbox.run("from bpy_lib import *\nmax(iter(int, 1))\n", timeout_s=2)
        assert result.status == "timeout"
        assert time.monotonic() - begin < 2 + 15  # start-up is not counted in the limit
        assert sandbox.pids() == []
        cancel = threading.Event()
        threading.Timer(3.0, cancel.set).start()
        result = sandbox.run("from bpy_lib import *\nwhile True:\n    pass\n", 60, cancel=cancel)
        assert result.status == "infra_error" and "cancelled" in (result.error or "")
        assert sandbox.pids() == []
    finally:
        sandbox.close()


def test_a_sandbox_failure_is_not_sent_to_the_model_for_repair(
    addon: Any, chat_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from addon.background import Sandbox
    from llm3d.schemas import ExecStatus
    from tests.addon.conftest import CUBE_PROGRAM, png_bytes
    from worker.types import ExecResult

    def lost(self: Sandbox, code: str, timeout_s: float, **kwargs: Any) -> ExecResult:
        return ExecResult(status=ExecStatus.INFRA_ERROR, error="the fork server was lost")

    monkeypatch.setattr(Sandbox, "run", lost)
    chat_server.answers = [CUBE_PROGRAM]
    image = tmp_path / "cup.png"
    image.write_bytes(png_bytes())
    bpy.ops.mesh.llm3d_add_images(directory=str(tmp_path), files=[{"name": image.name}])
    bpy.ops.mesh.llm3d_generate()
    drain_until_done(bpy.context.scene.name)
    settings = bpy.context.scene.llm3d
    assert len(chat_server.requests) == 1  # no repair request: the program did nothing wrong
    assert settings.error.startswith("the sandbox failed, not the program"), settings.error
    assert "press Run to try again" in settings.error
