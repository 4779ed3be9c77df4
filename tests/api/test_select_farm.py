"""``POST /select/batch`` through the real service: ``llm3d serve`` over HTTP, on the inline
backend and on the Celery farm (a real ``llm3d worker`` process that runs, renders and
matches), spoken to by the Python client (:meth:`llm3d.client.RewardClient.select`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from llm3d.client import RewardClient, encode_image
from llm3d.config import load_config
from tests.api.farm import FARM_BACKENDS, Farm, start_farm
from tests.helpers.views import program_views
from worker.demo_programs import BROKEN, OBJECTS

TOKEN = "select-farm-token"
RESOLUTION = 96


@pytest.fixture(scope="module", params=FARM_BACKENDS)
def farm(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Farm]:
    tmp = tmp_path_factory.mktemp(f"select-{request.param}")
    env = {"LLM3D_API_TOKEN": TOKEN, "LLM3D_RENDER__RESOLUTION": str(RESOLUTION)}
    running = start_farm(request.param, tmp, extra_env=env, concurrency=1)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def views() -> list[bytes]:
    """The table's views, rendered from the service's cameras (PNG bytes)."""
    return program_views(OBJECTS["table"], load_config(environ={}, render__resolution=RESOLUTION))


def test_the_client_gets_the_true_program_picked_and_a_broken_one_kept_apart(
    farm: Farm, views: list[bytes]
) -> None:
    syntax_error = next(c for c in BROKEN if c.name == "syntax_error")
    candidates = [OBJECTS["snowman"], syntax_error.code, OBJECTS["table"], OBJECTS["shelf"]]
    with RewardClient(farm.url, token=TOKEN, retries=1) as client:
        health = client.health()
        assert len(health["render_views"]) == len(views)
        assert health["render_frame"] == "scene"  # the views above frame bpy_lib's box too
        response = client.select_batch(
            [
                {"id": "bad", "candidates": candidates, "images": ["bm90IGFuIGltYWdl"] * 4},
                {
                    "id": "table",
                    "candidates": candidates,
                    "images": [encode_image(v) for v in views],
                },
            ],
            request_id=f"farm-select-{farm.backend}",
        )
        group = client.select(candidates[::-1], images=views)
    bad, table = response.results
    assert bad.id == "bad" and bad.best is None and "not a readable image" in (bad.error or "")
    assert table.best == 2 and table.error is None
    assert table.candidates[1].status in syntax_error.expect and table.candidates[1].match is None
    assert [c.status for c in table.candidates] == ["ok", table.candidates[1].status, "ok", "ok"]
    assert table.candidates[2].match is not None and table.candidates[2].match > 0.95
    # the same candidates reversed (served from the cache): the table is now at index 1
    assert group.best == 1 and all(c.cached for c in group.candidates)
