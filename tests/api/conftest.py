"""The reward service under test: a real ``llm3d serve`` over HTTP, on ``inline`` and ``celery``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.api.farm import FARM_BACKENDS, Farm, start_farm

TOKEN = "test-token-7f3a"


@pytest.fixture(scope="module", params=FARM_BACKENDS)
def farm(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Farm]:
    """``llm3d serve`` (+ one ``llm3d worker`` for celery), with a Bearer token required."""
    tmp = tmp_path_factory.mktemp(f"farm-{request.param}")
    running = start_farm(request.param, tmp, extra_env={"LLM3D_API_TOKEN": TOKEN})
    yield running
    running.stop()


@pytest.fixture
def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}
