"""The ground truths the service knows by ``task_id``: loaded from datasets or ``POST /tasks``.

A dataset is a JSONL file (or a JSON list) of rows as written by the data pipeline
(DESIGN §6): ``{"id": ..., "mesh": "meshes/x.glb", "code": ..., ...}``. A row's ground
truth is its ``mesh`` (a path relative to the dataset file) when it has one, else its
``code`` (a ``bpy_lib`` program, run once in the sandbox when first needed), else inline
``vertices`` + ``faces``. Its views (the images shown to the model:
:attr:`llm3d.chat.RowRecord.images`) are kept too, for best-of-N by render match
(``POST /select/batch`` with a ``task_id``); they never reach the sandbox, and neither does
the ground truth. Other keys are kept as ``meta``.

``POST /tasks`` never silently changes a ground truth: :meth:`TaskRegistry.register` with
an id that is known with *other* content is a :class:`TaskConflictError` (409) unless
``replace`` is set; the *same* content again is accepted and changes nothing (idempotent
retries). Datasets of ``api.datasets`` are loaded in order, a later row replacing an
earlier one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, MutableMapping
from pathlib import Path
from typing import Any, Literal

from llm3d.chat import read_rows
from llm3d.exceptions import ConfigError, LLM3DError, UnknownTaskError
from llm3d.schemas import ReferencePayload, TaskPublic, reference_key

__all__ = ["RegisteredTask", "TaskConflictError", "TaskRegistry", "read_dataset"]

logger = logging.getLogger(__name__)

META_KEYS = ("category", "difficulty", "n_parts", "name")


class TaskConflictError(LLM3DError, ValueError):
    """A task id is already registered with another ground truth (and ``replace`` was not set)."""


#: A task's views: image files (a dataset's) or encoded images (given to ``POST /tasks``).
Views = tuple[Path | bytes, ...]


class RegisteredTask:
    """One known ground truth: its public description, its payload and its views."""

    __slots__ = ("payload", "public", "views")

    def __init__(self, public: TaskPublic, payload: ReferencePayload, views: Views = ()) -> None:
        self.public = public
        self.payload = payload
        self.views = views

    def view_bytes(self) -> list[bytes]:
        """The encoded images of the views, in camera order.

        Raises:
            OSError: a view's file cannot be read.
        """
        return [v if isinstance(v, bytes) else Path(v).read_bytes() for v in self.views]


def read_dataset(path: Path) -> Iterator[tuple[str, ReferencePayload, dict[str, Any], Views]]:
    """``(task_id, payload, meta, views)`` of every row of a dataset file (read by
    :func:`llm3d.chat.read_rows`, the one reader of dataset rows)."""
    if not path.is_file():
        raise ConfigError(f"api.datasets: {path} does not exist (a JSONL file of tasks)")
    for record in read_rows(path):
        task_id = record.key
        row = record.fields
        meta = {k: row[k] for k in META_KEYS if k in row}
        if record.mesh is not None:
            from llm3d.meshio import load_mesh

            vertices, faces = load_mesh(record.mesh)
            payload = ReferencePayload(vertices=vertices.tolist(), faces=faces.tolist())
            meta["mesh"] = str(row["mesh"])
        elif record.code is not None:
            payload = ReferencePayload(code=record.code)
        elif row.get("vertices") and row.get("faces"):
            payload = ReferencePayload(vertices=row["vertices"], faces=row["faces"])
        else:
            raise record.error(f"task {task_id!r} has neither mesh, code nor vertices+faces")
        yield task_id, payload, meta, tuple(record.images)


class TaskRegistry:
    """task id → ground truth, thread-safe.

    Args:
        store: where the tasks live: a dict of this process by default, or a mapping that
            several processes share (on Modal, a ``modal.Dict``: api/modal_web.py).
    """

    def __init__(self, store: MutableMapping[str, RegisteredTask] | None = None) -> None:
        self._tasks: MutableMapping[str, RegisteredTask] = store if store is not None else {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._tasks)

    def add(
        self,
        task_id: str,
        payload: ReferencePayload,
        *,
        source: str,
        meta: dict[str, Any] | None = None,
        views: Views = (),
    ) -> TaskPublic:
        """Register (or replace) a ground truth; returns its public description."""
        public = TaskPublic(
            task_id=task_id,
            kind=payload.kind,
            source=source,
            key=reference_key(payload),
            meta=meta or {},
            views=len(views),
        )
        with self._lock:
            self._tasks[task_id] = RegisteredTask(public, payload, views)
        return public

    def register(
        self,
        task_id: str,
        payload: ReferencePayload,
        *,
        source: str,
        meta: dict[str, Any] | None = None,
        replace: bool = False,
        views: Views = (),
    ) -> tuple[TaskPublic, Literal["created", "unchanged", "replaced"]]:
        """Register a ground truth (and its views) unless ``task_id`` already holds it.

        Returns:
            The task and what happened: ``unchanged`` when the id already held the same
            content and views (the task is returned as it was, its ``meta`` and source kept).

        Raises:
            TaskConflictError: the id holds other content and ``replace`` is False.
        """
        key = reference_key(payload)
        with self._lock:
            known = self._tasks.get(task_id)
            same = known is not None and known.public.key == key and known.views == views
            if known is not None and same and not replace:
                return known.public, "unchanged"
            if known is not None and not replace:
                what = "ground truth" if known.public.key != key else "views"
                raise TaskConflictError(
                    f"task {task_id!r} is already registered with other {what} "
                    f"(key {known.public.key}, from {known.public.source}; this one is {key}): "
                    "send replace: true to replace it, or register it under a new task_id"
                )
            public = TaskPublic(
                task_id=task_id,
                kind=payload.kind,
                source=source,
                key=key,
                meta=meta or {},
                views=len(views),
            )
            self._tasks[task_id] = RegisteredTask(public, payload, views)
        if known is None:
            return public, "created"
        logger.warning("task %s replaced: key %s -> %s", task_id, known.public.key, key)
        return public, "replaced"

    def load(self, paths: Iterable[Path]) -> int:
        """Load dataset files; returns how many tasks they held."""
        count = 0
        for path in paths:
            for task_id, payload, meta, views in read_dataset(Path(path)):
                self.add(task_id, payload, source=str(path), meta=meta, views=views)
                count += 1
            logger.info("loaded tasks from %s", path)
        return count

    def get(self, task_id: str) -> RegisteredTask:
        """The task, or :class:`UnknownTaskError` naming it."""
        try:
            return self._tasks[task_id]
        except KeyError:
            raise UnknownTaskError(
                f"unknown task_id {task_id!r}: GET /tasks lists the {len(self._tasks)} known "
                "ground truths; register one with POST /tasks or give a reference inline"
            ) from None

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._tasks

    def public(self) -> list[TaskPublic]:
        with self._lock:
            return [t.public for t in self._tasks.values()]
