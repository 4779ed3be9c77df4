"""Give up root for good: the fork server's first act when started as root (plain Python).

A fork server started by root (a farm running as root, the jail's root) becomes
``executor.sandbox_uid``/``sandbox_gid`` with no supplementary groups; the kernel then clears
every capability, and ``no_new_privs`` keeps it from regaining any (no setuid binaries, no
file capabilities). The process is also made non-dumpable, so that another process of the
same user, a child that escaped the language layer say, can neither ptrace it nor read its
``/proc/<pid>/mem`` or ``environ``; children inherit that.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

__all__ = ["capabilities", "drop_capabilities", "drop_privileges", "others_can_read"]

_PR_SET_DUMPABLE = 4
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAPBSET_DROP = 24
_PR_SET_SECUREBITS = 28
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
#: NOROOT, NO_SETUID_FIXUP and KEEP_CAPS, each locked: uid 0 never means capabilities again
_SECUREBITS_LOCKED = 0x2F
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_CAP_LAST = 63


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def capabilities() -> dict[str, int]:
    """This process's capability sets (``CapEff``, ``CapPrm``, ...) as read from /proc."""
    found: dict[str, int] = {}
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Cap"):
                    key, _, value = line.partition(":")
                    found[key] = int(value.strip(), 16)
    except OSError:
        pass
    return found


def others_can_read(*paths: str) -> str | None:
    """None when every directory above and at ``paths`` can be crossed by any user, else
    the first that cannot (``/root`` is 0700 on many machines: a Python installed under it
    is unreadable once root is given up)."""
    for path in paths:
        start = Path(path).absolute()
        for current in (start, *start.parents):
            try:
                if not current.stat().st_mode & 0o001:
                    return str(current)
            except OSError:
                return str(current)
    return None


def drop_privileges(uid: int, gid: int) -> str:
    """Become ``uid``/``gid`` if root, forbid new privileges, become non-dumpable.

    Returns one line saying what the process now is. Raises ``PermissionError`` when root
    could not give up root (the caller must then not run anything untrusted).
    """
    if os.geteuid() == 0:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
        try:
            os.setuid(0)
        except PermissionError:
            pass
        else:  # pragma: no cover - the kernel guarantees this cannot happen
            raise PermissionError("root could be regained after dropping privileges")
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    caps = capabilities()
    if caps.get("CapEff", 0) or caps.get("CapPrm", 0):
        raise PermissionError(f"capabilities remain after dropping privileges: {caps}")
    return f"uid {os.getuid()}, gid {os.getgid()}, no capabilities, no new privileges, not dumpable"


def drop_capabilities(libc: ctypes.CDLL | None) -> str | None:
    """Leave this process with no capability at all, whatever its uid (irreversible).

    A program's child must never hold one, also where its server could not give up root
    (no jail, Python only readable by root): the bounding and ambient sets are emptied,
    the secure bits locked so that uid 0 grants nothing, and every set cleared. Returns
    None when none remains, else what is left.
    """
    if libc is None:
        return "not applied: libc unavailable"
    if os.geteuid() == 0:
        for cap in range(_CAP_LAST + 1):
            libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)  # EINVAL past the kernel's last one
        libc.prctl(_PR_SET_SECUREBITS, _SECUREBITS_LOCKED, 0, 0, 0)
    libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    libc.capset(ctypes.byref(header), data)
    left = {k: v for k, v in capabilities().items() if k != "CapBnd" and v}
    return f"capabilities remain: {left}" if left else None
