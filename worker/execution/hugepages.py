"""Back the fork server's warm heap with transparent huge pages, so that forking it is cheap.

Every program runs in a fresh ``fork()`` of the warm Blender process (DESIGN §2). ``fork``
copies one page-table entry per 4 KiB page of private, written memory, and both processes
then take a copy-on-write fault on the first write to each shared page. For a warm Blender
(~110 MiB of anonymous memory, ~28 000 pages) that copying was most of the executor's cost:
``perf`` showed ``copy_page_range`` and write-protect faults at 60-70 % of the CPU time of
an empty program.

When the same memory is mapped by 2 MiB huge pages, ``fork`` copies one entry per 2 MiB.
:func:`collapse` asks the kernel to do that for the server's anonymous, private, writable
regions (the C heap and anonymous mappings): ``madvise(MADV_HUGEPAGE)`` marks them, then
``madvise(MADV_COLLAPSE)`` (Linux ≥ 6.1) rebuilds them as huge pages at once instead of
waiting for ``khugepaged``. Measured here (2 cores, Linux 6.18): the server's CPU per fork
went from 4.5 to 2.3 ms and a child's from 12.6 to 9 ms for a small program; with
``benchmarks/executor_bench.py``, CPU per program (server and child) went from 16.4 to
11.3 ms for a cube and from 35.6 to 31.2 ms over the ``bpy_lib`` examples.

Writes after a fork split huge pages back into small ones (in the server and in the child
alike), so the server calls :func:`collapse` again from time to time while it is idle
(:class:`Recollapse`). Nothing here changes what memory holds: if the kernel refuses (no
THP support, ``enabled=never``, an older kernel) the server runs exactly as before and its
``hello`` says why.
"""

from __future__ import annotations

import ctypes
import errno
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["HUGE_PAGE", "CollapseReport", "Recollapse", "collapse", "thp_mode"]

HUGE_PAGE = 2 << 20
_MADV_HUGEPAGE = 14
_MADV_COLLAPSE = 25
_THP_ENABLED = Path("/sys/kernel/mm/transparent_hugepage/enabled")


@dataclass(frozen=True)
class CollapseReport:
    """What one :func:`collapse` did: regions asked for, collapsed, and why not (if so)."""

    requested: int = 0  # 2 MiB ranges marked MADV_HUGEPAGE
    collapsed: int = 0  # ranges MADV_COLLAPSE turned into huge pages now
    seconds: float = 0.0
    error: str | None = None

    def describe(self) -> str:
        """One line for the server's ``hello`` diagnostics."""
        if self.error is not None:
            return f"not used: {self.error}"
        return (
            f"{self.collapsed} of {self.requested} × 2 MiB of the warm heap collapsed "
            f"into huge pages in {self.seconds * 1e3:.0f} ms"
        )


def thp_mode(path: Path = _THP_ENABLED) -> str | None:
    """The kernel's transparent-huge-page mode (``always``/``madvise``/``never``), or None."""
    try:
        text = path.read_text()
    except OSError:
        return None
    for word in text.split():
        if word.startswith("[") and word.endswith("]"):
            return word[1:-1]
    return None


def _candidate_ranges(maps: str) -> list[tuple[int, int]]:
    """2 MiB-aligned ranges inside the anonymous, private, writable mappings of ``maps``."""
    ranges = []
    for line in maps.splitlines():
        parts = line.split()
        if len(parts) < 5:
            continue
        perms = parts[1]
        name = parts[5] if len(parts) > 5 else ""
        # anonymous memory and the brk heap only: file-backed and shared mappings are left
        # as they are (their pages are not copied by fork, or cannot be collapsed)
        if "w" not in perms or "p" not in perms or name not in ("", "[heap]"):
            continue
        low, high = (int(x, 16) for x in parts[0].split("-"))
        start = -(-low // HUGE_PAGE) * HUGE_PAGE
        end = high // HUGE_PAGE * HUGE_PAGE
        if end > start:
            ranges.append((start, end))
    return ranges


#: A 2 MiB range is collapsed only when at least this share of its small pages is resident:
#: collapsing reserved-but-unused memory would only make the server bigger.
MIN_RESIDENT = 0.5


def _dense_ranges(libc: ctypes.CDLL, ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The 2 MiB pieces of ``ranges`` that are mostly resident (``mincore``), merged."""
    pages = HUGE_PAGE // os.sysconf("SC_PAGE_SIZE")
    vector = (ctypes.c_ubyte * pages)()
    mincore = libc.mincore
    mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    mincore.restype = ctypes.c_int
    dense: list[tuple[int, int]] = []
    for start, end in ranges:
        for chunk in range(start, end, HUGE_PAGE):
            if mincore(chunk, HUGE_PAGE, vector) != 0:
                continue  # unmapped since /proc was read
            if sum(b & 1 for b in vector) < MIN_RESIDENT * pages:
                continue
            if dense and dense[-1][1] == chunk:
                dense[-1] = (dense[-1][0], chunk + HUGE_PAGE)
            else:
                dense.append((chunk, chunk + HUGE_PAGE))
    return dense


def collapse(libc: ctypes.CDLL | None, maps_path: str = "/proc/self/maps") -> CollapseReport:
    """Mark this process's anonymous memory for huge pages and collapse it now.

    Never raises: the server works the same without huge pages, only its forks cost more.
    """
    start_time = time.perf_counter()
    if libc is None:
        return CollapseReport(error="libc is unavailable")
    mode = thp_mode()
    if mode is None or mode == "never":
        return CollapseReport(error=f"transparent huge pages are {mode or 'not supported'}")
    try:
        maps = Path(maps_path).read_text()
    except OSError as exc:
        return CollapseReport(error=f"cannot read {maps_path}: {exc}")
    madvise = libc.madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    requested = collapsed = 0
    no_collapse: str | None = None
    for start, end in _dense_ranges(libc, _candidate_ranges(maps)):
        # the mapping may be gone (freed since /proc was read): skip it, never fail
        if madvise(start, end - start, _MADV_HUGEPAGE) != 0:
            continue
        requested += (end - start) // HUGE_PAGE
        if no_collapse is not None:
            continue
        if madvise(start, end - start, _MADV_COLLAPSE) == 0:
            collapsed += (end - start) // HUGE_PAGE
            continue
        err = ctypes.get_errno()
        if err == errno.EINVAL:  # a kernel before 6.1: khugepaged will collapse them slowly
            no_collapse = "MADV_COLLAPSE is not supported by this kernel"
        # EAGAIN / ENOMEM: some of the range could not be collapsed now; the rest was
    seconds = time.perf_counter() - start_time
    if requested == 0:
        return CollapseReport(seconds=seconds, error="no anonymous memory to collapse")
    return CollapseReport(requested=requested, collapsed=collapsed, seconds=seconds)


@dataclass
class Recollapse:
    """The server's huge pages: collapsed at :meth:`start`, again after ``every`` forks
    while idle.

    Writes after each fork split huge pages (copy-on-write works on 4 KiB pages), so the
    warm heap slowly goes back to small pages; collapsing again costs a few tens of
    milliseconds and is done between programs, never while a child waits to start.
    """

    libc: ctypes.CDLL | None
    enabled: bool = True
    every: int = 256
    forks: int = 0
    last: CollapseReport = field(default_factory=CollapseReport)

    def start(self) -> CollapseReport:
        """The first collapse, once the warm heap is built (or why there is none)."""
        self.forks = 0
        self.last = (
            collapse(self.libc)
            if self.enabled
            else CollapseReport(error="executor.huge_pages is false")
        )
        return self.last

    def forked(self) -> None:
        self.forks += 1

    def maybe(self, *, idle: bool) -> CollapseReport | None:
        """Collapse again if due and ``idle``; return the report when it ran."""
        if not self.enabled or self.every <= 0 or not idle or self.forks < self.every:
            return None
        if self.last.error is not None:
            return None  # it did not work at start-up: it will not now
        self.forks = 0
        self.last = collapse(self.libc)
        return self.last
