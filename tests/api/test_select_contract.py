"""``POST /select/batch``'s contract on a fake backend (no Blender): what it refuses and how,
that errors conform to ``/openapi.json``, that bad groups never reach the backend, and that
identical candidates run once. The real backends: test_select_api.py, test_select_farm.py."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from tests.api.test_contract import AUTH, SURROGATE, FakeBackend, conforms, make_config

PROGRAM = "from bpy_lib import *\n# part_1: top\nbox(size=[1, 1, 1])\nexport_scene()\n"


def png(colour: tuple[int, int, int] = (204, 204, 204)) -> str:
    """A render-like view: a plain background and a darker box in the middle, base64."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (32, 32), colour)
    ImageDraw.Draw(image).rectangle((8, 8, 23, 23), fill=(90, 110, 150))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode("ascii")


VIEWS = [png()] * 4  # the default rig has four cameras


@pytest.fixture
def served() -> Iterator[tuple[TestClient, FakeBackend, dict[str, Any]]]:
    backend = FakeBackend()
    app = create_app(make_config(), backend_factory=lambda _: backend)
    with TestClient(app, raise_server_exceptions=False) as http:
        yield http, backend, http.get("/openapi.json").json()


def post(client: TestClient, body: dict[str, Any]) -> httpx.Response:
    return client.post("/select/batch", json=body, headers=AUTH)


def test_groups_are_answered_in_order_and_bad_ones_never_reach_the_backend(
    served: tuple[TestClient, FakeBackend, dict[str, Any]],
) -> None:
    client, backend, spec = served
    short, long = PROGRAM, PROGRAM + "# " + "x" * 40 + "\n"
    body = {
        "groups": [
            {"id": "z", "candidates": [short, f"```python\n{long}```", short], "images": VIEWS},
            {"id": "a", "candidates": [long], "images": VIEWS[:3]},
            {"id": "m", "candidates": [PROGRAM + "# odd\n"], "images": VIEWS},
        ]
    }
    response = post(client, body)
    assert response.status_code == 200, response.text
    conforms(spec, "/select/batch", "POST", response)
    z, a, m = response.json()["results"]
    assert [z["id"], a["id"], m["id"]] == ["z", "a", "m"]
    assert z["best"] == 1 and [c["index"] for c in z["candidates"]] == [0, 1, 2]
    assert [c["cached"] for c in z["candidates"]] == [False, False, True]  # a twin runs once
    assert a["best"] is None and "4 (front" in a["error"] and a["candidates"] == []
    assert m["best"] is None and m["candidates"][0]["status"] == "exec_failed"
    assert m["candidates"][0]["error"] == "odd \ufffd"  # a lone surrogate made safe
    assert backend.selected == [short, long, PROGRAM + "# odd\n"]
    assert SURROGATE not in response.text


def test_limits_and_mistakes_are_refused_with_what_to_do(
    served: tuple[TestClient, FakeBackend, dict[str, Any]],
) -> None:
    client, backend, spec = served
    too_many = post(client, {"groups": [{"id": "g", "candidates": [PROGRAM] * 6, "images": VIEWS}]})
    assert too_many.status_code == 413 and "6 candidates" in too_many.json()["detail"]
    huge = PROGRAM + "# " + "x" * 5000 + "\n"
    too_long = post(client, {"groups": [{"id": "g", "candidates": [huge], "images": VIEWS}]})
    assert too_long.status_code == 422
    assert "group 'g', candidate 0" in too_long.json()["detail"]
    assert "executor.max_code_bytes" in too_long.json()["detail"]
    unknown = post(client, {"groups": [{"id": "g", "candidates": [PROGRAM], "task_id": "nope"}]})
    assert unknown.status_code == 422 and "'nope'" in unknown.json()["detail"]
    twice = post(
        client,
        {"groups": [{"id": "g", "candidates": [PROGRAM], "images": VIEWS}] * 2},
    )
    assert twice.status_code == 422 and "unique" in twice.json()["detail"]
    body = {"request_id": "r1", "groups": [{"id": "g", "candidates": [PROGRAM], "images": VIEWS}]}
    assert post(client, body).status_code == 200
    body["groups"][0]["candidates"] = [PROGRAM + "# other\n"]
    conflict = post(client, body)
    assert conflict.status_code == 409
    unauthorised = client.post("/select/batch", json=body)
    assert unauthorised.status_code == 401
    for response in (too_many, too_long, unknown, twice, conflict, unauthorised):
        conforms(spec, "/select/batch", "POST", response)
    assert backend.selected == [PROGRAM]  # only the one valid request ran anything


def test_views_registered_with_a_task_serve_a_group_and_bad_views_are_refused(
    served: tuple[TestClient, FakeBackend, dict[str, Any]],
) -> None:
    client, _, _ = served
    task = {"task_id": "t", "reference": {"code": PROGRAM}, "views": VIEWS}
    created = client.post("/tasks", json=task, headers=AUTH)
    assert created.status_code == 201 and created.json()["views"] == 4
    assert client.post("/tasks", json=task, headers=AUTH).status_code == 200  # unchanged
    other = dict(task, views=[png((250, 250, 250))] * 4)
    assert client.post("/tasks", json=other, headers=AUTH).status_code == 409  # other views
    bad = dict(task, task_id="u", views=["%%%"])
    refused = client.post("/tasks", json=bad, headers=AUTH)
    assert refused.status_code == 422 and "base64" in refused.json()["detail"]
    answer = post(client, {"groups": [{"id": "g", "candidates": [PROGRAM], "task_id": "t"}]})
    assert answer.status_code == 200 and answer.json()["results"][0]["best"] == 0
