"""The farm under faults, with real processes: a worker killed mid-batch, Redis restarted
mid-job, a network fault that the worker notices on one socket before the others, and a batch
full of hostile programs and timeouts.

The killed-worker and Redis tests use short visibility timeouts so that redelivery happens
within seconds; the Redis tests run their own ``redis-server`` (never the shared one).
"""

from __future__ import annotations

import contextlib
import random
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from llm3d.config import load_config
from llm3d.schemas import ReferencePayload, reference_key
from tests.api.farm import (
    Farm,
    needs_redis,
    private_redis,
    redis_available,
    start_farm,
)
from tests.helpers.waiting import wait_until
from worker.demo_programs import HOSTILE, OBJECTS, TIMEOUT, perturb
from worker.execution.executor import Executor
from worker.farm.consumer import close_lost_channels
from worker.metrics import GroundTruthCache
from worker.scoring import ScoreJob, ScoreSettings, score_job

pytestmark = [pytest.mark.blender, pytest.mark.slow]

UNIT_BOX = "from bpy_lib import *\n# part_1: cube\nbox(size=[1.0, 1.0, 1.0])\nexport_scene()\n"


def nonce(code: str, i: int) -> str:
    """A distinct program with the same mesh and format score (no cache hit, same reward)."""
    return f"{code}# nonce {i} {uuid.uuid4().hex[:6]}\n"


def submit(farm: Farm, items: list[dict[str, Any]], **kw: Any) -> str:
    with farm.client() as http:
        response = http.post("/reward/jobs", json={"items": items, **kw})
    assert response.status_code == 202, response.text
    return str(response.json()["url"])


def poll(farm: Farm, url: str, timeout: float = 180, until: int | None = None) -> dict[str, Any]:
    """A job's state once done (or once ``until`` items are done); 503s are waited out."""
    deadline = time.monotonic() + timeout
    state: dict[str, Any] = {}
    with farm.client() as http:
        while time.monotonic() < deadline:
            r = http.get(url)
            if r.status_code == 200:
                state = r.json()
                if state["state"] in {"done", "failed"}:
                    return state
                if until is not None and state["completed"] >= until:
                    return state
            time.sleep(0.2)
    raise AssertionError(f"job not finished in {timeout}s: {state}\n{farm.logs()}")


def assert_one_result_each(
    state: dict[str, Any], items: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    assert state["state"] == "done", state.get("error")
    results: list[dict[str, Any]] = state["response"]["results"]
    assert [r["id"] for r in results] == [i["id"] for i in items], "one result per item, in order"
    return results


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path


@needs_redis
@pytest.mark.redis
def test_killed_worker_mid_batch_every_item_gets_exactly_one_result(tmp: Path) -> None:
    farm = start_farm("celery", tmp, extra_env={"LLM3D_FARM__VISIBILITY_TIMEOUT_S": "8"}, workers=1)
    try:
        items = [
            {"id": f"i{i:03d}", "code": nonce(UNIT_BOX, i), "reference": {"code": UNIT_BOX}}
            for i in range(200)
        ]
        url = submit(farm, items)
        mid = poll(farm, url, until=40)
        assert mid["state"] == "running" and mid["completed"] < 200, "kill it mid-batch"
        farm.workers[0].kill()  # SIGKILL the whole group: worker, pool, fork servers
        assert not farm.workers[0].alive()
        farm.start_worker()
        state = poll(farm, url, timeout=240)
        results = assert_one_result_each(state, items)
        statuses = {r["status"] for r in results}
        assert statuses == {"ok"}, statuses
        assert all(r["reward"] > 0.95 for r in results)
    finally:
        farm.stop()


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _fork_servers_under(worker_pid: int) -> set[int]:
    """Fork servers started by the Celery worker ``worker_pid`` (through its pool processes,
    and through bubblewrap's two processes when the server is jailed)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "llm3d-forksrv":
                continue
            ancestor = int(entry.name)
            for _ in range(5):
                ancestor = _parent(ancestor)
                if ancestor == worker_pid:
                    found.add(int(entry.name))
                    break
        except (OSError, ValueError):
            continue  # gone meanwhile
    return found


@needs_redis
@pytest.mark.redis
def test_recycled_worker_processes_keep_scoring(tmp: Path) -> None:
    """farm.max_tasks_per_child replaces a pool process (and its fork server) mid-batch."""
    farm = start_farm("celery", tmp, extra_env={"LLM3D_FARM__MAX_TASKS_PER_CHILD": "3"}, workers=1)
    try:
        items = [
            {"id": f"c{i:02d}", "code": nonce(UNIT_BOX, i), "reference": {"code": UNIT_BOX}}
            for i in range(16)
        ]
        url = submit(farm, items)
        servers: set[int] = set()
        deadline = time.monotonic() + 180
        state: dict[str, Any] = {}
        with farm.client() as http:
            while time.monotonic() < deadline:
                servers |= _fork_servers_under(farm.workers[0].pid)
                state = http.get(url).json()
                if state["state"] in {"done", "failed"}:
                    break
                time.sleep(0.05)
        results = assert_one_result_each(state, items)
        assert {r["status"] for r in results} == {"ok"}, [r["error"] for r in results]
        assert all(r["reward"] > 0.95 for r in results)
        # 16 tasks over 2 pool processes replaced every 3 tasks: several generations
        assert len(servers) >= 3, f"fork servers seen: {sorted(servers)}\n{farm.logs()}"
    finally:
        farm.stop()


@pytest.mark.redis
def test_redis_restart_during_a_job_gives_503_then_completes(tmp: Path) -> None:
    with private_redis(tmp) as (url, redis_proc):
        farm = start_farm(
            "celery",
            tmp,
            redis_url=url,
            extra_env={"LLM3D_FARM__VISIBILITY_TIMEOUT_S": "8"},
            workers=1,
        )
        try:
            items = [
                {"id": f"r{i:02d}", "code": nonce(UNIT_BOX, i), "reference": {"code": UNIT_BOX}}
                for i in range(60)
            ]
            job_url = submit(farm, items)
            poll(farm, job_url, until=5)
            redis_proc.kill(15)  # SIGTERM: Redis persists (AOF) and exits
            assert not redis_proc.alive()
            with farm.client() as http:
                down = http.get(job_url)
                batch = http.post(
                    "/reward/batch", json={"items": [{**items[0], "id": "x"}]}, timeout=60
                )
                health = http.get("/healthz")
            for response in (down, batch, health):
                assert response.status_code == 503, response.text
                body = response.json()
                detail = body.get("detail", "")
                assert "Redis" in detail and "unreachable" in detail, body
            assert down.headers.get("Retry-After")
            redis_proc.start()  # same port, same directory: the queue and the job come back
            deadline = time.monotonic() + 60
            while not redis_available(url):
                assert time.monotonic() < deadline, f"Redis did not come back:\n{redis_proc.tail()}"
                time.sleep(0.1)
            state = poll(farm, job_url, timeout=240)
            assert state["state"] == "done", f"{state.get('error')}\n{farm.logs()}"
            results = assert_one_result_each(state, items)
            assert {r["status"] for r in results} == {"ok"}, [r["error"] for r in results]
        finally:
            farm.stop()


@dataclass(eq=False)
class _Link:
    """One proxied connection: the client's socket, Redis's, and what the client sent."""

    client: socket.socket
    server: socket.socket
    sent: set[bytes] = field(default_factory=set)  # which of WATCHED the client sent
    held: bool = False  # Redis's replies are dropped, as if the network lost them

    WATCHED = (b"BRPOP", b"SUBSCRIBE")

    def cut(self) -> None:
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class FaultyNetwork:
    """A TCP proxy in front of Redis whose connections a test cuts one kind at a time.

    :meth:`partition` is a fault that a client notices on some sockets before others: new
    connections are refused, every connection is cut (the client reads EOF) except those
    waiting on a ``BRPOP``, whose replies are silently dropped. :meth:`heal` ends it.
    """

    def __init__(self, redis_url: str) -> None:
        host_port = redis_url.split("//", 1)[1].split("/", 1)[0]
        host, port = host_port.rsplit(":", 1)
        self.target = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = redis_url.replace(host_port, f"127.0.0.1:{self.listener.getsockname()[1]}")
        self.links: list[_Link] = []
        self.refused = 0
        self.refusing = False
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            if self.refusing:
                self.refused += 1
                client.close()
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            link = _Link(client, server)
            with self.lock:
                self.links.append(link)
            threading.Thread(target=self._pump, args=(link, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(link, False), daemon=True).start()

    def _pump(self, link: _Link, upstream: bool) -> None:
        src, dst = (link.client, link.server) if upstream else (link.server, link.client)
        try:
            while data := src.recv(65536):
                if upstream:
                    link.sent.update(w for w in link.WATCHED if w in data)
                elif link.held:
                    continue
                dst.sendall(data)
        except OSError:
            pass
        link.cut()

    def partition(self) -> None:
        with self.lock:
            self.refusing = True
            for link in self.links:
                if b"BRPOP" in link.sent and b"SUBSCRIBE" not in link.sent:
                    link.held = True
                else:
                    link.cut()

    def heal(self) -> None:
        with self.lock:
            for link in self.links:
                link.cut()
            self.links.clear()
            self.refusing = False

    def close(self) -> None:
        self.listener.close()
        self.heal()


@pytest.mark.redis
def test_teardown_of_a_lost_connection_does_not_fail_on_a_pending_brpop(tmp: Path) -> None:
    """The broker state that killed the worker's consumer (worker/farm/consumer.py), with kombu alone:
    a task channel with a ``BRPOP`` outstanding and an unacknowledged message, and a control
    channel on an auto-delete fanout queue, when Redis goes away. After
    :func:`close_lost_channels`, Celery's teardown (``collect()`` then ``close()``) passes (it
    raised ``AttributeError`` before) and the unacknowledged message is still in Redis."""
    import redis
    from kombu import Connection, Consumer, Exchange, Queue

    with private_redis(tmp) as (url, redis_proc):
        conn = Connection(url, transport_options={"visibility_timeout": 8})
        tasks = Queue("tasks", Exchange("tasks", "direct"), "tasks")
        task_channel = conn.default_channel
        received: list[object] = []
        consumer = Consumer(task_channel, [tasks], callbacks=[lambda _b, m: received.append(m)])
        consumer.qos(prefetch_count=2)
        consumer.consume()
        control = Queue("control", Exchange("control", "fanout"), auto_delete=True)
        Consumer(conn.channel(), [control], callbacks=[lambda _b, _m: None], no_ack=True).consume()
        with conn.Producer() as producer:
            producer.publish(
                {"n": 1}, exchange=tasks.exchange, routing_key="tasks", declare=[tasks]
            )
        for _ in range(20):  # deliver the message, then let the next BRPOP go out
            with contextlib.suppress(socket.timeout):
                conn.drain_events(timeout=0.3)
            if received and task_channel._in_poll:
                break
        assert received and task_channel._in_poll, "one message unacked, a BRPOP outstanding"

        redis_proc.kill(signal.SIGTERM)
        assert close_lost_channels(conn) >= 1
        assert task_channel.closed
        conn.collect(socket_timeout=1)  # what Celery's consumer does next
        conn.close()

        redis_proc.start()
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 30
        while not redis_available(url):
            assert time.monotonic() < deadline, redis_proc.tail()
            time.sleep(0.1)
        assert client.llen("tasks") + client.hlen("unacked") == 1, "the message is not lost"


@pytest.mark.redis
def test_worker_keeps_consuming_when_it_notices_a_lost_redis_on_another_socket_first(
    tmp: Path,
) -> None:
    """The Redis-restart flake made deterministic: while a task runs (unacknowledged) and the
    worker's ``BRPOP`` waits, the worker loses Redis on its remote-control (pub/sub) socket
    first, while the ``BRPOP`` socket stays silent. Celery's teardown used to die on it
    (``Unrecoverable error: AttributeError``) and the worker, alive, never consumed again."""
    with private_redis(tmp) as (redis_url, _redis_proc):
        network = FaultyNetwork(redis_url)
        farm = start_farm(
            "celery",
            tmp,
            redis_url=network.url,
            extra_env={"LLM3D_FARM__VISIBILITY_TIMEOUT_S": "8"},
            workers=1,
        )
        try:
            slow = {"id": "slow", "code": nonce(TIMEOUT.code, 0), "reference": {"code": UNIT_BOX}}
            job_url = submit(farm, [slow], timeout_s=6.0)
            deadline = time.monotonic() + 60
            while not any(b"BRPOP" in link.sent for link in network.links) or not _active(farm):
                assert time.monotonic() < deadline, f"the task never started\n{farm.logs()}"
                time.sleep(0.2)

            network.partition()
            log_before = len(farm.workers[0].tail(10**7))
            # the worker noticed, on its pub/sub socket
            wait_until(lambda: network.refused >= 1, 30, f"the worker noticing\n{farm.logs()}")
            # ... and its consumer tore the lost connection down (reading the silent BRPOP
            # socket for up to 5 s) and now tries to reconnect: only then is the network healed
            wait_until(
                lambda: "Cannot connect to" in farm.workers[0].tail(10**7)[log_before:],
                60,
                f"the consumer's reconnection attempt\n{farm.logs()}",
                poll=0.2,
            )
            network.heal()

            assert poll(farm, job_url, timeout=120)["state"] == "done", farm.logs()
            items = [
                {"id": f"a{i}", "code": nonce(UNIT_BOX, i), "reference": {"code": UNIT_BOX}}
                for i in range(6)
            ]
            state = poll(farm, submit(farm, items), timeout=120)
            results = assert_one_result_each(state, items)
            assert {r["status"] for r in results} == {"ok"}, [r["error"] for r in results]
            assert farm.workers[0].alive()
            assert "Unrecoverable error" not in farm.workers[0].tail(10**7)
        finally:
            farm.stop()
            network.close()


def _active(farm: Farm) -> bool:
    """Whether the farm's worker is running a task (asked over Celery's remote control)."""
    from celery import Celery

    app = Celery(broker=farm.env["LLM3D_FARM__REDIS_URL"])
    try:
        replies = app.control.inspect(timeout=1.0).active() or {}
    finally:
        app.close()
    return any(replies.values())


def _direct_rewards(codes: dict[str, str], settings: ScoreSettings) -> dict[str, float | None]:
    """The reward of each (program, reference) scored by the pure pipeline, outside the farm."""
    cache = GroundTruthCache(8)
    out: dict[str, float | None] = {}
    config = load_config()
    with Executor(config.executor) as ex:
        for key, (code, ref) in {k: v.split("\x1e") for k, v in codes.items()}.items():
            payload = ReferencePayload(code=ref)
            job = ScoreJob(key, code, reference_key(payload), settings, payload)
            result = score_job(
                job,
                runner=lambda c, t: ex.run(c, timeout_s=t),
                gt_cache=cache,
                metrics_config=config.metrics,
                executor_config=config.executor,
            )
            out[key] = result.reward
    return out


@pytest.fixture(
    scope="module",
    params=[
        "inline",
        pytest.param("celery", marks=[pytest.mark.redis, needs_redis]),
    ],
)
def busy_farm(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Farm]:
    farm = start_farm(request.param, tmp_path_factory.mktemp(f"mixed-{request.param}"))
    yield farm
    farm.stop()


def test_hostile_and_timeouts_do_not_disturb_normal_programs(busy_farm: Farm) -> None:
    rng = random.Random(7)
    bases: dict[str, tuple[str, str]] = {}
    for name, code in OBJECTS.items():
        bases[f"{name}-exact"] = (code, code)
        bases[f"{name}-perturbed"] = (perturb(code, 1.2), code)
    base_names = sorted(bases)
    items: list[dict[str, Any]] = []
    expect_base: dict[str, str] = {}
    for i in range(130):
        base = base_names[i % len(base_names)]
        code, ref = bases[base]
        items.append({"id": f"n{i}", "code": nonce(code, i), "reference": {"code": ref}})
        expect_base[f"n{i}"] = base
    for i in range(50):
        h = HOSTILE[i % len(HOSTILE)]
        items.append({"id": f"h{i}", "code": nonce(h.code, i), "reference": {"code": UNIT_BOX}})
    for i in range(20):
        items.append(
            {"id": f"t{i}", "code": nonce(TIMEOUT.code, i), "reference": {"code": UNIT_BOX}}
        )
    rng.shuffle(items)

    with httpx.Client(base_url=busy_farm.url, timeout=300) as http:
        response = http.post("/reward/batch", json={"items": items, "timeout_s": 1.5})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["id"] for r in results] == [i["id"] for i in items]
    by_id = {r["id"]: r for r in results}

    config = load_config(metrics__train_points=2000)
    settings = ScoreSettings.from_config(config, timeout_s=10.0)
    expected = _direct_rewards({k: f"{c}\x1e{r}" for k, (c, r) in bases.items()}, settings)
    for item_id, base in expect_base.items():
        got = by_id[item_id]
        assert got["status"] == "ok", (item_id, got["error"])
        assert got["reward"] == pytest.approx(expected[base], abs=1e-9), item_id
    hostile = [r for r in results if r["id"].startswith("h")]
    assert all(r["status"] in {"refused", "exec_failed", "no_geometry"} for r in hostile)
    assert all(r["reward"] is not None and r["reward"] < 0.2 for r in hostile)
    timeouts = [r for r in results if r["id"].startswith("t")]
    assert {r["status"] for r in timeouts} == {"timeout"}
