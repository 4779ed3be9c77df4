"""The execution contract of DESIGN §2, shared by the executor, the reward and the farm.

Plain Python and numpy only: this module must import without Blender.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from llm3d.schemas import ExecStatus

__all__ = ["ExecResult"]


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
