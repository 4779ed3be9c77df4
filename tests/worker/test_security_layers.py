"""Each OS layer of the sandbox on its own, as if every layer before it had fallen.

The programs here run with the policy OFF (test-only servers): they stand for a program that
escaped the language layer (the way a numpy use-after-free once did) and now holds real
Python, ``os`` and ``ctypes``. Each attack class runs twice:

* ``jailed``: inside the bubblewrap jail (unprivileged uid, own PID/network namespaces,
  read-only binds of only what Blender needs), with seccomp and Landlock in the child;
* ``bare``: with NO jail, so that the child's own layers (Landlock's read/write rules,
  seccomp's process, signal and socket rules, the scrubbed environment) must hold alone.

A canary secret sits in this process's environment and in a file where a dataset lives; a
bystander process runs beside the farm. No run may read the secret, touch the file, or harm
the bystander, the fork server or this process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from llm3d.config import REPO_ROOT, ExecutorConfig
from llm3d.schemas import ExecStatus
from tests.worker.conftest import CUBE
from worker.execution.executor import Executor
from worker.types import ExecResult

pytestmark = pytest.mark.blender

SECRET = f"canary-secret-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def canaries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """A ground truth where a dataset lives (a tmp dataset and the repo's own data/ folder)
    and the secret in this process's environment, set before any server starts."""
    dataset = tmp_path_factory.mktemp("dataset")
    (dataset / "gt.obj").write_text(f"# {SECRET}\nv 0 0 0\n")
    repo_data = REPO_ROOT / "data" / f"_canary_{uuid.uuid4().hex}"
    repo_data.mkdir(parents=True)
    (repo_data / "gt.obj").write_text(f"# {SECRET}\nv 0 0 0\n")
    old = os.environ.get("LLM3D_API_TOKEN")
    os.environ["LLM3D_API_TOKEN"] = SECRET
    os.environ["AWS_SECRET_ACCESS_KEY"] = SECRET
    try:
        yield {"dataset": dataset / "gt.obj", "repo_data": repo_data / "gt.obj"}
    finally:
        (repo_data / "gt.obj").unlink()
        repo_data.rmdir()
        os.environ.pop("AWS_SECRET_ACCESS_KEY", None)
        if old is None:
            os.environ.pop("LLM3D_API_TOKEN", None)
        else:
            os.environ["LLM3D_API_TOKEN"] = old


@pytest.fixture(scope="module", params=["jailed", "bare"])
def layer(
    request: pytest.FixtureRequest, canaries: dict[str, Path], executor_config: ExecutorConfig
) -> Iterator[Executor]:
    jail = "bwrap" if request.param == "jailed" else "none"
    ex = Executor(executor_config.model_copy(update={"jail": jail}), policy=False)
    try:
        ex.start()
    except RuntimeError as exc:
        pytest.skip(f"no {request.param} server here: {exc}")
    with ex:
        yield ex


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "120"])
    yield proc
    proc.kill()
    proc.wait()


def run(ex: Executor, body: str, timeout_s: float = 20) -> ExecResult:
    code = "import os, ctypes\nfrom bpy_lib import *\n" + textwrap.dedent(body)
    return ex.run(code, timeout_s=timeout_s)


def assert_no_secret(result: ExecResult) -> None:
    for text in (result.stdout, result.stderr, result.error or ""):
        assert SECRET not in text


def test_ground_truth_files_cannot_be_read(layer: Executor, canaries: dict[str, Path]) -> None:
    for path in canaries.values():
        result = run(layer, f"print(open({str(path)!r}).read())\n")
        assert result.status is ExecStatus.EXEC_FAILED, result.stdout
        assert result.error is not None
        assert "PermissionError" in result.error or "FileNotFoundError" in result.error
        assert_no_secret(result)


def test_the_project_tree_and_system_secrets_are_not_readable(layer: Executor) -> None:
    for attempt in (
        f"print(os.listdir({str(REPO_ROOT)!r}))",
        f"print(os.listdir({str(REPO_ROOT / 'data')!r}))",
        f"print(open({str(REPO_ROOT / 'configs' / 'default.yaml')!r}).read())",
        "print(open('/etc/shadow').read())",
        "print(open('/etc/passwd').read())",
        "print(os.listdir('/root'))",
    ):
        result = run(layer, attempt + "\n")
        assert result.status is ExecStatus.EXEC_FAILED, (attempt, result.stdout[:200])
        assert result.error is not None and "Error" in result.error


def test_the_environment_holds_no_secret(layer: Executor) -> None:
    result = run(
        layer,
        """
        print(sorted(os.environ))
        print(dict(os.environ))
        for pid in ("self", os.getppid(), 1):
            try:
                print(open(f"/proc/{pid}/environ", "rb").read())
            except OSError as exc:
                print("refused", pid, type(exc).__name__)
        box(size=[1, 1, 1])
        """,
    )
    assert result.status is ExecStatus.OK, result.error
    assert "LLM3D_API_TOKEN" not in result.stdout and "AWS_SECRET" not in result.stdout
    assert_no_secret(result)


def test_other_processes_are_out_of_reach(
    layer: Executor, bystander: subprocess.Popen[bytes]
) -> None:
    server = layer.server_pid
    for target in (bystander.pid, os.getpid(), "os.getppid()", 1):
        result = run(layer, f"os.kill({target}, 9)\n")
        assert result.status is ExecStatus.EXEC_FAILED, target
        assert result.error is not None and (
            "PermissionError" in result.error or "ProcessLookupError" in result.error
        )
    assert bystander.poll() is None
    assert layer.server_pid == server and layer.restarts == 0
    assert layer.run(CUBE).ok


def test_no_ptrace_or_reading_another_process_memory(layer: Executor) -> None:
    result = run(
        layer,
        """
        libc = ctypes.CDLL(None, use_errno=True)
        parent = os.getppid()
        print("ptrace", libc.ptrace(16, parent, 0, 0), ctypes.get_errno())
        buf = ctypes.create_string_buffer(16)
        class IoVec(ctypes.Structure):
            _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
        local = IoVec(ctypes.addressof(buf), 16)
        remote = IoVec(0x400000, 16)
        n = libc.process_vm_readv(parent, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
        print("process_vm_readv", n, ctypes.get_errno())
        try:
            open(f"/proc/{parent}/mem", "rb").read(1)
            print("mem read")
        except OSError as exc:
            print("mem", type(exc).__name__)
        box(size=[1, 1, 1])
        """,
    )
    assert result.status is ExecStatus.OK, result.error
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert lines["ptrace"].split()[0] == "-1"
    assert lines["process_vm_readv"].split()[0] == "-1"
    assert lines["mem"] in ("PermissionError", "FileNotFoundError")


def test_a_program_cannot_escape_its_process_group_or_the_timeout(layer: Executor) -> None:
    result = run(layer, "os.setpgid(0, os.getppid())\n")
    assert result.status is ExecStatus.EXEC_FAILED
    assert result.error is not None and "PermissionError" in result.error
    result = run(layer, "os.setsid()\n")
    assert result.status is ExecStatus.EXEC_FAILED


def test_no_network_and_no_new_namespaces(layer: Executor) -> None:
    for attempt in (
        "import socket\nsocket.create_connection(('127.0.0.1', 6379), timeout=2)",
        "import socket\nsocket.socket(socket.AF_UNIX).connect('/var/run/redis/redis.sock')",
        "ctypes.CDLL(None, use_errno=True).unshare(0x10000000) == 0 or os.strerror(1)\n"
        "assert ctypes.CDLL(None).unshare(0x10000000) == 0",
    ):
        result = run(layer, attempt + "\n", timeout_s=10)
        assert result.status is ExecStatus.EXEC_FAILED, attempt


def test_the_jailed_server_runs_unprivileged_in_its_own_namespaces(
    jailed_unsafe_executor: Executor,
) -> None:
    ex = jailed_unsafe_executor
    result = run(
        ex,
        """
        status = dict(l.split(":", 1) for l in open("/proc/self/status") if ":" in l)
        print(os.getuid(), os.getgid(), os.getgroups())
        print(int(status["CapEff"], 16), int(status["CapPrm"], 16), status["NoNewPrivs"].strip())
        for folder in ("/proc", "/"):
            try:
                print(sorted(os.listdir(folder)))
            except PermissionError:
                print([])  # Landlock: not even the jail's own listing
        box(size=[1, 1, 1])
        """,
    )
    info = ex.server_info["diagnostics"]
    assert result.status is ExecStatus.OK, result.error
    ids, caps, proc, root = result.stdout.splitlines()
    assert ids == "65534 65534 []"
    assert caps == "0 0 1"
    assert len([p for p in eval(proc) if p.isdigit()]) <= 4  # jail init, server, this child
    assert "data" not in root and "home" not in root
    assert info["jail"] == "bubblewrap" and info["user"].startswith("uid 65534")


def test_required_jail_refuses_to_start_without_bubblewrap(
    executor_config: ExecutorConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    ex = Executor(executor_config.model_copy(update={"jail": "bwrap"}))
    with pytest.raises(RuntimeError, match="bubblewrap is not installed"):
        ex.start()
    ex.close()


def test_signals_kill_group_of_the_child_even_when_it_tries_to_leave(layer: Executor) -> None:
    start = os.times().elapsed
    result = run(
        layer,
        """
        import signal
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            os.setpgid(0, 0)
        except OSError:
            pass
        while True:
            pass
        """,
        timeout_s=1.5,
    )
    assert result.status is ExecStatus.TIMEOUT
    assert os.times().elapsed - start < 10
    assert signal.SIGKILL  # the server kills by group and by pid


def test_the_layers_report_themselves(layer: Executor) -> None:
    result = layer.run(CUBE)
    assert result.ok
    # every layer of the child is in place on this kernel: nothing to report
    for key in ("landlock", "seccomp", "rlimit.RLIMIT_AS"):
        assert key not in result.diagnostics, result.diagnostics


FORGED_HEADERS = {
    "count-of-the-wrong-type": {"outcome": "ok", "n_vertices": "many"},
    "diagnostics-not-an-object": {"outcome": "ok", "diagnostics": "x"},
    "diagnostics-a-list": {"outcome": "ok", "diagnostics": [1, 2, 3]},
    "arrays-not-specs": {"outcome": "ok", "arrays": "junk"},
    "faces-out-of-range": None,  # a well-formed frame whose faces index past the vertices
}


@pytest.mark.parametrize("name", list(FORGED_HEADERS))
def test_a_forged_result_frame_costs_only_its_own_result(layer: Executor, name: str) -> None:
    """The result pipe is written by the process that ran the program: one that escaped the
    language layer can write any frame there. It must be that program's ``exec_failed``,
    never a crash of the fork server (``infra_error`` for every program in flight)."""
    header = FORGED_HEADERS[name]
    if header is None:
        frame = (
            "v = np.zeros((3, 3), np.float32)\nf = np.array([[0, 1, 7]], np.int32)\n"
            "specs, blobs = encode_arrays({'vertices': v, 'faces': f})\n"
            "pieces = encode_frame({'outcome': 'ok', 'arrays': specs}, *blobs)\n"
        )
    else:
        frame = f"pieces = encode_frame({header!r})\n"
    server = layer.server_pid
    result = run(
        layer,
        "import numpy as np\n"
        "from worker.execution.protocol import encode_arrays, encode_frame\n"
        "def link(fd):\n"
        "    try:\n"
        "        return os.readlink(f'/proc/self/fd/{fd}')\n"
        "    except OSError:\n"
        "        return ''\n"
        "pipes = [int(fd) for fd in os.listdir('/proc/self/fd') if int(fd) > 2]\n"
        "target = max(fd for fd in pipes if link(fd).startswith('pipe:'))\n"
        + frame
        + "for piece in pieces:\n    os.write(target, piece)\nos._exit(0)\n",
    )
    assert result.status is ExecStatus.EXEC_FAILED, (result.status, result.error)
    assert result.error is not None and "malformed" in result.error
    assert layer.server_pid == server and layer.restarts == 0
    assert layer.run(CUBE).ok
