"""A seccomp filter that stops a process from creating processes or executing programs.

Used by each forked child before it runs a program (the "no new processes" limit of
DESIGN §2). ``RLIMIT_NPROC`` cannot do this job: root ignores it, and for other users it also
counts Blender's worker threads. The filter makes ``fork``, ``vfork``, ``execve``,
``execveat`` and every ``clone`` without ``CLONE_THREAD`` fail with ``EPERM``; ``clone3``
(whose flags a filter cannot read) fails with ``ENOSYS`` so that glibc falls back to
``clone`` for new threads, which stay allowed. Plain ``ctypes``; Linux on x86-64 and
aarch64 only — elsewhere :func:`forbid_new_processes` says why it did nothing.
"""

from __future__ import annotations

import ctypes
import errno
import platform

__all__ = ["forbid_new_processes"]

_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_SECCOMP_RET_ALLOW = 0x7FFF0000
_SECCOMP_RET_ERRNO = 0x00050000
_CLONE_THREAD = 0x00010000

# BPF opcodes
_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JSET_K = 0x45  # BPF_JMP | BPF_JSET | BPF_K
_JGE_K = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_X32_SYSCALL_BIT = 0x40000000
_RET_K = 0x06  # BPF_RET | BPF_K

# offsets in struct seccomp_data: nr (int), arch (u32), instruction_pointer (u64), args[6]
_OFF_NR, _OFF_ARCH, _OFF_ARG0_LOW = 0, 4, 16

# arch -> (AUDIT_ARCH, clone, clone3, syscalls that are always refused)
_ARCHES: dict[str, tuple[int, int, int, tuple[int, ...]]] = {
    "x86_64": (0xC000003E, 56, 435, (57, 58, 59, 322)),  # fork, vfork, execve, execveat
    "aarch64": (0xC00000B7, 220, 435, (221, 281)),  # execve, execveat (no fork/vfork)
}


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [
        ("len", ctypes.c_ushort),
        ("filter", ctypes.POINTER(_SockFilter)),
    ]


def _program(machine: str) -> list[tuple[int, int, int, int]]:
    audit_arch, clone, clone3, refused = _ARCHES[machine]
    deny = _SECCOMP_RET_ERRNO | errno.EPERM
    n = len(refused)
    prog: list[tuple[int, int, int, int]] = [
        (_LD_W_ABS, 0, 0, _OFF_ARCH),
        # another ABI (e.g. x32/ia32 on x86-64): refuse the whole call outright
        (_JEQ_K, 1, 0, audit_arch),
        (_RET_K, 0, 0, deny),
        (_LD_W_ABS, 0, 0, _OFF_NR),
        (_JGE_K, 0, 1, _X32_SYSCALL_BIT),  # x32 numbering of the same calls: refuse
        (_RET_K, 0, 0, deny),
        (_JEQ_K, 0, 1, clone3),
        (_RET_K, 0, 0, _SECCOMP_RET_ERRNO | errno.ENOSYS),
    ]
    for i, nr in enumerate(refused):
        # jump to the shared "deny" after the remaining checks, the clone check and allow
        prog.append((_JEQ_K, n - i + 3, 0, nr))
    prog += [
        (_JEQ_K, 0, 2, clone),  # not clone: allow
        (_LD_W_ABS, 0, 0, _OFF_ARG0_LOW),
        (_JSET_K, 0, 1, _CLONE_THREAD),  # a thread: allow; a process: deny
        (_RET_K, 0, 0, _SECCOMP_RET_ALLOW),
        (_RET_K, 0, 0, deny),
    ]
    return prog


def forbid_new_processes(libc: ctypes.CDLL | None) -> str | None:
    """Install the filter on the calling process (irreversible; inherited by threads).

    Returns None on success, else a one-line reason the filter is not in place.
    """
    machine = platform.machine()
    if libc is None:
        return "not applied: libc unavailable"
    if machine not in _ARCHES:
        return f"not applied: no filter for {machine}"
    prog = _program(machine)
    filters = (_SockFilter * len(prog))(*(_SockFilter(*ins) for ins in prog))
    fprog = _SockFprog(len(prog), ctypes.cast(filters, ctypes.POINTER(_SockFilter)))
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return f"not applied: PR_SET_NO_NEW_PRIVS failed ({_errno_text()})"
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        return f"not applied: PR_SET_SECCOMP failed ({_errno_text()})"
    return None


def _errno_text() -> str:
    import os

    return os.strerror(ctypes.get_errno())
