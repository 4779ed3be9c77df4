"""Schemathesis against the reward API over real HTTP (127.0.0.1), bounded.

Inputs generated from ``/openapi.json`` itself, valid and invalid: no input may make a 5xx
other than the declared 503, and every answer (status, content type, body) must be what
the document declares. A fake backend keeps it fast and Blender-free; the same app code
answers as in production. Bounded: a fixed number of examples per operation, derandomized,
no shrinking time to speak of, a timeout for the whole test.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

schemathesis = pytest.importorskip("schemathesis", reason="pip install -e '.[dev]'")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app  # noqa: E402
from tests.api.test_contract import AUTH, FakeBackend, make_config  # noqa: E402

EXAMPLES = 25  # per operation and generation mode


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served() -> Iterator[str]:
    """The app on uvicorn in a thread, 127.0.0.1 only."""
    app = create_app(make_config(), backend_factory=lambda _: FakeBackend())
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(15)


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


# Schemathesis' own pytest integration (from_fixture) does not run under pytest 9: the
# strategies of each operation are driven by Hypothesis here instead, the same checks.
@pytest.mark.timeout(300)
def test_no_generated_input_makes_a_500_and_every_answer_conforms(served: str) -> None:
    spec = httpx.get(served + "/openapi.json", timeout=10).json()
    api = schemathesis.openapi.from_dict(spec)
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 7, [op.label for op in operations]
    tried: list[str] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                phases=[Phase.explicit, Phase.generate, Phase.shrink],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def call(case: Any) -> None:
                case.call_and_validate(base_url=served, headers=AUTH, timeout=30, checks=CHECKS)

            try:
                call()
            except Unsatisfiable:  # nothing to make invalid: an operation without inputs
                assert mode is GenerationMode.NEGATIVE, operation.label
                continue
            tried.append(f"{operation.label} ({mode.value})")
    assert len(tried) >= len(operations) + 4, tried  # the four with a body or a path
