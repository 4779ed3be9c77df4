"""The reward API on Modal: ``modal deploy -m api.modal_web`` (or scripts/deploy_reward_api.sh).

Registers ``web`` (the same FastAPI app as ``llm3d serve``, on the ``modal`` backend, as a
``modal.asgi_app``) on the app of :mod:`worker.farm.modal_app`, so that one deploy publishes
the scoring functions and the endpoint that calls them. The API sits above the worker
(DESIGN §1): this module imports the worker's app, never the other way round.

Modal runs up to ``modal.web_max_containers`` copies of ``web``, and a request may land on
any of them, so what the API remembers between requests lives in two ``modal.Dict`` s
(``<modal.state_dict>-tasks`` and ``-jobs``): a task registered through one container is
known to all, and a job submitted to one is polled on any. The Bearer token comes from the
``modal.Secret`` named ``modal.secret_name`` (its ``LLM3D_API_TOKEN``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import MutableMapping
from typing import Any, cast

import modal
from fastapi import FastAPI

from api.registry import RegisteredTask, TaskRegistry
from llm3d.config import Config, load_config
from llm3d.schemas import JobStatus
from worker.farm.modal_app import FUNCTION_OPTIONS, MAX_INPUTS, app

__all__ = ["MappingJobStore", "app", "create_shared_app", "web"]


class MappingJobStore:
    """Job states as JSON in a mapping that several containers share (a ``modal.Dict``).

    A finished job is forgotten ``ttl_s`` after it finished. The mapping's calls block (a
    ``modal.Dict`` goes over the network): they run on a thread, off the event loop.
    """

    def __init__(self, store: MutableMapping[str, Any], *, ttl_s: int) -> None:
        self.store = store
        self.ttl_s = ttl_s

    async def put(self, job: JobStatus) -> None:
        entry = (time.time(), job.model_dump_json())
        await asyncio.to_thread(self.store.__setitem__, job.job_id, entry)

    async def get(self, job_id: str) -> JobStatus | None:
        entry = await asyncio.to_thread(self.store.get, job_id)
        if entry is None:
            return None
        written, raw = entry
        job = JobStatus.model_validate_json(raw)
        if job.finished_at is not None and time.time() - written > self.ttl_s:
            return None
        return job

    async def close(self) -> None:
        return None


def create_shared_app(
    config: Config,
    tasks: MutableMapping[str, RegisteredTask],
    jobs: MutableMapping[str, Any],
) -> FastAPI:
    """The reward API with its tasks and jobs in shared mappings (one per deployment)."""
    from api.app import create_app

    return create_app(
        config,
        registry=TaskRegistry(tasks),
        job_store=MappingJobStore(jobs, ttl_s=config.api.job_ttl_s),
    )


@app.function(**FUNCTION_OPTIONS["web"])
@modal.concurrent(max_inputs=MAX_INPUTS["web"])
@modal.asgi_app(label="llm3d-reward")
def web() -> Any:
    """The reward API on the ``modal`` backend (the same app as ``llm3d serve``)."""
    config = load_config(api__backend="modal")
    name = config.modal.state_dict
    # a modal.Dict answers the mapping calls the registry and the job store make
    # ([], []=, get, in, len, values), from any container of the deployment
    tasks = cast(
        MutableMapping[str, Any], modal.Dict.from_name(f"{name}-tasks", create_if_missing=True)
    )
    jobs = cast(
        MutableMapping[str, Any], modal.Dict.from_name(f"{name}-jobs", create_if_missing=True)
    )
    return create_shared_app(config, tasks, jobs)
