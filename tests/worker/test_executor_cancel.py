"""Stopping programs nobody waits for, and programs too large to send (real Blender).

``Executor.cancel`` drops a queued program and kills a running one's process group; either
way the future answers ``infra_error`` (never scored, never cached) at once and the server
is free for the next program. A program over ``executor.max_code_bytes`` is ``refused``
before it reaches the server, whose frame limit it would otherwise break for every
program in flight.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from llm3d.config import ExecutorConfig
from llm3d.schemas import ExecStatus
from tests.helpers.waiting import wait_until
from tests.worker.conftest import CUBE
from worker.demo_programs import TIMEOUT
from worker.execution.executor import Executor

pytestmark = pytest.mark.blender


@pytest.fixture(scope="module")
def executor() -> Iterator[Executor]:
    """One server, one child at a time: a second program waits in the server's queue."""
    config = ExecutorConfig(timeout_s=120, children_per_server=1, huge_pages=False)
    with Executor(config) as ex:
        yield ex


def test_cancel_kills_a_running_program_and_drops_a_queued_one(executor: Executor) -> None:
    running = executor.submit(TIMEOUT.code, timeout_s=120)
    queued = executor.submit(TIMEOUT.code, timeout_s=120)
    server = executor._server
    assert server is not None
    wait_until(lambda: any(p.queued for p in server.pending.values()))
    start = time.monotonic()
    assert executor.cancel(queued) and executor.cancel(running)
    results = [queued.result(timeout=10), running.result(timeout=10)]
    took = time.monotonic() - start
    for result in results:
        assert result.status is ExecStatus.INFRA_ERROR
        assert "cancelled" in (result.error or "")
    assert took < 5, f"cancelling took {took:.1f}s"
    after = time.monotonic()
    fresh = executor.run(CUBE, timeout_s=30)
    assert fresh.status is ExecStatus.OK, fresh.error
    assert time.monotonic() - after < 10, "the child slot is free again"
    assert not executor.cancel(running), "an answered program cannot be cancelled"
    assert executor.restarts == 0, "cancelling never costs the server"


def test_a_program_over_the_size_limit_is_refused_without_harming_its_neighbours(
    executor: Executor,
) -> None:
    huge = CUBE + "# " + "x" * (5 << 20) + "\n"  # past the server's 4 MiB frame limit
    futures = [executor.submit(CUBE), executor.submit(huge), executor.submit(CUBE)]
    first, big, last = (f.result(timeout=60) for f in futures)
    assert big.status is ExecStatus.REFUSED
    assert "executor.max_code_bytes" in (big.error or "")
    assert first.status is ExecStatus.OK and last.status is ExecStatus.OK
    assert executor.restarts == 0


def test_a_cancel_scope_tracks_programs_answered_before_it_sees_them() -> None:
    """A program refused at once (too large, empty) is answered before it is tracked."""
    from concurrent.futures import Future

    from worker.farm.backends import CancelScope
    from worker.types import ExecResult

    class Pool:
        def __init__(self) -> None:
            self.cancelled: list[Future[ExecResult]] = []

        def cancel(self, future: Future[ExecResult]) -> bool:
            self.cancelled.append(future)
            return True

    pool, scope = Pool(), CancelScope()
    answered: Future[ExecResult] = Future()
    answered.set_result(ExecResult(status=ExecStatus.REFUSED))
    tracking = threading.Thread(target=scope.track, args=(pool, answered), daemon=True)
    tracking.start()
    tracking.join(5)
    assert not tracking.is_alive(), "tracking an answered program deadlocked"
    waiting: Future[ExecResult] = Future()
    scope.track(pool, waiting)  # type: ignore[arg-type]
    assert scope.cancel() == 1 and pool.cancelled == [waiting]
    late: Future[ExecResult] = Future()
    scope.track(pool, late)  # type: ignore[arg-type]
    assert pool.cancelled == [waiting, late], "a program sent after the cancel is stopped"
