"""The seccomp filter's syscall table against libseccomp, and its jumps (no Blender).

The filter is classic BPF built from a table of syscall numbers (worker/sandbox/seccomp.py). A wrong
number would silently leave a call open, so every number is checked against libseccomp's own
table (``seccomp_syscall_resolve_name_arch``, the library behind Debian's python3-seccomp and
pyseccomp), for both architectures, and a filter is installed in a throw-away process to see
the kernel refuse each class.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
import subprocess
import sys
import textwrap

import pytest

from worker.sandbox.seccomp import (
    DENIED,
    SELF_ONLY,
    SELF_OR_ZERO,
    SYSCALLS,
    PreparedFilter,
    filter_program,
)

_ARCH_TOKENS = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}


def _libseccomp() -> ctypes.CDLL:
    name = ctypes.util.find_library("seccomp")
    if name is None:
        pytest.skip("libseccomp is not installed (apt-get install libseccomp2)")
    lib = ctypes.CDLL(name)
    lib.seccomp_syscall_resolve_name_arch.argtypes = [ctypes.c_uint32, ctypes.c_char_p]
    lib.seccomp_syscall_resolve_name_arch.restype = ctypes.c_int
    return lib


@pytest.mark.parametrize("machine", sorted(SYSCALLS))
def test_every_syscall_number_is_the_one_libseccomp_knows(machine: str) -> None:
    lib = _libseccomp()
    audit_arch, numbers = SYSCALLS[machine]
    assert audit_arch == _ARCH_TOKENS[machine]
    for name, number in numbers.items():
        assert lib.seccomp_syscall_resolve_name_arch(audit_arch, name.encode()) == number, name
    # every rule names a call the table knows, where the architecture has it
    for name in (*DENIED, *SELF_ONLY, *SELF_OR_ZERO, "clone", "clone3"):
        known = lib.seccomp_syscall_resolve_name_arch(audit_arch, name.encode())
        assert (name in numbers) == (known >= 0), (machine, name)


@pytest.mark.parametrize("machine", sorted(SYSCALLS))
def test_the_filter_assembles_with_forward_jumps_only(machine: str) -> None:
    program = filter_program(machine, 4242)
    assert 20 < len(program) < 256
    assert all(0 <= jt < 256 and 0 <= jf < 256 for _, jt, jf, _ in program)


@pytest.mark.skipif(platform.machine() not in SYSCALLS, reason="no filter for this machine")
def test_the_kernel_refuses_each_class_after_the_filter() -> None:
    script = textwrap.dedent(
        """
        import ctypes, os, signal, socket
        from worker.sandbox.seccomp import forbid_new_processes
        libc = ctypes.CDLL(None, use_errno=True)
        assert forbid_new_processes(libc) is None
        def check(name, call):
            try:
                call()
                print(name, "allowed")
            except OSError as exc:
                print(name, "refused", exc.errno)
        check("fork", os.fork)
        check("kill-other", lambda: os.kill(os.getppid(), 0))
        check("kill-self", lambda: os.kill(os.getpid(), 0))
        check("socket", socket.socket)
        check("setsid", os.setsid)
        check("shmget", lambda: (_ for _ in ()).throw(OSError(ctypes.get_errno(), "x"))
              if libc.shmget(0, 4096, 0o1000 | 0o600) < 0 else None)
        check("unshare", lambda: (_ for _ in ()).throw(OSError(ctypes.get_errno(), "x"))
              if libc.unshare(0x20000) != 0 else None)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    outcome = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    assert outcome.pop("kill-self") == "allowed"
    assert all(v.startswith("refused 1") for v in outcome.values()), outcome


@pytest.mark.parametrize("machine", sorted(SYSCALLS))
def test_a_prepared_filter_is_the_same_program_once_the_pid_is_written(machine: str) -> None:
    prepared = PreparedFilter(machine)
    for slot in prepared.slots:
        prepared.filters[slot].k = 4242
    loaded = [(f.code, f.jt, f.jf, f.k) for f in prepared.filters]
    assert loaded == filter_program(machine, 4242)
    assert len(prepared.slots) == 2  # "self" and "self or zero" each compare the pid once
