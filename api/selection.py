"""Best-of-N by render match in the reward service: the logic of ``POST /select/batch``.

Each group's views are resolved first (the request's ``images``, or the views of a known
``task_id``) and checked: every view must decode as an image whose object can be told from
its background (:func:`worker.render_match.silhouette`), and there must be one view per
camera of ``render.views``. A group that fails this gets its ``error`` and no candidates
run; the other groups are not touched. Each candidate's program is taken out of its text by
:func:`llm3d.program.extract_code` and sent to the backend as a
:class:`worker.selection.SelectJob`: run in the sandbox, rendered by a render server, matched
(never in this process). Identical (program, views, settings) are run once, and cached like
scores (a namespace of their own). A group's ``best`` is the candidate with the highest
match, the first on ties, ``None`` when none could be matched.

Idempotent by ``request_id`` (:class:`api.idempotency.RequestLedger`), like scoring.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
import uuid
from dataclasses import dataclass

from api.cache import ResultCache, cacheable
from api.idempotency import RequestLedger, fingerprint
from api.registry import TaskRegistry
from llm3d.config import Config
from llm3d.exceptions import UnknownTaskError
from llm3d.program import extract_code
from llm3d.schemas import (
    SelectCandidate,
    SelectGroup,
    SelectGroupResult,
    SelectRequest,
    SelectResponse,
    ViewScore,
)
from worker.farm.backends import Backend
from worker.render_match import MATCH_VERSION, MatchUnavailableError, decode_png, silhouette
from worker.selection import (
    CandidateOutcome,
    SelectJob,
    SelectSettings,
    select_cache_key,
    views_digest,
)

__all__ = ["SelectService", "decode_image"]

logger = logging.getLogger(__name__)


def decode_image(text: str, where: str) -> bytes:
    """The bytes of a base64 image (a ``data:image/png;base64,`` prefix is allowed).

    Raises:
        ValueError: ``text`` is not base64.
    """
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(
            f"{where} is not base64 ({exc}): send the PNG file base64-encoded"
        ) from exc


@dataclass(frozen=True)
class _Group:
    """A group resolved: its views, or why it cannot be matched."""

    views: tuple[bytes, ...] = ()
    error: str | None = None


class SelectService:
    """Chooses among candidates by render match on a backend, with a cache and idempotency."""

    def __init__(
        self, config: Config, backend: Backend, cache: ResultCache, tasks: TaskRegistry
    ) -> None:
        self.config = config
        self.backend = backend
        self.cache = cache
        self.tasks = tasks
        self._requests: RequestLedger[SelectResponse] = RequestLedger()

    def check_tasks(self, request: SelectRequest) -> None:
        """:class:`UnknownTaskError` naming every unknown ``task_id`` (a 422, as for scores)."""
        unknown = [
            f"groups[{i}] (id {g.id!r}): {g.task_id!r}"
            for i, g in enumerate(request.groups)
            if g.task_id is not None and g.task_id not in self.tasks
        ]
        if unknown:
            raise UnknownTaskError(
                f"unknown task_id in {len(unknown)} group(s): {'; '.join(unknown[:10])}. "
                "GET /tasks lists the known tasks; register one with its views (POST /tasks "
                "with views) or send the images inline"
            )

    def _resolve(self, group: SelectGroup) -> _Group:
        """The group's views, checked; or its error (what was wrong and what to do)."""
        cameras = [v.name for v in self.config.render.views]
        if group.task_id is not None:
            task = self.tasks.get(group.task_id)
            if not task.views:
                return _Group(
                    error=f"task {group.task_id!r} has no views: register it with its views "
                    "(a dataset row's images, or POST /tasks with views), or send images"
                )
            try:
                views = task.view_bytes()
            except OSError as exc:
                return _Group(error=f"the views of task {group.task_id!r} cannot be read: {exc}")
            where = [f"task {group.task_id!r} view {i}" for i in range(len(views))]
        else:
            assert group.images is not None  # the schema guarantees one of the two
            where = [f"images[{i}]" for i in range(len(group.images))]
            try:
                views = [decode_image(t, w) for t, w in zip(group.images, where, strict=True)]
            except ValueError as exc:
                return _Group(error=str(exc))
        if len(views) != len(cameras):
            return _Group(
                error=f"{len(views)} views given; this service renders {len(cameras)} "
                f"({', '.join(cameras)}, in that order: render.views): send one image per "
                "camera, as the model saw them"
            )
        try:
            for data, name in zip(views, where, strict=True):
                silhouette(decode_png(data, name), name=name)
        except MatchUnavailableError as exc:
            return _Group(error=str(exc))
        return _Group(views=tuple(views))

    async def select(self, request: SelectRequest) -> SelectResponse:
        """Answer a request (idempotent by ``request_id``); results in the order of ``groups``.

        Raises:
            UnknownTaskError: a group names a task id the service does not know.
            RequestConflictError: ``request_id`` was used before for a different request.
            BackendUnavailableError: the backend cannot be reached or is shutting down.
        """
        self.check_tasks(request)
        rid = request.request_id
        if rid is None:
            return await self._select(request, uuid.uuid4().hex)
        return await self._requests.run(
            rid, fingerprint(request), lambda: self._select(request, rid)
        )

    async def _select(self, request: SelectRequest, rid: str) -> SelectResponse:
        settings = SelectSettings(
            timeout_s=request.timeout_s or self.config.executor.timeout_s,
            render=self.config.render,
        )
        # decoding and checking images is CPU work: off the event loop
        groups = await asyncio.to_thread(lambda: [self._resolve(g) for g in request.groups])
        jobs: list[SelectJob] = []
        keys: list[str] = []
        slots: list[tuple[int, int]] = []
        for g, (group, resolved) in enumerate(zip(request.groups, groups, strict=True)):
            if resolved.error is not None:
                continue
            views_key = views_digest(resolved.views, settings)
            for n, text in enumerate(group.candidates):
                code = extract_code(text).code
                job = SelectJob(f"{group.id}#{n}", code, resolved.views, settings, views_key)
                jobs.append(job)
                keys.append(select_cache_key(code, views_key, settings))
                slots.append((g, n))
        hits = await self.cache.get_many(keys)
        unique: dict[str, SelectJob] = {}
        for job, key, hit in zip(jobs, keys, hits, strict=True):
            if hit is None:
                unique.setdefault(key, job)
        fresh: dict[str, CandidateOutcome] = {}
        if unique:
            start = time.perf_counter()
            done = await self.backend.select_batch(list(unique.values()))
            logger.info(
                "select %s: %d candidates run, %d cached, in %.2fs",
                rid,
                len(unique),
                len(jobs) - len(unique),
                time.perf_counter() - start,
            )
            by_key = dict(zip(unique, done, strict=True))
            await self.cache.put_many({k: r for k, r in by_key.items() if cacheable(r)})
            fresh = {k: CandidateOutcome.from_result(r) for k, r in by_key.items()}
        answers: list[list[SelectCandidate]] = [[] for _ in groups]
        first_of_key: set[str] = set()
        for (g, n), key, hit in zip(slots, keys, hits, strict=True):
            cached = hit is not None or key in first_of_key
            first_of_key.add(key)
            outcome = CandidateOutcome.from_result(hit) if hit is not None else fresh[key]
            answers[g].append(_candidate(n, outcome, cached))
        results = [
            SelectGroupResult(
                id=group.id, best=_best(answer), error=resolved.error, candidates=answer
            )
            for group, resolved, answer in zip(request.groups, groups, answers, strict=True)
        ]
        return SelectResponse(request_id=rid, match_version=MATCH_VERSION, results=results)


def _candidate(index: int, outcome: CandidateOutcome, cached: bool) -> SelectCandidate:
    return SelectCandidate(
        index=index,
        status=outcome.status,
        match=None if outcome.score is None else round(outcome.score, 6),
        views=[
            ViewScore(iou=round(v.iou, 6), edges=round(v.edges, 6), score=round(v.score, 6))
            for v in outcome.views
        ],
        error=outcome.error,
        cached=cached,
        seconds={
            "execute": round(outcome.execute_s, 4),
            "render": round(outcome.render_s, 4),
            "match": round(outcome.match_s, 4),
            "total": round(outcome.seconds, 4),
        },
    )


def _best(candidates: list[SelectCandidate]) -> int | None:
    """The index of the highest match (the first on ties); None when none was matched."""
    matched = [c for c in candidates if c.match is not None]
    if not matched:
        return None
    return max(matched, key=lambda c: (c.match, -c.index)).index
