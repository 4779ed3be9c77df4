"""The Modal web endpoint's state is shared by its containers (api/modal_web.py).

Modal runs several copies of ``web`` and a request may land on any. Two real API servers
(uvicorn, real HTTP) stand for two containers; they share their task and job mappings as
the deployed ones share two ``modal.Dict`` s (here plain dicts: the stand-in for the paid
service). A task registered through one is scored through the other; a job submitted to
one is polled on the other. Each server scores on the inline backend (the Modal functions
need an account).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

pytest.importorskip("modal", reason="pip install 'llm3d[modal]'")

import uvicorn

from api.modal_web import create_shared_app
from llm3d.config import load_config

pytestmark = [pytest.mark.blender, pytest.mark.slow]

CUBE = "from bpy_lib import *\n# part_1: cube\nbox(size=[1.0, 1.0, 1.0])\nexport_scene()\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def containers() -> Iterator[tuple[str, str]]:
    """Two API servers over the same task and job mappings: their base URLs."""
    tasks: dict[str, Any] = {}
    jobs: dict[str, Any] = {}
    config = load_config(executor__servers=1, api__token="s3cret")
    servers, threads, urls = [], [], []
    for _ in range(2):
        port = _free_port()
        app = create_shared_app(config, tasks, jobs)
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append(server)
        threads.append(thread)
        urls.append(f"http://127.0.0.1:{port}")
    try:
        for url in urls:
            deadline = time.monotonic() + 120
            while not servers[urls.index(url)].started:
                assert time.monotonic() < deadline, f"{url} did not start"
                time.sleep(0.1)
        yield urls[0], urls[1]
    finally:
        for server in servers:
            server.should_exit = True
        for thread in threads:
            thread.join(timeout=60)


def client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=120, headers={"Authorization": "Bearer s3cret"})


def test_a_task_registered_on_one_container_is_scored_on_another(
    containers: tuple[str, str],
) -> None:
    a, b = containers
    with client(a) as first:
        r = first.post("/tasks", json={"task_id": "cube", "reference": {"code": CUBE}})
        assert r.status_code == 201, r.text
    with client(b) as second:
        assert [t["task_id"] for t in second.get("/tasks").json()["tasks"]] == ["cube"]
        r = second.post(
            "/reward/batch", json={"items": [{"id": "x", "code": CUBE, "task_id": "cube"}]}
        )
        assert r.status_code == 200, r.text
        assert r.json()["results"][0]["reward"] > 0.95
        # the same id with other content is a conflict there too
        other = second.post("/tasks", json={"task_id": "cube", "reference": {"code": CUBE + "#"}})
        assert other.status_code == 409, other.text


def test_a_job_submitted_to_one_container_is_polled_on_another(
    containers: tuple[str, str],
) -> None:
    a, b = containers
    items = [
        {"id": f"j{i}", "code": CUBE + f"# {i}\n", "reference": {"code": CUBE}} for i in range(3)
    ]
    with client(a) as first:
        r = first.post("/reward/jobs", json={"items": items})
        assert r.status_code == 202, r.text
        url = r.json()["url"]
    with client(b) as second:
        deadline = time.monotonic() + 120
        while True:
            r = second.get(url)
            assert r.status_code == 200, r.text
            if r.json()["state"] == "done":
                break
            assert time.monotonic() < deadline, r.json()
            time.sleep(0.2)
        results = r.json()["response"]["results"]
        assert [x["id"] for x in results] == ["j0", "j1", "j2"]
        assert all(x["status"] == "ok" for x in results)
        assert second.get("/reward/jobs/unknown").status_code == 404


def test_the_token_is_required_on_every_container(containers: tuple[str, str]) -> None:
    for url in containers:
        r = httpx.post(url + "/reward/batch", json={"items": []}, timeout=30)
        assert r.status_code == 401, r.text
