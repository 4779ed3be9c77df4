"""Wire types of the reward service (DESIGN §5), shared by the API, its client and the environment.

Plain Pydantic: this module is part of the light core and imports neither Blender nor the
farm's dependencies. The limits that depend on configuration (items per batch, program
size, request size) are checked by the API, which knows the configuration; what is checked
here is the shape of a request: exactly one ground truth per item, meshes made of triples,
unique item ids.

A request::

    {"request_id": "step-12", "timeout_s": 30, "points": 10000,
     "items": [{"id": "a", "code": "from bpy_lib import *\\n...", "task_id": "chair-001"},
               {"id": "b", "code": "...", "reference": {"code": "from bpy_lib import *\\n..."}},
               {"id": "c", "code": "...", "reference": {"vertices": [[0, 0, 0], ...],
                                                        "faces": [[0, 1, 2], ...]}}]}
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Self

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    model_serializer,
    model_validator,
)

__all__ = [
    "GATE_ORDER",
    "REQUEST_ID_PATTERN",
    "ErrorDetail",
    "ErrorResponse",
    "ExecStatus",
    "JobAccepted",
    "JobState",
    "JobStatus",
    "Reference",
    "ReferencePayload",
    "RewardItem",
    "RewardRequest",
    "RewardResponse",
    "RewardResult",
    "SelectCandidate",
    "SelectGroup",
    "SelectGroupResult",
    "SelectRequest",
    "SelectResponse",
    "TaskCreate",
    "TaskList",
    "TaskPublic",
    "reference_key",
    "safe_json",
    "safe_text",
]

_SURROGATE = re.compile("[\ud800-\udfff]")


def safe_text(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD, so that it encodes as UTF-8.

    Python strings may hold surrogates (``"\\ud800"`` in JSON, a program's error message, a
    ``surrogateescape`` decode); UTF-8, and so JSON on the wire, cannot. This is the one
    place that makes text safe for the wire (see :func:`safe_json`).
    """
    if text.isascii():
        return text
    return _SURROGATE.sub("\ufffd", text)


def safe_json(value: Any) -> Any:
    """``value`` (JSON-like: mappings, lists, strings, numbers) with all text made safe.

    Keys too. Every wire type serialises through it (:class:`_Wire`), and the API's error
    bodies are built with it: no program output, task ``meta`` or echoed input can make a
    response fail to encode.
    """
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, dict):
        return {safe_json(k): safe_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [safe_json(v) for v in value]
    return value


def _printable(text: str) -> str:
    if not text.isprintable():
        raise ValueError(
            "must be printable text: no control characters (newline, tab, NUL) or lone surrogates"
        )
    return text


#: ``request_id``: 1-256 visible ASCII characters (a UUID, ``step-12/rank-3``...), no spaces.
REQUEST_ID_PATTERN = r"^[!-~]{1,256}$"
RequestId = Annotated[str, StringConstraints(pattern=REQUEST_ID_PATTERN)]
ItemId = Annotated[str, StringConstraints(min_length=1, max_length=256), AfterValidator(_printable)]
TaskId = Annotated[
    str, StringConstraints(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9_.:/-]+$")
]
Vertex = Annotated[list[float], Field(min_length=3, max_length=3)]
Triangle = Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=3, max_length=3)]


class _Wire(BaseModel):
    """Base of the wire types: unknown fields are errors (a typo must not be ignored)."""

    # metrics may be inf (e.g. a distance to nothing): JSON carries it as Infinity
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")

    # Unannotated on purpose: an annotation would replace the model's own JSON schema.
    @model_serializer(mode="wrap")
    def _safe_text(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        """Serialise with every string made safe for UTF-8 (:func:`safe_json`)."""
        return safe_json(handler(self))


class ExecStatus(StrEnum):
    """What happened to a program, in gate order (DESIGN §2): the status of every scored item,
    from the executor through the reward to the wire. The one definition."""

    EMPTY = "empty"  # no code, or no bpy_lib import
    REFUSED = "refused"  # the sandbox policy rejected it before it ran
    EXEC_FAILED = "exec_failed"  # exception, crash, killed by a limit
    TIMEOUT = "timeout"  # wall-clock limit
    NO_GEOMETRY = "no_geometry"  # fewer than min_faces faces
    DEGENERATE = "degenerate"  # more than max_vertices vertices, or non-finite coordinates
    OK = "ok"
    INFRA_ERROR = "infra_error"  # never the program's fault: reward null, not learned from


# The gates a program passes, in order; infra_error is outside them (not the program's doing).
GATE_ORDER: tuple[ExecStatus, ...] = (
    ExecStatus.EMPTY,
    ExecStatus.REFUSED,
    ExecStatus.EXEC_FAILED,
    ExecStatus.TIMEOUT,
    ExecStatus.NO_GEOMETRY,
    ExecStatus.DEGENERATE,
    ExecStatus.OK,
)


class Reference(_Wire):
    """A ground truth given inline: a ``bpy_lib`` program, or a triangle mesh.

    Give either ``code``, or both ``vertices`` (``(n, 3)`` floats) and ``faces``
    (``(m, 3)`` vertex indices).
    """

    code: str | None = Field(None, min_length=1, description="a bpy_lib program that builds it")
    vertices: list[Vertex] | None = Field(None, description="(n, 3) vertex coordinates")
    faces: list[Triangle] | None = Field(None, description="(m, 3) triangles indexing vertices")

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        has_mesh = self.vertices is not None or self.faces is not None
        if self.code is not None and has_mesh:
            raise ValueError("give either reference.code or reference.vertices+faces, not both")
        if self.code is None and not has_mesh:
            raise ValueError("reference needs code, or vertices and faces")
        if has_mesh:
            if not self.vertices or not self.faces:
                raise ValueError("a mesh reference needs both non-empty vertices and faces")
            n = len(self.vertices)
            worst = max(max(f) for f in self.faces)
            if worst >= n:
                raise ValueError(
                    f"reference.faces index vertex {worst} but there are only {n} vertices"
                )
        return self


class RewardItem(_Wire):
    """One program to score against exactly one ground truth (``task_id`` or ``reference``)."""

    id: ItemId = Field(description="the caller's id, echoed in the result")
    code: str = Field(
        description="the generated bpy_lib program (at most executor.max_code_bytes of UTF-8, "
        "64 KiB unless configured; a larger one is a 422)"
    )
    task_id: TaskId | None = Field(None, description="a ground truth the service knows")
    reference: Reference | None = Field(None, description="or a ground truth given inline")

    @model_validator(mode="after")
    def _one_ground_truth(self) -> Self:
        if (self.task_id is None) == (self.reference is None):
            raise ValueError(
                f"item {self.id!r}: give exactly one of task_id or reference "
                f"(got {'both' if self.task_id is not None else 'neither'})"
            )
        return self


class _BatchRequest(_Wire):
    """What every batch request carries: its idempotency key and the per-program limit."""

    request_id: RequestId | None = Field(
        None,
        description="idempotency key: a repeated id gets the same answer. 1-256 visible "
        "ASCII characters, no spaces (omit it for a fresh one)",
    )
    timeout_s: float | None = Field(
        None,
        gt=0,
        le=3600,
        description="per-program limit in seconds (default and maximum: the service's "
        "executor.timeout_s, 120 unless configured; a larger value is a 422)",
    )


class RewardRequest(_BatchRequest):
    """``POST /reward/batch`` and ``POST /reward/jobs``."""

    points: int | None = Field(
        None, ge=100, le=1_000_000, description="surface samples (default from config)"
    )
    items: list[RewardItem] = Field(min_length=1, description="scored in this order")

    @model_validator(mode="after")
    def _unique_ids(self) -> Self:
        seen: set[str] = set()
        for item in self.items:
            if item.id in seen:
                raise ValueError(f"item ids must be unique; {item.id!r} appears twice")
            seen.add(item.id)
        return self


class RewardResult(_Wire):
    """The score of one item (DESIGN §4): ``reward`` is null for ``infra_error``."""

    id: str
    status: ExecStatus
    reward: float | None
    components: dict[str, float] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    error: str | None = None
    cached: bool = False
    seconds: float = 0.0


class RewardResponse(_Wire):
    """The answer to a batch: one result per item, in the order of ``items``."""

    request_id: str
    reward_version: str
    results: list[RewardResult]


#: Candidates a group of ``POST /select/batch`` may hold (best-of-N: N is small).
MAX_CANDIDATES = 64
#: Views a group may give (the service's camera rig has four unless configured).
MAX_VIEWS = 16


class SelectGroup(_Wire):
    """One task's candidates and the views the model was given (``images`` or ``task_id``)."""

    id: ItemId = Field(description="the caller's id, echoed in the result")
    candidates: list[str] = Field(
        min_length=1,
        max_length=MAX_CANDIDATES,
        description="the programs, or the model's whole answers: the program is taken out of "
        "each by the rule of llm3d.program.extract_code (the last fenced block that imports "
        "bpy_lib, ...)",
    )
    images: list[str] | None = Field(
        None,
        min_length=1,
        max_length=MAX_VIEWS,
        description="the input views, base64 PNG, one per camera of the service's render.views "
        "in that order (GET /healthz lists them): renders with a plain background, or images "
        "with transparency. A photo whose object cannot be cut out is that group's error",
    )
    task_id: TaskId | None = Field(
        None, description="or a task the service knows with its views (a dataset's images)"
    )

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.images is None) == (self.task_id is None):
            raise ValueError(
                f"group {self.id!r}: give exactly one of images or task_id "
                f"(got {'both' if self.task_id is not None else 'neither'})"
            )
        return self


class SelectRequest(_BatchRequest):
    """``POST /select/batch``: best-of-N by render match, no ground truth needed."""

    groups: list[SelectGroup] = Field(min_length=1, description="answered in this order")

    @model_validator(mode="after")
    def _unique_ids(self) -> Self:
        seen: set[str] = set()
        for group in self.groups:
            if group.id in seen:
                raise ValueError(f"group ids must be unique; {group.id!r} appears twice")
            seen.add(group.id)
        return self


class ViewScore(_Wire):
    """One view's comparison: silhouette IoU, edge similarity and their weighted score."""

    iou: float
    edges: float
    score: float


class SelectCandidate(_Wire):
    """One candidate of a group: how it ran, and how well its renders match the views."""

    index: int = Field(description="its place in the group's candidates")
    status: ExecStatus
    match: float | None = Field(
        description="the render match in [0, 1]; null when it made no usable mesh"
    )
    views: list[ViewScore] = Field(default_factory=list, description="per view, camera order")
    error: str | None = None
    cached: bool = False
    seconds: dict[str, float] = Field(
        default_factory=dict, description="execute, render, match and total"
    )


class SelectGroupResult(_Wire):
    """A group's answer: ``best`` is the index of the best match (ties: the first), null when
    no candidate could be matched, or when the group itself is in ``error``."""

    id: str
    best: int | None
    error: str | None = Field(
        None, description="why the group could not be matched at all (a bad image, ...)"
    )
    candidates: list[SelectCandidate] = Field(default_factory=list)


class SelectResponse(_Wire):
    """The answer to ``POST /select/batch``: one result per group, in the order of ``groups``."""

    request_id: str
    match_version: str = Field(description="changes when the match score's definition does")
    results: list[SelectGroupResult]


class JobState(StrEnum):
    """Where an asynchronous job stands."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class JobAccepted(_Wire):
    """``202`` answer of ``POST /reward/jobs``: poll ``url`` until ``state`` is done."""

    job_id: str
    request_id: str
    state: JobState
    url: str
    items: int


class JobStatus(_Wire):
    """``GET /reward/jobs/{job_id}``."""

    job_id: str
    request_id: str
    state: JobState
    items: int
    completed: int = 0
    created_at: datetime
    finished_at: datetime | None = None
    error: str | None = None
    detail: str | None = Field(
        None, description="why a queued job waits (no worker consumes the queue), else null"
    )
    response: RewardResponse | None = None


class TaskCreate(_Wire):
    """``POST /tasks``: register a ground truth under ``task_id``."""

    task_id: TaskId
    reference: Reference
    meta: dict[str, Any] = Field(default_factory=dict, description="free-form, echoed back")
    views: list[str] | None = Field(
        None,
        min_length=1,
        max_length=MAX_VIEWS,
        description="the views shown to the model (base64 PNG, camera order), for "
        "POST /select/batch with this task_id; never shown to the sandbox",
    )
    replace: bool = Field(
        False,
        description="replace a task already registered under task_id with other content "
        "(without it: 409). The same content again is accepted as it is (200)",
    )


class TaskPublic(_Wire):
    """A ground truth the service knows."""

    task_id: str
    kind: str = Field(description="'code' or 'mesh'")
    source: str = Field(description="where it came from: a dataset file or 'api'")
    key: str = Field(description="content hash of the reference (part of the cache key)")
    meta: dict[str, Any] = Field(default_factory=dict)
    views: int = Field(0, description="how many views it has for POST /select/batch")


class TaskList(_Wire):
    """``GET /tasks``."""

    count: int
    tasks: list[TaskPublic]


class ErrorDetail(_Wire):
    """One problem of a refused request: where (``loc``), what, and its kind."""

    loc: list[str | int] = Field(description="path into the request, e.g. body.items.3.code")
    msg: str = Field(description="what is wrong and what to do")
    type: str = Field(description="machine-readable kind, e.g. missing, too_long")


class ErrorResponse(_Wire):
    """Every 4xx/5xx body of the service: one readable ``detail`` line, and for a 422 the
    individual problems in ``errors``."""

    detail: str = Field(description="what was wrong and what to do, in one line")
    errors: list[ErrorDetail] | None = Field(
        None, description="the individual problems (validation errors only)"
    )


@dataclass(frozen=True)
class ReferencePayload:
    """A ground truth's source: a ``bpy_lib`` program, or a triangle mesh (JSON lists)."""

    code: str | None = None
    vertices: list[list[float]] | None = None
    faces: list[list[int]] | None = None

    @property
    def kind(self) -> str:
        return "code" if self.code is not None else "mesh"

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReferencePayload:
        return cls(code=data.get("code"), vertices=data.get("vertices"), faces=data.get("faces"))


def reference_key(payload: ReferencePayload) -> str:
    """The content hash of a ground truth: equal programs / equal meshes give equal keys.

    The one definition: the service's task registry, its result cache, the Celery workers'
    reference store and the environment's registration (which skips tasks the service already
    holds with this key) all compare these keys."""
    digest = hashlib.sha256()
    if payload.code is not None:
        digest.update(b"code\0" + payload.code.encode("utf-8", "surrogatepass"))
    else:
        vertices = np.asarray(payload.vertices, dtype=np.float32).reshape(-1, 3)
        faces = np.asarray(payload.faces, dtype=np.int32).reshape(-1, 3)
        digest.update(b"mesh\0" + vertices.tobytes() + b"\0" + faces.tobytes())
    return digest.hexdigest()[:32]
