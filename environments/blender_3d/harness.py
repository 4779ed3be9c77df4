"""The environment's side of the reward service: batching, timeouts, retries, infra errors.

:class:`Blender3DHarness` reaches the reward service only over HTTP, through
:mod:`llm3d.client` (DESIGN §1). A whole group or batch of completions goes out as one
``POST /reward/batch`` (split only when it exceeds ``max_items``). Connection errors,
timeouts and 5xx answers are retried by the client with backoff; when they are exhausted
every item of the batch comes back as ``infra_error`` with ``reward=None`` and the reason
(logged), so a trainer masks it instead of learning from a 0. A 4xx answer (an unknown
``task_id``, a request over the service's limits) is a configuration mistake and raises
:class:`~llm3d.exceptions.RewardServiceError` at once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from llm3d.client import AsyncRewardClient, RewardClient
from llm3d.exceptions import DatasetError, RewardServiceError
from llm3d.schemas import ExecStatus, RewardResult

from .dataset import Sample

__all__ = ["Blender3DHarness", "infra_results"]

logger = logging.getLogger(__name__)


def infra_results(ids: Sequence[str], error: str) -> list[RewardResult]:
    """``infra_error`` results (reward ``None``) for items the service could not score."""
    return [
        RewardResult(id=i, status=ExecStatus.INFRA_ERROR, reward=None, error=error) for i in ids
    ]


def _is_client_error(exc: RewardServiceError) -> bool:
    return exc.status_code is not None and 400 <= exc.status_code < 500


class Blender3DHarness:
    """Client of the reward service for the environment and the evaluation runner.

    Args:
        base_url: where ``llm3d serve`` listens.
        token: Bearer token (default: env ``LLM3D_API_TOKEN``).
        points: surface samples per program (default: the service's training setting).
        timeout_s: per-program execution limit sent with each batch (default: the service's).
        http_timeout: seconds to wait for one batch's answer.
        retries: extra attempts after connection errors, timeouts and 5xx answers.
        max_items: largest batch sent in one request (the service's ``api.max_items``).
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        token: str | None = None,
        points: int | None = None,
        timeout_s: float | None = None,
        http_timeout: float = 900.0,
        retries: int = 4,
        max_items: int = 256,
    ) -> None:
        if max_items < 1:
            raise ValueError(f"max_items must be at least 1, got {max_items}")
        self.base_url = base_url
        self.token = token
        self.points = points
        self.timeout_s = timeout_s
        self.http_timeout = http_timeout
        self.retries = retries
        self.max_items = max_items

    def _kwargs(self) -> dict[str, Any]:
        return {"token": self.token, "timeout": self.http_timeout, "retries": self.retries}

    @staticmethod
    def _items(codes: Sequence[str], task_ids: Sequence[str]) -> list[dict[str, Any]]:
        if len(codes) != len(task_ids):
            raise ValueError(f"{len(codes)} programs but {len(task_ids)} task ids")
        return [
            {"id": str(i), "code": code, "task_id": task_id}
            for i, (code, task_id) in enumerate(zip(codes, task_ids, strict=True))
        ]

    def _chunks(self, items: list[dict[str, Any]]) -> Iterable[list[dict[str, Any]]]:
        for start in range(0, len(items), self.max_items):
            yield items[start : start + self.max_items]

    async def score(self, codes: Sequence[str], task_ids: Sequence[str]) -> list[RewardResult]:
        """Score programs against registered tasks; one result per program, in order.

        Raises:
            RewardServiceError: on a 4xx answer (the request itself is wrong).
        """
        items = self._items(codes, task_ids)
        results: list[RewardResult] = []
        if not items:
            return results
        async with AsyncRewardClient(self.base_url, **self._kwargs()) as client:
            for chunk in self._chunks(items):
                try:
                    response = await client.score_batch(
                        chunk, timeout_s=self.timeout_s, points=self.points
                    )
                except RewardServiceError as exc:
                    if _is_client_error(exc):
                        raise
                    logger.error(
                        "reward service unavailable, %d items infra_error: %s", len(chunk), exc
                    )
                    results.extend(infra_results([i["id"] for i in chunk], str(exc)))
                else:
                    results.extend(response.results)
        return results

    def score_sync(self, codes: Sequence[str], task_ids: Sequence[str]) -> list[RewardResult]:
        """The blocking twin of :meth:`score` (the evaluation runner uses it)."""
        items = self._items(codes, task_ids)
        results: list[RewardResult] = []
        with RewardClient(self.base_url, **self._kwargs()) as client:
            for chunk in self._chunks(items):
                try:
                    response = client.score_batch(
                        chunk, timeout_s=self.timeout_s, points=self.points
                    )
                except RewardServiceError as exc:
                    if _is_client_error(exc):
                        raise
                    logger.error(
                        "reward service unavailable, %d items infra_error: %s", len(chunk), exc
                    )
                    results.extend(infra_results([i["id"] for i in chunk], str(exc)))
                else:
                    results.extend(response.results)
        return results

    def register(self, samples: Sequence[Sample], *, replace: bool = False) -> int:
        """Register the samples' ground truths and views with the service (``POST /tasks``).

        A sample's ground truth is its ``mesh`` file when it has one, else its reference
        ``code``. Its views are its images (the dataset row's,
        :attr:`llm3d.chat.RowRecord.images`, in camera order), so that ``POST /select/batch``
        can name the task instead of sending them. A task the service already knows with the
        same content (its content hash, :func:`llm3d.schemas.reference_key`) and as many views
        is skipped; one it knows with other content or without its views (a stale
        registration under the same id) is replaced, with a warning.

        Args:
            replace: register every task again, known or not (also when only the pixels of
                its views changed, which the skip above cannot see).

        Returns:
            How many tasks were (re)registered.

        Raises:
            RewardServiceError: when the service is unreachable or refuses a task.
            ValueError: for a sample with neither a mesh nor a reference program.
            DatasetError: for a sample with more views than the service takes.
        """
        from llm3d.schemas import ReferencePayload, reference_key

        with RewardClient(self.base_url, **self._kwargs()) as client:
            known = {} if replace else {t.task_id: (t.key, t.views) for t in client.tasks().tasks}
            count = 0
            for sample in samples:
                reference = _reference(sample)
                views = _views(sample)
                key = reference_key(ReferencePayload.from_dict(reference))
                held = known.get(sample.id)
                if held == (key, len(views)):
                    continue
                if held is not None:
                    logger.warning(
                        "task %s: the service holds %s under this id; replacing it with %s",
                        sample.id,
                        "another ground truth" if held[0] != key else f"{held[1]} views",
                        f"{sample.mesh or 'the reference program'} and {len(views)} views",
                    )
                meta: dict[str, Any] = {
                    "category": sample.category,
                    "difficulty": sample.difficulty,
                    "n_parts": sample.n_parts,
                }
                client.add_task(
                    sample.id,
                    reference,
                    replace=held is not None or replace,
                    views=views,
                    **meta,
                )
                count += 1
        logger.info("registered %d of %d tasks with %s", count, len(samples), self.base_url)
        return count


def _views(sample: Sample) -> list[Path]:
    """The views the service keeps for a sample: its images, as the model is shown them."""
    from llm3d.schemas import MAX_VIEWS

    if len(sample.images) > MAX_VIEWS:
        raise DatasetError(
            f"task {sample.id!r} has {len(sample.images)} images; the reward service keeps at "
            f"most {MAX_VIEWS} views a task (one per camera of its render.views)"
        )
    return list(sample.images)


def _reference(sample: Sample) -> dict[str, Any]:
    """The wire reference of a sample: its mesh file's triangles, else its program."""
    if sample.mesh is not None:
        from llm3d.meshio import load_mesh

        vertices, faces = load_mesh(sample.mesh)
        return {"vertices": vertices.tolist(), "faces": faces.tolist()}
    if sample.code:
        return {"code": sample.code}
    raise ValueError(
        f"task {sample.id!r} has neither a mesh nor a reference program: "
        "the reward service cannot know its ground truth"
    )
