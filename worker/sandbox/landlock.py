"""Landlock: what a child may read, write and reach, by the kernel (Linux ≥ 5.13).

Used by each forked child after it moved into its empty temporary directory, so that even
code that got past the policy (or a memory-corruption bug in an extension) finds the kernel
in its way, whether or not the fork server is jailed:

* **reads** only beneath the paths it is given (the Python installation, the virtual
  environment, the packages the server imports, system libraries: :mod:`worker.sandbox.jail`'s
  ``readable_paths``), its own ``/proc/<pid>``, a few ``/dev`` and ``/proc`` files, and its
  working directory. A dataset, a ground truth, ``/etc/shadow`` or another process's
  ``/proc`` entries cannot be opened;
* **writes** (create, change, delete, rename into) only beneath its working directory;
* **executes** nothing (the seccomp filter refuses ``execve`` as well);
* with Landlock ABI 4 (Linux 6.7) **no TCP** bind or connect; with ABI 6 (Linux 6.12) no
  **signals** to processes outside its own Landlock domain (the server, other programs) and
  no connection to **abstract Unix sockets** outside it.

Descriptors opened before (the capture pipes) keep working. Plain ``ctypes`` on the raw
system calls (the same numbers on x86-64 and aarch64); :func:`restrict_filesystem` returns
why it did nothing where the kernel lacks Landlock, and notes what this kernel's ABI lacks.
"""

from __future__ import annotations

import ctypes
import os
import stat
from collections.abc import Sequence

__all__ = ["restrict_filesystem", "restrict_writes_to"]

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

_EXECUTE = 1 << 0
_WRITE_FILE = 1 << 1
_READ_FILE = 1 << 2
_READ_DIR = 1 << 3
_REMOVE_DIR = 1 << 4
_REMOVE_FILE = 1 << 5
_MAKE_CHAR = 1 << 6
_MAKE_DIR = 1 << 7
_MAKE_REG = 1 << 8
_MAKE_SOCK = 1 << 9
_MAKE_FIFO = 1 << 10
_MAKE_BLOCK = 1 << 11
_MAKE_SYM = 1 << 12
_REFER = 1 << 13  # ABI 2
_TRUNCATE = 1 << 14  # ABI 3
_IOCTL_DEV = 1 << 15  # ABI 5

_NET_BIND_TCP = 1 << 0  # ABI 4
_NET_CONNECT_TCP = 1 << 1
_SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
_SCOPE_SIGNAL = 1 << 1

_HANDLED_V1 = (
    _EXECUTE
    | _WRITE_FILE
    | _READ_FILE
    | _READ_DIR
    | _REMOVE_DIR
    | _REMOVE_FILE
    | _MAKE_CHAR
    | _MAKE_DIR
    | _MAKE_REG
    | _MAKE_SOCK
    | _MAKE_FIFO
    | _MAKE_BLOCK
    | _MAKE_SYM
)
#: Rights that make sense on a file (a rule on a file may only grant these).
_FILE_RIGHTS = _EXECUTE | _WRITE_FILE | _READ_FILE | _TRUNCATE | _IOCTL_DEV
_READ = _READ_FILE | _READ_DIR
#: What stays allowed beneath the working directory: plain files and directories.
_ALLOWED_BENEATH = (
    _READ | _WRITE_FILE | _REMOVE_DIR | _REMOVE_FILE | _MAKE_DIR | _MAKE_REG | _TRUNCATE
)
#: Files every process may read (and /dev/null write): harmless, and libraries expect them.
_DEVICES = {"/dev/null": _READ_FILE | _WRITE_FILE, "/dev/zero": _READ_FILE}
_DEVICES |= {"/dev/urandom": _READ_FILE, "/dev/random": _READ_FILE}
_SYSTEM_FILES = ("/proc/cpuinfo", "/proc/meminfo", "/proc/stat")


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),  # ABI 4
        ("scoped", ctypes.c_uint64),  # ABI 6
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _error(what: str) -> str:
    return f"not applied: {what} failed ({os.strerror(ctypes.get_errno())})"


def restrict_writes_to(directory: str, libc: ctypes.CDLL | None) -> str | None:
    """Only writes restricted (to beneath ``directory``); reads stay open. Kept for callers
    that cannot name what they read; children use :func:`restrict_filesystem`."""
    return restrict_filesystem(directory, None, libc)


def restrict_filesystem(
    workdir: str, readable: Sequence[str] | None, libc: ctypes.CDLL | None
) -> str | None:
    """Confine this process (and its threads) as the module docstring says. Irreversible.

    ``readable`` None leaves reads unrestricted. Returns None when everything is in place,
    else one line: why nothing was restricted, or what this kernel could not restrict.
    """
    if libc is None:
        return "not applied: libc unavailable"
    abi = libc.syscall(_SYS_CREATE_RULESET, None, 0, _CREATE_RULESET_VERSION)
    if abi < 1:
        return _error("Landlock (kernel support)")
    handled = _HANDLED_V1 | (_REFER if abi >= 2 else 0) | (_TRUNCATE if abi >= 3 else 0)
    handled |= _IOCTL_DEV if abi >= 5 else 0
    if readable is None:
        handled &= ~_READ
    attr = _RulesetAttr(
        handled,
        _NET_BIND_TCP | _NET_CONNECT_TCP if abi >= 4 else 0,
        _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL if abi >= 6 else 0,
    )
    size = ctypes.sizeof(ctypes.c_uint64) * (3 if abi >= 6 else 2 if abi >= 4 else 1)
    ruleset = libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), size, 0)
    if ruleset < 0:
        return _error("landlock_create_ruleset")
    try:
        rules: dict[str, int] = {workdir: _ALLOWED_BENEATH}
        if readable is not None:
            rules |= {path: _READ for path in readable}
            rules |= _DEVICES | {path: _READ_FILE for path in _SYSTEM_FILES}
            rules[f"/proc/{os.getpid()}"] = _READ
        for path, access in rules.items():
            failure = _add_rule(libc, ruleset, path, access & handled, required=path == workdir)
            if failure is not None:
                return failure
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return _error("PR_SET_NO_NEW_PRIVS")
        if libc.syscall(_SYS_RESTRICT_SELF, ruleset, 0) != 0:
            return _error("landlock_restrict_self")
    finally:
        os.close(ruleset)
    missing = [what for what, need in (("TCP", 4), ("signal scoping", 6)) if abi < need]
    if missing:
        return f"partial: Landlock ABI {abi} cannot restrict " + " or ".join(missing)
    return None


def _add_rule(
    libc: ctypes.CDLL, ruleset: int, path: str, access: int, *, required: bool
) -> str | None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError as exc:
        return f"not applied: cannot open {path} ({exc.strerror})" if required else None
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            access &= _FILE_RIGHTS
        rule = _PathBeneathAttr(access, fd)
        if libc.syscall(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0) != 0:
            return _error(f"landlock_add_rule({path})")
    finally:
        os.close(fd)
    return None
