"""Red-team findings (branch ``redteam``): each test FAILS on the code it was written against.

Every test here is a confirmed escape of one sandbox layer, written as the property that
should hold. They run the OS layers with the policy OFF (as if the language layer had
fallen), except where marked ``policy on``. Each uses its own short-lived server, because a
successful attack breaks the server it ran in.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator

import pytest

from llm3d.config import ExecutorConfig
from llm3d.schemas import ExecStatus
from tests.worker.conftest import CUBE
from worker.execution.executor import Executor

pytestmark = pytest.mark.blender


def _executor(jail: str, *, policy: bool = False, **update: object) -> Executor:
    try:
        import importlib.util

        if importlib.util.find_spec("bpy") is None:
            pytest.skip("bpy is not installed")
    except (ImportError, ValueError):
        pytest.skip("bpy is not installed")
    config = ExecutorConfig(timeout_s=20.0, children_per_server=2, jail=jail, **update)
    ex = Executor(config, policy=policy)
    try:
        ex.start()
    except RuntimeError as exc:
        pytest.skip(f"no {jail} server here: {exc}")
    return ex


@pytest.fixture
def jailed_unsafe() -> Iterator[Executor]:
    with _executor("bwrap") as ex:
        yield ex


# -- RT-1: a child changes the fork server's (and siblings') rlimits, niceness, affinity -----


def test_rt1_child_cannot_change_the_servers_rlimits(jailed_unsafe: Executor) -> None:
    """REDTEAM RT-1 (seccomp/jail): children and the server share one uid (65534), and
    ``prlimit64``/``setpriority``/``sched_setaffinity`` on another pid are only checked by
    uid. A child sets the server's RLIMIT_NOFILE to 8: every later program is
    ``infra_error`` (the server cannot open pipes); RLIMIT_CPU=1 kills it, RLIMIT_AS on a
    sibling child makes that program ``exec_failed`` (a wrong reward for someone else)."""
    attack = textwrap.dedent(
        """
        import os, resource
        try:
            resource.prlimit(os.getppid(), resource.RLIMIT_NOFILE, (8, 8))
            print("prlimit: changed")
        except OSError as exc:
            print("prlimit: refused", exc.errno)
        """
    )
    result = jailed_unsafe.run(attack + CUBE, timeout_s=10)
    assert "prlimit: changed" not in result.stdout
    after = jailed_unsafe.run(CUBE, timeout_s=10)
    assert after.status == ExecStatus.OK, after.error


def test_rt1_child_cannot_renice_or_pin_the_server(jailed_unsafe: Executor) -> None:
    """REDTEAM RT-1b: same class: the server (and other programs) reniced to 19, pinned to
    one CPU and put in SCHED_IDLE by a program (starved: every later program times out); ``setpriority(PRIO_USER, 0)`` reaches every process of the uid."""
    attack = textwrap.dedent(
        """
        import os
        pp = os.getppid()
        for name, call in (
            ("setpriority", lambda: os.setpriority(os.PRIO_PROCESS, pp, 19)),
            ("prio_user", lambda: os.setpriority(os.PRIO_USER, 0, 19)),
            ("affinity", lambda: os.sched_setaffinity(pp, {0})),
            ("sched_idle", lambda: os.sched_setscheduler(pp, os.SCHED_IDLE, os.sched_param(0))),
        ):
            try:
                call(); print(name, "changed")
            except OSError as exc:
                print(name, "refused", exc.errno)
        """
    )
    result = jailed_unsafe.run(attack + CUBE, timeout_s=10)
    assert "changed" not in result.stdout, result.stdout


# -- RT-2: jail "none" as root: the child keeps root and every capability -------------------


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root caller keeps root in the child")
def test_rt2_bare_child_started_by_root_holds_no_capability() -> None:
    """REDTEAM RT-2 (privileges): with ``jail: none`` started by root where Python lives in a
    0700 directory (/root/.pyenv, as on this machine), the server keeps root ("not dropped")
    and so does every child: all capabilities, and the seccomp deny-list leaves
    ``init_module``, ``reboot``, ``settimeofday``, ``prlimit64`` on any host pid, ``iopl`` ...
    open. The child must hold no capability whatever uid it runs as."""
    with _executor("none") as ex:
        probe = textwrap.dedent(
            """
            caps = [l.split()[1] for l in open("/proc/self/status") if l.startswith("Cap")]
            print("caps", caps)
            """
        )
        result = ex.run(probe + CUBE, timeout_s=10)
    assert result.status == ExecStatus.OK, result.error
    line = next(x for x in result.stdout.splitlines() if x.startswith("caps"))
    assert all(int(c, 16) == 0 for c in eval(line[5:])), line


# -- RT-3: the jail's /tmp is an unbounded tmpfs: disk (= RAM) outside every limit ---------


def test_rt3_files_a_program_writes_count_against_a_bound(jailed_unsafe: Executor) -> None:
    """REDTEAM RT-3 (jail/rlimits): the jail's ``/tmp`` is a tmpfs without ``size=``; files
    in the working directory are RAM that RLIMIT_AS does not count and RLIMIT_FSIZE bounds
    per file only. 12 files x 60 MiB (720 MiB) pass under ``memory_mb=512``; a program can
    fill half the machine's RAM for its whole timeout (with the policy ON too, through
    ``export_scene(path=f"m{i}.obj")`` in a loop)."""
    ex = _executor("bwrap", memory_mb=512)
    with ex:
        attack = textwrap.dedent(
            """
            import os
            block = b"x" * (1 << 20)
            written = 0
            try:
                for i in range(12):
                    with open(f"f{i}", "wb") as f:
                        for _ in range(60):
                            f.write(block); written += 1
            except OSError as exc:
                print("refused", exc.errno)
            print("written_mib", written)
            """
        )
        result = ex.run(attack + CUBE, timeout_s=15)
    line = next(x for x in result.stdout.splitlines() if x.startswith("written_mib"))
    assert int(line.split()[1]) <= 512, result.stdout
