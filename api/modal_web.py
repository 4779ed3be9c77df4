"""The reward API on Modal: ``modal deploy -m api.modal_web``.

Registers ``web`` (the same FastAPI app as ``llm3d serve``, on the ``modal`` backend, as a
``modal.asgi_app``) on the app of :mod:`worker.farm.modal_app`, so that one deploy publishes
the scoring functions and the endpoint that calls them. The API sits above the worker
(DESIGN §1): this module imports the worker's app, never the other way round.
"""

from __future__ import annotations

from typing import Any

import modal

from llm3d.config import load_config
from worker.farm.modal_app import FUNCTION_OPTIONS, MAX_INPUTS, app

__all__ = ["app", "web"]


@app.function(**FUNCTION_OPTIONS["web"])
@modal.concurrent(max_inputs=MAX_INPUTS["web"])
@modal.asgi_app(label="llm3d-reward")
def web() -> Any:
    """The reward API on the ``modal`` backend (the same app as ``llm3d serve``)."""
    from api.app import create_app

    return create_app(load_config(api__backend="modal"))
