"""``POST /select/batch`` (issue 21.3) on the real inline backend, through FastAPI's TestClient:
candidates really run in the sandbox, are really rendered by a Blender render server and
matched against views rendered from the true program, as a dataset's views are made.

The Celery farm (a real worker process) is exercised in test_select_farm.py.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from llm3d.config import Config, load_config
from tests.helpers.views import program_views
from worker.demo_programs import BROKEN, OBJECTS, perturb

pytestmark = [pytest.mark.blender, pytest.mark.slow]

TOKEN = "select-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TRUE = "table"
SYNTAX_ERROR = next(c for c in BROKEN if c.name == "syntax_error")


def make_config(**overrides: Any) -> Config:
    """The service these tests run (one executor server, 96 px renders); ``overrides`` as
    ``load_config`` keywords (``api__backend="modal"``)."""
    return load_config(
        environ={},
        api__token=TOKEN,
        executor__servers=1,
        executor__timeout_s=20,
        render__resolution=96,
        **overrides,
    )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@pytest.fixture(scope="module")
def views() -> list[str]:
    """The views the model was given (the true program's renders), base64 PNG."""
    return [b64(png) for png in program_views(OBJECTS[TRUE], make_config())]


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(make_config())) as test_client:
        yield test_client


def select(client: TestClient, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    response = client.post("/select/batch", json=body, headers=AUTH)
    assert response.status_code == status, response.text
    answer: dict[str, Any] = response.json()
    return answer


def completion(code: str) -> str:
    """A model's whole answer: prose, then the program in a fenced block."""
    return f"Here is the table.\n\n```python\n{code}```\n\nIt has four legs."


def noise_png(size: int = 96) -> bytes:
    """A photo-like image: no transparency and no plain border, so no silhouette."""
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, format="PNG")
    return out.getvalue()


def test_the_true_program_hidden_among_wrong_ones_is_picked(
    client: TestClient, views: list[str]
) -> None:
    wrong = [OBJECTS[name] for name in OBJECTS if name != TRUE]
    candidates = [wrong[0], wrong[1], completion(OBJECTS[TRUE]), *wrong[2:]]
    answer = select(client, {"groups": [{"id": "g", "candidates": candidates, "images": views}]})
    [group] = answer["results"]
    assert group["id"] == "g" and group["error"] is None
    assert group["best"] == 2, group
    scores = [c["match"] for c in group["candidates"]]
    assert [c["index"] for c in group["candidates"]] == list(range(len(candidates)))
    assert all(c["status"] == "ok" for c in group["candidates"])
    assert scores[2] > 0.95 and all(s < scores[2] - 0.2 for i, s in enumerate(scores) if i != 2)
    best = group["candidates"][2]
    assert len(best["views"]) == len(views) and all(v["iou"] > 0.95 for v in best["views"])
    seconds = best["seconds"]
    assert seconds["execute"] > 0 and seconds["render"] > 0 and seconds["match"] > 0
    assert seconds["total"] == pytest.approx(
        seconds["execute"] + seconds["render"] + seconds["match"], abs=1e-3
    )
    assert answer["match_version"]


def test_a_syntax_error_keeps_its_status_and_never_spoils_the_group(
    client: TestClient, views: list[str]
) -> None:
    candidates = [SYNTAX_ERROR.code, OBJECTS["lamp"], OBJECTS[TRUE], ""]
    [group] = select(client, {"groups": [{"id": "g", "candidates": candidates, "images": views}]})[
        "results"
    ]
    first, lamp, true, empty = group["candidates"]
    assert first["status"] in SYNTAX_ERROR.expect and first["match"] is None
    assert "line" in first["error"].lower() or "syntax" in first["error"].lower()
    assert empty["status"] == "empty" and empty["match"] is None
    assert lamp["match"] is not None and true["match"] > lamp["match"]
    assert group["best"] == 2


def test_a_group_whose_views_are_unusable_gets_a_clear_error_and_the_others_their_answer(
    client: TestClient, views: list[str]
) -> None:
    candidates = [OBJECTS["shelf"], OBJECTS[TRUE]]
    groups = [
        {"id": "photo", "candidates": candidates, "images": [b64(noise_png())] * len(views)},
        {"id": "good", "candidates": candidates, "images": views},
        {"id": "not-base64", "candidates": candidates, "images": ["not base64!"] * len(views)},
        {"id": "too-few", "candidates": candidates, "images": views[:2]},
        {"id": "not-an-image", "candidates": candidates, "images": [b64(b"hello")] * len(views)},
    ]
    answer = select(client, {"groups": groups})
    by_id = {g["id"]: g for g in answer["results"]}
    assert [g["id"] for g in answer["results"]] == [g["id"] for g in groups]
    assert by_id["good"]["error"] is None and by_id["good"]["best"] == 1
    for name, words in {
        "photo": "plain background",
        "not-base64": "base64",
        "too-few": "one image per camera",
        "not-an-image": "not a readable image",
    }.items():
        bad = by_id[name]
        assert bad["best"] is None and bad["candidates"] == [], bad
        assert words in bad["error"], bad["error"]


def test_a_repeated_request_id_gets_the_same_answer_without_running_again(
    client: TestClient, views: list[str]
) -> None:
    # programs no other test runs (so nothing of theirs is in the result cache yet)
    candidates = [perturb(OBJECTS["snowman"], 1.05), OBJECTS[TRUE] + "# once only\n"]
    body = {
        "request_id": "select-idem-1",
        "groups": [{"id": "g", "candidates": candidates, "images": views}],
    }
    first = select(client, body)
    again = select(client, body)
    # run again, the candidates would have come from the result cache (cached: true)
    assert again == first
    assert not any(c["cached"] for c in first["results"][0]["candidates"])
    # the same work without the request_id is answered from the cache, not run again
    fresh = select(client, {"groups": body["groups"]})
    assert all(c["cached"] for c in fresh["results"][0]["candidates"])
    assert fresh["results"][0]["best"] == first["results"][0]["best"] == 1
    other = dict(body, groups=[dict(body["groups"][0], candidates=[OBJECTS["lamp"]])])
    conflict = client.post("/select/batch", json=other, headers=AUTH)
    assert conflict.status_code == 409 and "select-idem-1" in conflict.json()["detail"]


def test_a_task_registered_with_its_views_is_selected_by_task_id(
    client: TestClient, views: list[str]
) -> None:
    task = {"task_id": "select-table", "reference": {"code": OBJECTS[TRUE]}, "views": views}
    created = client.post("/tasks", json=task, headers=AUTH)
    assert created.status_code == 201, created.text
    assert created.json()["views"] == len(views)
    no_views = {"task_id": "select-bare", "reference": {"code": OBJECTS["lamp"]}}
    assert client.post("/tasks", json=no_views, headers=AUTH).status_code == 201
    candidates = [OBJECTS["lamp"], OBJECTS[TRUE]]
    answer = select(
        client,
        {
            "groups": [
                {"id": "a", "candidates": candidates, "task_id": "select-table"},
                {"id": "b", "candidates": candidates, "task_id": "select-bare"},
            ]
        },
    )
    first, second = answer["results"]
    assert first["best"] == 1 and first["error"] is None
    assert second["best"] is None and "has no views" in second["error"]


def test_a_group_with_nothing_to_match_has_no_best(client: TestClient, views: list[str]) -> None:
    broken = [c.code for c in BROKEN if c.name in ("bad_argument", "nothing_built")]
    [group] = select(client, {"groups": [{"id": "g", "candidates": broken, "images": views}]})[
        "results"
    ]
    assert group["best"] is None and group["error"] is None
    assert [c["status"] for c in group["candidates"]] == ["exec_failed", "no_geometry"]


def test_bad_requests_are_refused_with_what_to_do(client: TestClient, views: list[str]) -> None:
    unknown = client.post(
        "/select/batch",
        json={"groups": [{"id": "g", "candidates": ["x"], "task_id": "no-such-task"}]},
        headers=AUTH,
    )
    assert unknown.status_code == 422 and "no-such-task" in unknown.json()["detail"]
    both = client.post(
        "/select/batch",
        json={"groups": [{"id": "g", "candidates": ["x"], "images": views, "task_id": "t"}]},
        headers=AUTH,
    )
    assert both.status_code == 422 and "exactly one of images or task_id" in both.text
    assert client.post("/select/batch", json={"groups": []}).status_code == 401
