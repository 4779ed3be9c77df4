"""The execution contract of DESIGN §2, shared by the executor, the reward and the farm.

Plain Python and numpy only: this module must import without Blender.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

__all__ = ["GATE_ORDER", "ExecResult", "ExecStatus"]


class ExecStatus(StrEnum):
    """What happened to a program, in gate order (DESIGN §2)."""

    EMPTY = "empty"  # no code, or no bpy_lib import
    REFUSED = "refused"  # the sandbox policy rejected it before it ran
    EXEC_FAILED = "exec_failed"  # exception, crash, killed by a limit
    TIMEOUT = "timeout"  # wall-clock limit
    NO_GEOMETRY = "no_geometry"  # fewer than min_faces faces
    DEGENERATE = "degenerate"  # more than max_vertices vertices, or non-finite coordinates
    OK = "ok"
    INFRA_ERROR = "infra_error"  # never the program's fault: reward null, not learned from


GATE_ORDER: tuple[ExecStatus, ...] = (
    ExecStatus.EMPTY,
    ExecStatus.REFUSED,
    ExecStatus.EXEC_FAILED,
    ExecStatus.TIMEOUT,
    ExecStatus.NO_GEOMETRY,
    ExecStatus.DEGENERATE,
    ExecStatus.OK,
)


def _empty_vertices() -> npt.NDArray[np.float32]:
    return np.zeros((0, 3), dtype=np.float32)


def _empty_faces() -> npt.NDArray[np.int32]:
    return np.zeros((0, 3), dtype=np.int32)


@dataclass(frozen=True)
class ExecResult:
    """The outcome of running one program.

    Attributes
    ----------
    status : ExecStatus
    vertices : (n, 3) float32
        Triangulated mesh of everything in the scene, world coordinates.
    faces : (m, 3) int32
        Triangles indexing ``vertices``.
    face_normals : (m, 3) float32 or None
    stdout, stderr : str
        Tails of the program's output, at most ``executor.output_tail_bytes`` each.
    seconds : float
        Wall-clock time of the run, fork to reap.
    error : str or None
        One line a user can act on: exception type, message, line in the user's code.
    diagnostics : dict of str to str
        Notes on the sandbox itself (e.g. a limit the OS refused to apply).
    """

    status: ExecStatus
    vertices: npt.NDArray[np.float32] = field(default_factory=_empty_vertices)
    faces: npt.NDArray[np.int32] = field(default_factory=_empty_faces)
    face_normals: npt.NDArray[np.float32] | None = None
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0
    error: str | None = None
    diagnostics: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status is ExecStatus.OK
