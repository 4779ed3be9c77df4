"""The seccomp filter each forked child installs before it runs a program (DESIGN §2).

It holds even when every layer before it has fallen (a program that reached real Python
through a bug): the kernel refuses, with ``EPERM``, every system call a modeling program
never needs and an escaped one would:

* **new processes and programs**: ``fork``, ``vfork``, ``execve``, ``execveat`` and every
  ``clone`` without ``CLONE_THREAD`` (threads stay allowed: Blender uses them); ``clone3``,
  whose flags a filter cannot read, fails with ``ENOSYS`` so that glibc falls back to
  ``clone``. ``RLIMIT_NPROC`` cannot do this: root ignores it, and it counts threads.
* **other processes**: limits and scheduling only of itself (``prlimit64``, ``sched_set*``,
  ``migrate_pages``, ``move_pages`` with pid 0 or its own; no ``setpriority``, ``ioprio_set``:
  the kernel checks those on another pid by uid alone, and the server shares the uid), signals only to itself (``kill``, ``tkill``, ``tgkill``,
  ``rt_sigqueueinfo``, ``rt_tgsigqueueinfo`` with any other pid, every ``pidfd_*``), no
  ``ptrace``, ``process_vm_readv``/``writev``, ``process_madvise``, ``kcmp``, and no leaving
  its process group (``setpgid``, ``setsid``), which the server kills on a timeout.
* **the network and the kernel's bigger surfaces**: ``socket``, namespaces (``unshare``,
  ``setns``), mounts (``mount``, ``umount2``, ``pivot_root``, ``chroot`` and the new mount
  API), ``bpf``, ``perf_event_open``, ``userfaultfd``, ``io_uring_*`` (its operations bypass
  seccomp), the key ring, file handles (``open_by_handle_at``), and System V / POSIX IPC
  (another process's shared memory, semaphores and queues).

Another ABI (x32, ia32 on x86-64) is refused outright. Plain ``ctypes`` and classic BPF, built
by :func:`filter_program` from the table below (its numbers are checked against libseccomp by
the tests); Linux on x86-64 and aarch64 — elsewhere :func:`forbid_new_processes` says why it
did nothing.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform

__all__ = [
    "DENIED",
    "SELF_ONLY",
    "SELF_OR_ZERO",
    "SYSCALLS",
    "PreparedFilter",
    "filter_program",
    "forbid_new_processes",
    "prepare_filter",
]

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
_RET_K = 0x06  # BPF_RET | BPF_K
_X32_SYSCALL_BIT = 0x40000000

# offsets in struct seccomp_data: nr (int), arch (u32), instruction_pointer (u64), args[6]
_OFF_NR, _OFF_ARCH, _OFF_ARG0_LOW, _OFF_ARG0_HIGH = 0, 4, 16, 20

#: Refused outright (absent on an architecture: skipped there).
DENIED: tuple[str, ...] = (
    "fork",
    "vfork",
    "execve",
    "execveat",
    "pidfd_open",
    "pidfd_getfd",
    "pidfd_send_signal",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "process_madvise",
    "kcmp",
    "setpgid",
    "setsid",
    "socket",
    "unshare",
    "setns",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "mount_setattr",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "keyctl",
    "add_key",
    "request_key",
    "open_by_handle_at",
    "name_to_handle_at",
    # System V and POSIX IPC: another process's segments and queues (ids are guessable)
    "shmget",
    "shmat",
    "shmctl",
    "semget",
    "semop",
    "semctl",
    "semtimedop",
    "msgget",
    "msgsnd",
    "msgrcv",
    "msgctl",
    "mq_open",
    # another process's scheduling, and what only an administrator does (also when a child
    # would still hold root: the capability drop and these refusals each stop it alone)
    "setpriority",
    "ioprio_set",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "kexec_load",
    "kexec_file_load",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "iopl",
    "ioperm",
    "swapon",
    "swapoff",
    "sethostname",
    "setdomainname",
    "acct",
    "quotactl",
    "syslog",
    "vhangup",
)
#: Allowed only when their first argument is the calling process's own pid.
SELF_ONLY: tuple[str, ...] = ("kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo")
#: Allowed only on the calling process: first argument 0 (itself) or its own pid. The kernel
#: checks these on another pid by uid alone, and the server shares the sandbox's uid.
SELF_OR_ZERO: tuple[str, ...] = (
    "prlimit64",
    "sched_setaffinity",
    "sched_setscheduler",
    "sched_setparam",
    "sched_setattr",
    "migrate_pages",
    "move_pages",
)

#: arch -> (AUDIT_ARCH, syscall numbers by name)
SYSCALLS: dict[str, tuple[int, dict[str, int]]] = {
    "x86_64": (
        0xC000003E,
        {
            "fork": 57,
            "vfork": 58,
            "execve": 59,
            "execveat": 322,
            "clone": 56,
            "clone3": 435,
            "kill": 62,
            "tkill": 200,
            "tgkill": 234,
            "rt_sigqueueinfo": 129,
            "rt_tgsigqueueinfo": 297,
            "pidfd_send_signal": 424,
            "pidfd_open": 434,
            "pidfd_getfd": 438,
            "ptrace": 101,
            "process_vm_readv": 310,
            "process_vm_writev": 311,
            "process_madvise": 440,
            "kcmp": 312,
            "setpgid": 109,
            "setsid": 112,
            "socket": 41,
            "unshare": 272,
            "setns": 308,
            "mount": 165,
            "umount2": 166,
            "pivot_root": 155,
            "chroot": 161,
            "open_tree": 428,
            "move_mount": 429,
            "fsopen": 430,
            "fsconfig": 431,
            "fsmount": 432,
            "mount_setattr": 442,
            "bpf": 321,
            "perf_event_open": 298,
            "userfaultfd": 323,
            "io_uring_setup": 425,
            "io_uring_enter": 426,
            "io_uring_register": 427,
            "keyctl": 250,
            "add_key": 248,
            "request_key": 249,
            "open_by_handle_at": 304,
            "name_to_handle_at": 303,
            "shmget": 29,
            "shmat": 30,
            "shmctl": 31,
            "semget": 64,
            "semop": 65,
            "semctl": 66,
            "semtimedop": 220,
            "msgget": 68,
            "msgsnd": 69,
            "msgrcv": 70,
            "msgctl": 71,
            "mq_open": 240,
            "prlimit64": 302,
            "sched_setaffinity": 203,
            "sched_setscheduler": 144,
            "sched_setparam": 142,
            "sched_setattr": 314,
            "migrate_pages": 256,
            "move_pages": 279,
            "setpriority": 141,
            "ioprio_set": 251,
            "init_module": 175,
            "finit_module": 313,
            "delete_module": 176,
            "reboot": 169,
            "kexec_load": 246,
            "kexec_file_load": 320,
            "settimeofday": 164,
            "clock_settime": 227,
            "clock_adjtime": 305,
            "adjtimex": 159,
            "iopl": 172,
            "ioperm": 173,
            "swapon": 167,
            "swapoff": 168,
            "sethostname": 170,
            "setdomainname": 171,
            "acct": 163,
            "quotactl": 179,
            "syslog": 103,
            "vhangup": 153,
        },
    ),
    "aarch64": (
        0xC00000B7,
        {
            "execve": 221,
            "execveat": 281,
            "clone": 220,
            "clone3": 435,
            "kill": 129,
            "tkill": 130,
            "tgkill": 131,
            "rt_sigqueueinfo": 138,
            "rt_tgsigqueueinfo": 240,
            "pidfd_send_signal": 424,
            "pidfd_open": 434,
            "pidfd_getfd": 438,
            "ptrace": 117,
            "process_vm_readv": 270,
            "process_vm_writev": 271,
            "process_madvise": 440,
            "kcmp": 272,
            "setpgid": 154,
            "setsid": 157,
            "socket": 198,
            "unshare": 97,
            "setns": 268,
            "mount": 40,
            "umount2": 39,
            "pivot_root": 41,
            "chroot": 51,
            "open_tree": 428,
            "move_mount": 429,
            "fsopen": 430,
            "fsconfig": 431,
            "fsmount": 432,
            "mount_setattr": 442,
            "bpf": 280,
            "perf_event_open": 241,
            "userfaultfd": 282,
            "io_uring_setup": 425,
            "io_uring_enter": 426,
            "io_uring_register": 427,
            "keyctl": 219,
            "add_key": 217,
            "request_key": 218,
            "open_by_handle_at": 265,
            "name_to_handle_at": 264,
            "shmget": 194,
            "shmat": 196,
            "shmctl": 195,
            "semget": 190,
            "semop": 193,
            "semctl": 191,
            "semtimedop": 192,
            "msgget": 186,
            "msgsnd": 189,
            "msgrcv": 188,
            "msgctl": 187,
            "mq_open": 180,
            "prlimit64": 261,
            "sched_setaffinity": 122,
            "sched_setscheduler": 119,
            "sched_setparam": 118,
            "sched_setattr": 274,
            "migrate_pages": 238,
            "move_pages": 239,
            "setpriority": 140,
            "ioprio_set": 30,
            "init_module": 105,
            "finit_module": 273,
            "delete_module": 106,
            "reboot": 142,
            "kexec_load": 104,
            "kexec_file_load": 294,
            "settimeofday": 170,
            "clock_settime": 112,
            "clock_adjtime": 266,
            "adjtimex": 171,
            "swapon": 224,
            "swapoff": 225,
            "sethostname": 161,
            "setdomainname": 162,
            "acct": 89,
            "quotactl": 60,
            "syslog": 116,
            "vhangup": 58,
        },
    ),
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


# An instruction whose jump targets are labels, resolved by _assemble.
_Ins = tuple[int, str | None, str | None, int]


def _assemble(code: list[_Ins | str]) -> list[tuple[int, int, int, int]]:
    """Resolve label names (plain strings in ``code``) into relative jump offsets."""
    labels: dict[str, int] = {}
    body: list[_Ins] = []
    for item in code:
        if isinstance(item, str):
            labels[item] = len(body)
        else:
            body.append(item)
    out: list[tuple[int, int, int, int]] = []
    for i, (op, jt, jf, k) in enumerate(body):
        offsets = [0 if label is None else labels[label] - i - 1 for label in (jt, jf)]
        if any(not 0 <= off < 256 for off in offsets):
            raise ValueError("seccomp filter jump out of range")
        out.append((op, offsets[0], offsets[1], k))
    return out


def filter_program(machine: str, pid: int) -> list[tuple[int, int, int, int]]:
    """The classic BPF program for ``machine``, letting signals reach only ``pid``."""
    audit_arch, numbers = SYSCALLS[machine]
    deny = _SECCOMP_RET_ERRNO | errno.EPERM
    code: list[_Ins | str] = [
        (_LD_W_ABS, None, None, _OFF_ARCH),
        (_JEQ_K, None, "deny", audit_arch),  # another ABI: refuse the whole call outright
        (_LD_W_ABS, None, None, _OFF_NR),
        (_JGE_K, "deny", None, _X32_SYSCALL_BIT),  # x32 numbering of the same calls
        (_JEQ_K, "enosys", None, numbers["clone3"]),
    ]
    code += [(_JEQ_K, "deny", None, numbers[name]) for name in DENIED if name in numbers]
    code += [(_JEQ_K, "self", None, numbers[name]) for name in SELF_ONLY]
    code += [(_JEQ_K, "self_or_zero", None, numbers[name]) for name in SELF_OR_ZERO]
    code += [
        (_JEQ_K, "clone", "allow", numbers["clone"]),
        "clone",
        (_LD_W_ABS, None, None, _OFF_ARG0_LOW),
        (_JSET_K, "allow", "deny", _CLONE_THREAD),  # a thread: allow; a process: deny
        "self_or_zero",
        (_LD_W_ABS, None, None, _OFF_ARG0_LOW),
        (_JEQ_K, "high", None, 0),
        (_JEQ_K, "high", "deny", pid),
        "self",
        (_LD_W_ABS, None, None, _OFF_ARG0_LOW),
        (_JEQ_K, None, "deny", pid),
        "high",
        (_LD_W_ABS, None, None, _OFF_ARG0_HIGH),
        (_JEQ_K, "allow", "deny", 0),  # the whole 64-bit register must be the pid
        "enosys",
        (_RET_K, None, None, _SECCOMP_RET_ERRNO | errno.ENOSYS),
        "deny",
        (_RET_K, None, None, deny),
        "allow",
        (_RET_K, None, None, _SECCOMP_RET_ALLOW),
    ]
    return _assemble(code)


#: Stands for the child's pid in a prepared filter (above any pid the kernel hands out).
_PID_SLOT = 0x7FFFFFF0


class PreparedFilter:
    """The filter built once (in the fork server) and installed by each child with its pid.

    Building the BPF and its ctypes arrays costs about a millisecond; a child only writes
    its pid into the prepared instructions and loads them.
    """

    def __init__(self, machine: str) -> None:
        program = filter_program(machine, _PID_SLOT)
        self.slots = [
            i for i, (op, _, _, k) in enumerate(program) if op == _JEQ_K and k == _PID_SLOT
        ]
        self.filters = (_SockFilter * len(program))(*(_SockFilter(*ins) for ins in program))
        self.fprog = _SockFprog(
            len(program), ctypes.cast(self.filters, ctypes.POINTER(_SockFilter))
        )

    def install(self, libc: ctypes.CDLL, pid: int) -> str | None:
        for slot in self.slots:
            self.filters[slot].k = pid
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return f"not applied: PR_SET_NO_NEW_PRIVS failed ({_errno_text()})"
        if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(self.fprog), 0, 0) != 0:
            return f"not applied: PR_SET_SECCOMP failed ({_errno_text()})"
        return None


def prepare_filter() -> PreparedFilter | None:
    """The filter for this machine, or None where there is none (see the module docstring)."""
    machine = platform.machine()
    return PreparedFilter(machine) if machine in SYSCALLS else None


def forbid_new_processes(
    libc: ctypes.CDLL | None, prepared: PreparedFilter | None = None
) -> str | None:
    """Install the filter on the calling process (irreversible; inherited by threads).

    ``prepared`` comes from :func:`prepare_filter` (built before forking); without it the
    filter is built here. Returns None on success, else a one-line reason it is not in place.
    """
    machine = platform.machine()
    if libc is None:
        return "not applied: libc unavailable"
    if machine not in SYSCALLS:
        return f"not applied: no filter for {machine}"
    return (prepared or PreparedFilter(machine)).install(libc, os.getpid())


def _errno_text() -> str:
    return os.strerror(ctypes.get_errno())
