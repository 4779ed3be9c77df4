"""Huge pages for the fork server's warm heap: what is collapsed, that memory keeps its
contents, and that the executor gives the same results with and without them."""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pytest

from llm3d.config import ExecutorConfig
from worker.demo_programs import OBJECTS
from worker.execution.executor import Executor
from worker.execution.hugepages import HUGE_PAGE, Recollapse, _candidate_ranges, collapse, thp_mode

MAPS = """\
55d0c0000000-55d0c0a00000 rw-p 00000000 00:00 0                          [heap]
7f0000000000-7f0000500000 rw-p 00000000 00:00 0
7f0000600000-7f0000700000 rw-p 00000000 00:00 0
7f0001000000-7f0001400000 r--p 00000000 08:01 123                        /usr/lib/libfoo.so
7f0002000000-7f0002400000 rw-p 00200000 08:01 123                        /usr/lib/libfoo.so
7f0003000000-7f0003400000 rw-s 00000000 00:05 77                         /dev/shm/x
7f0004000000-7f0004400000 r--p 00000000 00:00 0
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
"""


def anon_huge_kib() -> int:
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("AnonHugePages:"):
            return int(line.split()[1])
    return 0


def test_only_private_writable_anonymous_memory_is_considered() -> None:
    ranges = _candidate_ranges(MAPS)
    # the heap and the 5 MiB anonymous mapping, trimmed to 2 MiB boundaries; the 1 MiB one
    # holds no whole huge page; files, shared memory, read-only memory and the stack are out
    assert ranges == [
        (0x55D0C0000000, 0x55D0C0A00000),
        (0x7F0000000000, 0x7F0000400000),
    ]
    assert all(start % HUGE_PAGE == 0 and end % HUGE_PAGE == 0 for start, end in ranges)


def test_thp_mode_reads_the_bracketed_word(tmp_path: Path) -> None:
    setting = tmp_path / "enabled"
    setting.write_text("always [madvise] never\n")
    assert thp_mode(setting) == "madvise"
    assert thp_mode(tmp_path / "missing") is None


def test_without_libc_nothing_happens_and_the_reason_is_given() -> None:
    report = collapse(None)
    assert report.collapsed == 0
    assert "libc" in report.describe() and report.describe().startswith("not used")


@pytest.mark.skipif(
    thp_mode() not in {"always", "madvise"}, reason=f"transparent huge pages are {thp_mode()}"
)
def test_collapse_backs_resident_memory_with_huge_pages_and_keeps_its_contents() -> None:
    data = np.random.default_rng(0).random(8 * HUGE_PAGE // 8)  # 16 MiB, anonymous, resident
    checksum = float(data.sum())
    before = anon_huge_kib()
    report = collapse(ctypes.CDLL(None, use_errno=True))
    assert report.error is None, report.describe()
    assert report.collapsed >= 4, report.describe()
    assert anon_huge_kib() > before
    assert float(data.sum()) == checksum
    assert "collapsed into huge pages" in report.describe()


def test_recollapse_runs_after_enough_forks_and_only_while_idle() -> None:
    again = Recollapse(None, every=3)
    for _ in range(3):
        again.forked()
    assert again.maybe(idle=False) is None, "never while a program waits"
    report = again.maybe(idle=True)
    assert report is not None and again.forks == 0
    assert report.error is not None  # no libc here
    for _ in range(3):
        again.forked()
    assert again.maybe(idle=True) is None, "a collapse that failed is not retried"
    off = Recollapse(None, every=0)
    off.forked()
    assert off.maybe(idle=True) is None


@pytest.mark.blender
def test_the_executor_gives_the_same_meshes_with_and_without_huge_pages() -> None:
    codes = [OBJECTS["snowman"], OBJECTS["table"]]
    results = {}
    for huge in (True, False):
        with Executor(ExecutorConfig(huge_pages=huge)) as ex:
            results[huge] = [ex.run(code) for code in codes]
            hello = ex.server_info["diagnostics"]["huge_pages"]
            if huge and thp_mode() in {"always", "madvise"}:
                assert "collapsed into huge pages" in hello, hello
            if not huge:
                assert hello == "not used: executor.huge_pages is false"
    for with_huge, without in zip(results[True], results[False], strict=True):
        assert with_huge.status == without.status == "ok"
        assert np.array_equal(with_huge.vertices, without.vertices)
        assert np.array_equal(with_huge.faces, without.faces)
