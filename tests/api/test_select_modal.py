"""``POST /select/batch`` on the ``modal`` backend (issue 21.3): :class:`ModalBackend` maps the
deployed ``select`` function over the candidates, one call a candidate.

Modal is a paid service this machine cannot reach, so its function is stood in for
(tests/helpers/modal_stand_in.py) by the ``select`` function's own body,
:func:`worker.farm.modal_app.select_body`: the candidates really run in the sandbox, are
rendered by a Blender render server and matched, as in a container; a call whose container
dies raises the SDK's own exception.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

modal = pytest.importorskip("modal", reason="pip install 'llm3d[modal]'")

from modal.exception import FunctionTimeoutError, NotFoundError  # noqa: E402

from api.app import create_app  # noqa: E402
from llm3d.config import Config  # noqa: E402
from tests.api.test_select_api import AUTH, SYNTAX_ERROR, TRUE, b64  # noqa: E402
from tests.api.test_select_api import make_config as api_config  # noqa: E402
from tests.helpers.modal_stand_in import StandInFunction  # noqa: E402
from worker.demo_programs import OBJECTS  # noqa: E402
from worker.farm.backends import ModalBackend  # noqa: E402

DIES = "\n# this candidate's container dies\n"


def make_config() -> Config:
    return api_config(api__backend="modal")


def modal_client(body: Any) -> tuple[TestClient, StandInFunction]:
    """The reward service on the modal backend, whose ``select`` function runs ``body``."""
    function = StandInFunction(body)

    def backend(config: Config) -> ModalBackend:
        made = ModalBackend(config)
        made._select = function
        return made

    return TestClient(create_app(make_config(), backend_factory=backend)), function


def cut_out_views(count: int, size: int = 64) -> list[str]:
    """Views with transparency: a square object on nothing (base64 PNG)."""
    from PIL import Image

    pixels = np.zeros((size, size, 4), np.uint8)
    pixels[16:48, 16:48] = (200, 120, 60, 255)
    out = io.BytesIO()
    Image.fromarray(pixels, "RGBA").save(out, format="PNG")
    return [b64(out.getvalue())] * count


def test_a_modal_app_without_the_select_function_is_a_503_that_says_redeploy() -> None:
    """An app deployed before ``select`` existed: the map fails as a whole, and the service
    answers 503 saying what to do, instead of a result per candidate that blames them."""

    def body(payload: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("never called")

    client, function = modal_client(body)

    async def missing(*args: Any, **kwargs: Any) -> Any:
        raise NotFoundError("Function 'select' not found in app 'llm3d-reward'")
        yield  # an async generator, as map.aio is

    function.map.aio = missing  # type: ignore[method-assign]
    cameras = len(make_config().render.views)
    with client:
        response = client.post(
            "/select/batch",
            json={"groups": [{"id": "g", "candidates": ["x"], "images": cut_out_views(cameras)}]},
            headers=AUTH,
        )
    assert response.status_code == 503, response.text
    detail = response.json()["detail"]
    assert "NotFoundError" in detail and "modal deploy -m api.modal_web" in detail


@pytest.fixture(scope="module")
def container() -> Iterator[Any]:
    """The Modal app's module as a container holds it (its fork server, its render servers)."""
    from worker.farm import modal_app

    yield modal_app
    for name in ("_selector", "_scorer"):
        state = getattr(modal_app, name)
        if state is not None:
            state.close()
            setattr(modal_app, name, None)


@pytest.mark.blender
@pytest.mark.slow
def test_the_modal_select_function_picks_the_true_program_and_a_dead_call_spoils_nothing(
    container: Any,
) -> None:
    from tests.helpers.views import program_views
    from worker.execution.executor import ExecutorPool
    from worker.farm.backends import InlineBackend
    from worker.selection import SelectJob

    def body(payload: dict[str, Any]) -> dict[str, Any]:
        if DIES in payload["code"]:
            raise FunctionTimeoutError("Function timed out after 250 s")
        result: dict[str, Any] = container.select_body(payload)
        return result

    config = make_config()
    views = program_views(OBJECTS[TRUE], config)
    wrong = [OBJECTS[name] for name in ("lamp", "shelf")]
    candidates = [
        wrong[0],
        SYNTAX_ERROR.code,
        f"Here is the table.\n\n```python\n{OBJECTS[TRUE]}```\n",
        OBJECTS[TRUE] + DIES,
        wrong[1],
    ]
    client, function = modal_client(body)
    with client:
        response = client.post(
            "/select/batch",
            json={
                "groups": [{"id": "g", "candidates": candidates, "images": [b64(v) for v in views]}]
            },
            headers=AUTH,
        )
    assert response.status_code == 200, response.text
    [group] = response.json()["results"]
    assert group["error"] is None and group["best"] == 2, group
    lamp, syntax, true, dead, shelf = group["candidates"]
    assert [c["index"] for c in group["candidates"]] == [0, 1, 2, 3, 4]
    assert true["status"] == "ok" and true["match"] > 0.95
    assert all(v["iou"] > 0.95 for v in true["views"]) and len(true["views"]) == len(views)
    assert true["seconds"]["render"] > 0 and true["seconds"]["match"] > 0
    assert lamp["match"] < true["match"] - 0.2 and shelf["match"] < true["match"] - 0.2
    assert syntax["status"] in SYNTAX_ERROR.expect and syntax["match"] is None
    assert dead["status"] == "infra_error" and dead["match"] is None
    assert (
        "FunctionTimeoutError" in dead["error"] and "modal app logs llm3d-reward" in dead["error"]
    )
    # one call a candidate, each with the program (not the prose) and the group's views
    sent = function.map.payloads
    assert len(sent) == len(candidates)
    assert sent[2]["code"] == OBJECTS[TRUE]
    assert all(SelectJob.from_dict(p).views == tuple(views) for p in sent)

    # the container's body gives the inline backend's outcome for the same candidate
    job = SelectJob.from_dict(sent[0])
    with ExecutorPool(config.executor, size=1) as pool:
        backend = InlineBackend(config, pool=pool)
        try:
            inline = backend.select_one(job)
        finally:
            asyncio.run(backend.close())
    assert inline.status == "ok" and lamp["match"] == pytest.approx(
        inline.metrics["match"], abs=1e-6
    )
