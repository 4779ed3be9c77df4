"""The reward service under abuse, over real HTTP (``llm3d serve``, inline backend, Blender).

Issue 15's findings, each reproduced the way a client would meet it: a program whose error
cannot be encoded, a client that goes away with busy loops running, the API process killed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.farm import Farm, start_farm
from tests.helpers.waiting import wait_until
from worker.demo_programs import TIMEOUT

pytestmark = [pytest.mark.blender, pytest.mark.slow]

TOKEN = "hardening-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
UNIT_BOX = "from bpy_lib import *\n# part_1: cube\nbox(size=[1.0, 1.0, 1.0])\nexport_scene()\n"
#: The program raises an error whose message is a lone surrogate (valid Python source).
SURROGATE_ERROR = "from bpy_lib import *\n# part_1: none\nraise ValueError('\\ud800 broken')\n"


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    """Programs may run 60 s here, so that an abandoned busy loop would hold its child."""
    running = start_farm(
        "inline",
        tmp_path_factory.mktemp("hardening"),
        extra_env={"LLM3D_API_TOKEN": TOKEN, "LLM3D_EXECUTOR__TIMEOUT_S": "60"},
    )
    yield running
    running.stop()


def item(code: str, **kw: Any) -> dict[str, Any]:
    return {"id": kw.pop("id", uuid.uuid4().hex[:8]), "code": code, "reference": {"code": UNIT_BOX}}


def metric(farm: Farm, name: str, **labels: str) -> float:
    text = httpx.get(farm.url + "/metrics", timeout=10).text
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    total = 0.0
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        if head.split("{")[0] == name and all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    assert want is not None
    return total


def test_a_lone_surrogate_in_a_programs_error_never_fails_the_batch(farm: Farm) -> None:
    items = [item(SURROGATE_ERROR, id="odd"), item(UNIT_BOX, id="fine")]
    with farm.client(headers=AUTH) as http:
        for attempt in ("scored", "cached"):
            response = http.post("/reward/batch", json={"items": items})
            assert response.status_code == 200, (attempt, response.text)
            odd, fine = response.json()["results"]
            assert odd["status"] == "exec_failed" and odd["reward"] is not None, attempt
            assert "ValueError" in odd["error"] and "\ufffd broken" in odd["error"], attempt
            assert fine["status"] == "ok" and fine["reward"] > 0.95, "its neighbour is unharmed"
        assert response.json()["results"][0]["cached"]
        job = http.post("/reward/jobs", json={"items": [item(SURROGATE_ERROR + "# job\n")]})
        assert job.status_code == 202, job.text

        def finished() -> bool:
            state = http.get(job.json()["url"])
            assert state.status_code == 200, state.text
            return bool(state.json()["state"] in {"done", "failed"})

        wait_until(finished, timeout=60, what="the job")
        state = http.get(job.json()["url"]).json()
        assert state["state"] == "done" and "\ufffd" in state["response"]["results"][0]["error"]
        assert http.get("/tasks").status_code == 200


def test_a_client_that_goes_away_leaves_no_program_running(farm: Farm) -> None:
    """Four busy loops fill every child slot (2 servers × 2); the client hangs up."""
    loops = [item(TIMEOUT.code + f"# {uuid.uuid4().hex}\n", id=f"loop{i}") for i in range(4)]
    body = json.dumps({"timeout_s": 60, "items": loops}).encode()
    port = int(farm.url.rsplit(":", 1)[1])
    before = metric(farm, "llm3d_http_requests_total", route="/reward/batch", code="499")
    with socket.create_connection(("127.0.0.1", port)) as sock:
        head = (
            f"POST /reward/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        sock.sendall(head.encode() + body)
        wait_until(
            lambda: metric(farm, "llm3d_queue_depth") >= 4,
            timeout=30,
            what="the loops to be handed over",
        )
    hung_up = time.monotonic()
    health = httpx.get(farm.url + "/healthz", timeout=30)
    health_s = time.monotonic() - hung_up
    assert health.status_code == 200, health.text
    with httpx.Client(base_url=farm.url, headers=AUTH, timeout=30) as http:
        fresh = http.post("/reward/batch", json={"items": [item(UNIT_BOX + f"# {uuid.uuid4()}\n")]})
    batch_s = time.monotonic() - hung_up
    assert fresh.status_code == 200 and fresh.json()["results"][0]["status"] == "ok", fresh.text
    print(f"after the hang-up: /healthz in {health_s:.2f}s, a new batch in {batch_s:.2f}s")
    assert health_s < 10 and batch_s < 15, "the abandoned loops were not stopped"
    wait_until(
        lambda: (
            metric(farm, "llm3d_http_requests_total", route="/reward/batch", code="499") > before
        ),
        timeout=10,
        what="the abandoned batch to be counted",
    )
    assert metric(farm, "llm3d_queue_depth") == 0


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid and b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
                out.append(int(entry.name))
    return out


def test_a_killed_api_worker_is_replaced_on_the_same_port(farm: Farm) -> None:
    (worker,) = _children(farm.api.pid)
    os.kill(worker, signal.SIGKILL)
    killed = time.monotonic()

    def answers() -> bool:
        try:
            return httpx.get(farm.url + "/healthz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    # uvicorn's supervisor pings each worker; a kill that lands during a ping is only seen
    # when that ping times out (timeout_worker_healthcheck, 30 s), so allow that much more
    wait_until(
        lambda: _children(farm.api.pid) not in ([], [worker]), timeout=60, what="a new worker"
    )
    wait_until(answers, timeout=90, what="the service to answer again")
    back_s = time.monotonic() - killed
    print(f"a SIGKILLed API worker: the service answered again after {back_s:.1f}s")
    assert farm.api.alive(), "the supervisor itself lives on"
    assert worker not in _children(farm.api.pid)
    with farm.client(headers=AUTH) as http:
        again = http.post("/reward/batch", json={"items": [item(UNIT_BOX)]})
    assert again.status_code == 200 and again.json()["results"][0]["status"] == "ok"
