"""Landlock: let a process write files only beneath one directory (Linux ≥ 5.13).

Used by each forked child after it moved into its empty temporary directory, so that even
code that got past the policy (or a memory-corruption bug in an extension) cannot create,
change or delete a file anywhere else. Reading stays allowed (Blender and Python load files
lazily), and descriptors opened before (the capture pipes) keep working. Executing files is
refused everywhere (the seccomp filter refuses ``execve`` as well).

Plain ``ctypes`` on the raw system calls (the same numbers on x86-64 and aarch64);
:func:`restrict_writes_to` returns why it did nothing where the kernel lacks Landlock.
"""

from __future__ import annotations

import ctypes
import os

__all__ = ["restrict_writes_to"]

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

_EXECUTE = 1 << 0
_WRITE_FILE = 1 << 1
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

_HANDLED_V1 = (
    _EXECUTE
    | _WRITE_FILE
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
#: What stays allowed beneath the working directory: plain files and directories.
_ALLOWED_BENEATH = _WRITE_FILE | _REMOVE_DIR | _REMOVE_FILE | _MAKE_DIR | _MAKE_REG | _TRUNCATE


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _error(what: str) -> str:
    return f"not applied: {what} failed ({os.strerror(ctypes.get_errno())})"


def restrict_writes_to(directory: str, libc: ctypes.CDLL | None) -> str | None:
    """Allow this process (and its threads) to write only beneath ``directory``.

    Irreversible. Returns None on success, else a one-line reason nothing was restricted.
    """
    if libc is None:
        return "not applied: libc unavailable"
    abi = libc.syscall(_SYS_CREATE_RULESET, None, 0, _CREATE_RULESET_VERSION)
    if abi < 1:
        return _error("Landlock (kernel support)")
    handled = _HANDLED_V1 | (_REFER if abi >= 2 else 0) | (_TRUNCATE if abi >= 3 else 0)
    attr = _RulesetAttr(handled)
    ruleset = libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.sizeof(attr), 0)
    if ruleset < 0:
        return _error("landlock_create_ruleset")
    try:
        dir_fd = os.open(directory, os.O_PATH | os.O_CLOEXEC | os.O_DIRECTORY)
    except OSError as exc:
        os.close(ruleset)
        return f"not applied: cannot open {directory} ({exc.strerror})"
    try:
        rule = _PathBeneathAttr(_ALLOWED_BENEATH & handled, dir_fd)
        if libc.syscall(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0) != 0:
            return _error("landlock_add_rule")
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return _error("PR_SET_NO_NEW_PRIVS")
        if libc.syscall(_SYS_RESTRICT_SELF, ruleset, 0) != 0:
            return _error("landlock_restrict_self")
    finally:
        os.close(dir_fd)
        os.close(ruleset)
    return None
