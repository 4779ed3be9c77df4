"""The reward service's Python client (trainers and the environment reach the reward this way).

``RewardClient`` (blocking) and ``AsyncRewardClient`` (asyncio) speak the wire types of
:mod:`llm3d.schemas` over HTTP with httpx::

    with RewardClient("http://127.0.0.1:8000") as client:
        response = client.score_batch([{"id": "a", "code": program, "task_id": "chair-001"}])
        rewards = [r.reward for r in response.results]     # None for infra_error

        # best-of-N by render match (no ground truth): which of N answers looks like the views
        group = client.select(answers, images=[Path("front.png"), ...])   # or task_id=...
        best = answers[group.best] if group.best is not None else answers[0]

Every batch carries a ``request_id`` (a fresh UUID unless given), so a retry is idempotent:
the service answers a repeated id with the same results instead of scoring twice. Retries
(exponential backoff with jitter, ``Retry-After`` honoured) happen only on connection errors,
timeouts and 5xx answers; a 4xx is the caller's mistake and raises
:class:`~llm3d.exceptions.RewardServiceError` at once with the service's message.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import random
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from llm3d.exceptions import RewardServiceError
from llm3d.schemas import (
    JobAccepted,
    JobState,
    JobStatus,
    Reference,
    RewardItem,
    RewardRequest,
    RewardResponse,
    RewardResult,
    SelectGroup,
    SelectGroupResult,
    SelectRequest,
    SelectResponse,
    TaskCreate,
    TaskList,
    TaskPublic,
)

__all__ = [
    "AsyncRewardClient",
    "RewardClient",
    "build_request",
    "build_select_request",
    "encode_image",
]

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({500, 502, 503, 504})
ItemLike = RewardItem | Mapping[str, Any]
GroupLike = SelectGroup | Mapping[str, Any]
#: An input view: the PNG's bytes, its file, or already base64 text.
ImageLike = bytes | Path | str
ModelT = TypeVar("ModelT", bound=BaseModel)


def build_request(
    items: Sequence[ItemLike],
    *,
    request_id: str | None = None,
    timeout_s: float | None = None,
    points: int | None = None,
) -> RewardRequest:
    """A validated :class:`RewardRequest` with a ``request_id`` (a new UUID when not given)."""
    return RewardRequest(
        request_id=request_id or uuid.uuid4().hex,
        timeout_s=timeout_s,
        points=points,
        items=[i if isinstance(i, RewardItem) else RewardItem.model_validate(i) for i in items],
    )


def build_select_request(
    groups: Sequence[GroupLike], *, request_id: str | None = None, timeout_s: float | None = None
) -> SelectRequest:
    """A validated :class:`SelectRequest` with a ``request_id`` (a new UUID when not given)."""
    return SelectRequest(
        request_id=request_id or uuid.uuid4().hex,
        timeout_s=timeout_s,
        groups=[g if isinstance(g, SelectGroup) else SelectGroup.model_validate(g) for g in groups],
    )


def encode_image(image: ImageLike) -> str:
    """An input view as the wire wants it: base64 of the PNG (a ``str`` is taken as that)."""
    if isinstance(image, str):
        return image
    data = image.read_bytes() if isinstance(image, Path) else image
    return base64.b64encode(data).decode("ascii")


def _group(
    candidates: Sequence[str], images: Sequence[ImageLike] | None, task_id: str | None
) -> dict[str, Any]:
    encoded = [encode_image(i) for i in images] if images is not None else None
    return {"id": "0", "candidates": list(candidates), "images": encoded, "task_id": task_id}


def _task(
    task_id: str,
    reference: Reference | Mapping[str, Any],
    replace: bool,
    meta: dict[str, Any],
    views: Sequence[ImageLike] | None = None,
) -> TaskCreate:
    return TaskCreate(
        task_id=task_id,
        reference=Reference.model_validate(reference),
        meta=meta,
        replace=replace,
        views=[encode_image(v) for v in views] if views else None,
    )


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])
    return str(body)[:500]


class _Policy:
    """Retry policy and request helpers shared by the two clients."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        timeout: float,
        retries: int,
        backoff_s: float,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token if token is not None else os.environ.get("LLM3D_API_TOKEN") or None
        self.timeout = timeout
        self.retries = retries
        self.backoff_s = backoff_s

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def delay(self, attempt: int, response: httpx.Response | None) -> float:
        if response is not None:
            after = response.headers.get("Retry-After", "")
            if after.replace(".", "", 1).isdigit():
                return min(float(after), 30.0)
        return float(self.backoff_s * (2**attempt) * (0.5 + random.random()))

    def check(self, response: httpx.Response, method: str, path: str) -> httpx.Response:
        if response.is_success:
            return response
        raise RewardServiceError(
            f"{method} {path} → {response.status_code}: {_detail(response)}",
            status_code=response.status_code,
        )

    def give_up(self, method: str, path: str, error: str, attempts: int) -> RewardServiceError:
        return RewardServiceError(
            f"{method} {path} failed after {attempts} attempts: {error} "
            f"(is the reward service running at {self.base_url}?)"
        )


class RewardClient:
    """Blocking client of the reward service.

    Args:
        base_url: where the service listens (``llm3d serve``).
        token: Bearer token (default: env ``LLM3D_API_TOKEN``).
        timeout: seconds to wait for one HTTP answer (a whole batch).
        retries: extra attempts after a connection error, timeout or 5xx.
        backoff_s: first retry delay; doubled each attempt, with jitter.
        transport: an httpx transport (tests).
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        token: str | None = None,
        timeout: float = 900.0,
        retries: int = 4,
        backoff_s: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._policy = _Policy(base_url, token, timeout, retries, backoff_s)
        self._http = httpx.Client(
            base_url=self._policy.base_url,
            timeout=timeout,
            headers=self._policy.headers(),
            transport=transport,
        )

    def __enter__(self) -> RewardClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, body: BaseModel | None = None) -> httpx.Response:
        content = body.model_dump_json(exclude_none=True) if body is not None else None
        headers = {"Content-Type": "application/json"} if content is not None else {}
        last = "no attempt made"
        for attempt in range(self._policy.retries + 1):
            response: httpx.Response | None = None
            try:
                response = self._http.request(method, path, content=content, headers=headers)
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code not in RETRY_STATUSES:
                    return self._policy.check(response, method, path)
                last = f"{response.status_code}: {_detail(response)}"
            if attempt < self._policy.retries:
                wait = self._policy.delay(attempt, response)
                logger.warning("%s %s: %s; retrying in %.1fs", method, path, last, wait)
                time.sleep(wait)
        raise self._policy.give_up(method, path, last, self._policy.retries + 1)

    def _get(self, path: str, model: type[ModelT]) -> ModelT:
        return model.model_validate_json(self._call("GET", path).content)

    def score_batch(
        self,
        items: Sequence[ItemLike],
        *,
        request_id: str | None = None,
        timeout_s: float | None = None,
        points: int | None = None,
    ) -> RewardResponse:
        """Score items and wait; results in the order of ``items``."""
        request = build_request(items, request_id=request_id, timeout_s=timeout_s, points=points)
        return RewardResponse.model_validate_json(
            self._call("POST", "/reward/batch", request).content
        )

    def score(
        self,
        code: str,
        *,
        task_id: str | None = None,
        reference: Reference | Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
    ) -> RewardResult:
        """Score one program against a task id or an inline reference."""
        item: dict[str, Any] = {"id": "0", "code": code, "task_id": task_id}
        if reference is not None:
            item["reference"] = reference
        return self.score_batch([item], timeout_s=timeout_s).results[0]

    def submit_job(
        self,
        items: Sequence[ItemLike],
        *,
        request_id: str | None = None,
        timeout_s: float | None = None,
        points: int | None = None,
    ) -> JobAccepted:
        """Start a batch in the background (``202``)."""
        request = build_request(items, request_id=request_id, timeout_s=timeout_s, points=points)
        return JobAccepted.model_validate_json(self._call("POST", "/reward/jobs", request).content)

    def job(self, job_id: str) -> JobStatus:
        """A job's state (and its response once done)."""
        return self._get(f"/reward/jobs/{job_id}", JobStatus)

    def wait_job(
        self, job_id: str, *, poll_s: float = 0.5, timeout: float = 3600.0
    ) -> RewardResponse:
        """Poll a job until it is done; raise :class:`RewardServiceError` if it failed."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.job(job_id)
            if status.state is JobState.DONE and status.response is not None:
                return status.response
            if status.state is JobState.FAILED:
                raise RewardServiceError(f"job {job_id} failed: {status.error}")
            if time.monotonic() > deadline:
                raise RewardServiceError(f"job {job_id} not done after {timeout:.0f}s")
            time.sleep(poll_s)

    def tasks(self) -> TaskList:
        """The ground truths the service knows."""
        return self._get("/tasks", TaskList)

    def add_task(
        self,
        task_id: str,
        reference: Reference | Mapping[str, Any],
        *,
        replace: bool = False,
        views: Sequence[ImageLike] | None = None,
        **meta: Any,
    ) -> TaskPublic:
        """Register a ground truth under ``task_id`` (with ``views``, the images the model is
        shown, :meth:`select` can then name the task instead of sending them).

        The same content under a known id is accepted and changes nothing. Other content
        under a known id raises :class:`RewardServiceError` (409) unless ``replace``.
        """
        body = _task(task_id, reference, replace, meta, views)
        return TaskPublic.model_validate_json(self._call("POST", "/tasks", body).content)

    def select_batch(
        self,
        groups: Sequence[GroupLike],
        *,
        request_id: str | None = None,
        timeout_s: float | None = None,
    ) -> SelectResponse:
        """Best-of-N by render match for several groups (``POST /select/batch``); results in
        the order of ``groups``. A group's ``images`` must already be base64 here."""
        request = build_select_request(groups, request_id=request_id, timeout_s=timeout_s)
        return SelectResponse.model_validate_json(
            self._call("POST", "/select/batch", request).content
        )

    def select(
        self,
        candidates: Sequence[str],
        *,
        images: Sequence[ImageLike] | None = None,
        task_id: str | None = None,
        timeout_s: float | None = None,
    ) -> SelectGroupResult:
        """The candidate whose renders best match the views (``best``), and every candidate's
        status and match. Give the views (PNG bytes, files or base64, one per camera of the
        service) or the ``task_id`` of a task registered with its views."""
        group = _group(candidates, images, task_id)
        return self.select_batch([group], timeout_s=timeout_s).results[0]

    def health(self) -> dict[str, Any]:
        """``GET /healthz``; raises :class:`RewardServiceError` when the backend is down."""
        data: dict[str, Any] = self._call("GET", "/healthz").json()
        return data


class AsyncRewardClient:
    """The asyncio twin of :class:`RewardClient` (same arguments, awaitable methods)."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        token: str | None = None,
        timeout: float = 900.0,
        retries: int = 4,
        backoff_s: float = 0.5,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._policy = _Policy(base_url, token, timeout, retries, backoff_s)
        self._http = httpx.AsyncClient(
            base_url=self._policy.base_url,
            timeout=timeout,
            headers=self._policy.headers(),
            transport=transport,
        )

    async def __aenter__(self) -> AsyncRewardClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, body: BaseModel | None = None) -> httpx.Response:
        content = body.model_dump_json(exclude_none=True) if body is not None else None
        headers = {"Content-Type": "application/json"} if content is not None else {}
        last = "no attempt made"
        for attempt in range(self._policy.retries + 1):
            response: httpx.Response | None = None
            try:
                response = await self._http.request(method, path, content=content, headers=headers)
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code not in RETRY_STATUSES:
                    return self._policy.check(response, method, path)
                last = f"{response.status_code}: {_detail(response)}"
            if attempt < self._policy.retries:
                wait = self._policy.delay(attempt, response)
                logger.warning("%s %s: %s; retrying in %.1fs", method, path, last, wait)
                await asyncio.sleep(wait)
        raise self._policy.give_up(method, path, last, self._policy.retries + 1)

    async def score_batch(
        self,
        items: Sequence[ItemLike],
        *,
        request_id: str | None = None,
        timeout_s: float | None = None,
        points: int | None = None,
    ) -> RewardResponse:
        """Score items and wait; results in the order of ``items``."""
        request = build_request(items, request_id=request_id, timeout_s=timeout_s, points=points)
        response = await self._call("POST", "/reward/batch", request)
        return RewardResponse.model_validate_json(response.content)

    async def submit_job(
        self,
        items: Sequence[ItemLike],
        *,
        request_id: str | None = None,
        timeout_s: float | None = None,
        points: int | None = None,
    ) -> JobAccepted:
        """Start a batch in the background (``202``)."""
        request = build_request(items, request_id=request_id, timeout_s=timeout_s, points=points)
        response = await self._call("POST", "/reward/jobs", request)
        return JobAccepted.model_validate_json(response.content)

    async def job(self, job_id: str) -> JobStatus:
        """A job's state (and its response once done)."""
        response = await self._call("GET", f"/reward/jobs/{job_id}")
        return JobStatus.model_validate_json(response.content)

    async def wait_job(
        self, job_id: str, *, poll_s: float = 0.5, timeout: float = 3600.0
    ) -> RewardResponse:
        """Poll a job until it is done; raise :class:`RewardServiceError` if it failed."""
        deadline = time.monotonic() + timeout
        while True:
            status = await self.job(job_id)
            if status.state is JobState.DONE and status.response is not None:
                return status.response
            if status.state is JobState.FAILED:
                raise RewardServiceError(f"job {job_id} failed: {status.error}")
            if time.monotonic() > deadline:
                raise RewardServiceError(f"job {job_id} not done after {timeout:.0f}s")
            await asyncio.sleep(poll_s)

    async def tasks(self) -> TaskList:
        """The ground truths the service knows."""
        response = await self._call("GET", "/tasks")
        return TaskList.model_validate_json(response.content)

    async def add_task(
        self,
        task_id: str,
        reference: Reference | Mapping[str, Any],
        *,
        replace: bool = False,
        views: Sequence[ImageLike] | None = None,
        **meta: Any,
    ) -> TaskPublic:
        """Register a ground truth under ``task_id`` (see :meth:`RewardClient.add_task`)."""
        body = _task(task_id, reference, replace, meta, views)
        response = await self._call("POST", "/tasks", body)
        return TaskPublic.model_validate_json(response.content)

    async def select_batch(
        self,
        groups: Sequence[GroupLike],
        *,
        request_id: str | None = None,
        timeout_s: float | None = None,
    ) -> SelectResponse:
        """Best-of-N by render match (see :meth:`RewardClient.select_batch`)."""
        request = build_select_request(groups, request_id=request_id, timeout_s=timeout_s)
        response = await self._call("POST", "/select/batch", request)
        return SelectResponse.model_validate_json(response.content)

    async def select(
        self,
        candidates: Sequence[str],
        *,
        images: Sequence[ImageLike] | None = None,
        task_id: str | None = None,
        timeout_s: float | None = None,
    ) -> SelectGroupResult:
        """One group's choice (see :meth:`RewardClient.select`)."""
        group = _group(candidates, images, task_id)
        return (await self.select_batch([group], timeout_s=timeout_s)).results[0]

    async def health(self) -> dict[str, Any]:
        """``GET /healthz``; raises :class:`RewardServiceError` when the backend is down."""
        data: dict[str, Any] = (await self._call("GET", "/healthz")).json()
        return data
