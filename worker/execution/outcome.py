"""Turn what a child left behind (wait status, result frame) into a status (DESIGN §2).

Plain Python and numpy: the fork server calls it after reaping a child, and it is unit-tested
without Blender. The result frame comes from a process that ran untrusted code, so it is
validated here like any other input: sizes, dtypes, shapes, index ranges.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import numpy as np

from llm3d.config import ExecutorConfig
from llm3d.schemas import ExecStatus
from worker.execution.protocol import FrameDecoder, ProtocolError, decode_arrays

__all__ = ["classify_child", "describe_wait_status"]

_SIGNAL_HINTS = {
    signal.SIGSEGV: "the program crashed Blender (segmentation fault)",
    signal.SIGBUS: "the program crashed Blender (bus error)",
    signal.SIGABRT: "the program aborted Blender",
    signal.SIGFPE: "the program crashed Blender (floating-point exception)",
    signal.SIGILL: "the program crashed Blender (illegal instruction)",
    signal.SIGXCPU: "the program used more CPU time than allowed ({cpu} s)",
    signal.SIGXFSZ: "the program wrote a file larger than allowed ({fsize} MiB)",
    signal.SIGKILL: "the program was killed (out of memory, or the CPU hard limit)",
}


def describe_wait_status(wait_status: int, config: ExecutorConfig) -> str:
    """One line for a child that exited without a result frame."""
    if os.WIFSIGNALED(wait_status):
        sig = os.WTERMSIG(wait_status)
        try:
            which = signal.Signals(sig)
        except ValueError:
            return f"the program was killed by signal {sig}"
        hint = _SIGNAL_HINTS.get(which, "the program was killed by a signal")
        return hint.format(cpu=config.cpu_seconds, fsize=config.max_file_mb) + f" [{which.name}]"
    code = os.WEXITSTATUS(wait_status) if os.WIFEXITED(wait_status) else wait_status
    return f"the program ended the process (exit status {code}) before it finished"


def _result(rid: str, status: ExecStatus, error: str | None, **extra: Any) -> dict[str, Any]:
    return {"op": "result", "id": rid, "status": status.value, "error": error, **extra}


def classify_child(
    rid: str,
    *,
    wait_status: int,
    timed_out: bool,
    timeout_s: float,
    result: bytes | bytearray,
    result_overflow: bool,
    config: ExecutorConfig,
) -> tuple[dict[str, Any], list[bytes]]:
    """The answer frame (header, array blobs) for a reaped child.

    Parameters
    ----------
    rid : str
        The request id the answer carries.
    wait_status : int
        As returned by ``os.waitpid``.
    timed_out : bool
        Whether the server killed the child at its deadline.
    timeout_s : float
        That deadline, for the message.
    result : bytes
        Everything the child wrote to its result pipe (one frame when it finished).
    result_overflow : bool
        Whether the child tried to send more than the server accepts.
    config : ExecutorConfig
        ``min_faces``/``max_vertices`` decide ``no_geometry``/``degenerate``.
    """
    if timed_out:
        message = f"the program did not finish within {timeout_s:g} s and was killed"
        return _result(rid, ExecStatus.TIMEOUT, message), []
    if result_overflow:
        return _result(rid, ExecStatus.EXEC_FAILED, "the program's mesh is too large to return"), []
    frames: list[tuple[dict[str, Any], bytearray]] = []
    try:
        frames = FrameDecoder(max_payload=len(result) + 1).feed(bytes(result))
    except ProtocolError:
        frames = []
    if len(frames) != 1:
        return _result(rid, ExecStatus.EXEC_FAILED, describe_wait_status(wait_status, config)), []
    header, payload = frames[0]
    try:
        return _from_frame(rid, header, payload, config)
    except (ProtocolError, KeyError, ValueError, TypeError, AttributeError, OverflowError) as exc:
        # the frame came from the process that ran untrusted code: a program that escaped
        # the language layer can write any JSON there, and it must cost only its own result
        message = f"the program's result frame is malformed ({type(exc).__name__})"
        return _result(rid, ExecStatus.EXEC_FAILED, message), []


def _from_frame(
    rid: str, header: dict[str, Any], payload: bytearray, config: ExecutorConfig
) -> tuple[dict[str, Any], list[bytes]]:
    """The answer for a child's one result frame; raises on any field of the wrong shape."""
    notes = header.get("diagnostics") or {}
    if not isinstance(notes, dict):
        raise TypeError("diagnostics is not an object")
    diagnostics = {str(k): str(v)[:1000] for k, v in notes.items()}
    for key in ("program_s", "extract_s"):
        if isinstance(header.get(key), int | float):
            diagnostics[key] = f"{header[key]:.6f}"
    extra: dict[str, Any] = {"diagnostics": diagnostics}
    if header.get("outcome") == "exception":
        return _result(rid, ExecStatus.EXEC_FAILED, str(header.get("error"))[:1000], **extra), []
    n_vertices = int(header.get("n_vertices") or 0)
    n_faces = int(header.get("n_faces") or 0)
    if "arrays" not in header:
        if n_vertices > config.max_vertices:
            message = (
                f"the mesh has {n_vertices} vertices; at most {config.max_vertices} are accepted"
            )
            return _result(rid, ExecStatus.DEGENERATE, message, **extra), []
        return _result(rid, ExecStatus.EXEC_FAILED, "the mesh could not be returned", **extra), []
    try:
        arrays = decode_arrays(header["arrays"], payload)
        vertices, faces = arrays["vertices"], arrays["faces"]
        _validate_mesh(vertices, faces)
    except (ProtocolError, KeyError, ValueError) as exc:
        message = f"the program's mesh is malformed ({exc})"
        return _result(rid, ExecStatus.EXEC_FAILED, message, **extra), []
    n_vertices, n_faces = len(vertices), len(faces)
    extra["arrays"] = header["arrays"]  # validated above: forward the bytes unchanged
    blobs = [bytes(payload)]
    if n_faces < config.min_faces:
        message = (
            f"the scene has {n_faces} triangles; at least {config.min_faces} are needed "
            "(did the program create any mesh?)"
        )
        return _result(rid, ExecStatus.NO_GEOMETRY, message, **extra), blobs
    if n_vertices > config.max_vertices:
        message = f"the mesh has {n_vertices} vertices; at most {config.max_vertices} are accepted"
        return _result(rid, ExecStatus.DEGENERATE, message, **extra), blobs
    if not np.isfinite(vertices).all():
        return _result(
            rid, ExecStatus.DEGENERATE, "the mesh has non-finite (nan/inf) coordinates", **extra
        ), blobs
    return _result(rid, ExecStatus.OK, None, **extra), blobs


def _validate_mesh(vertices: np.ndarray, faces: np.ndarray) -> None:
    if vertices.dtype != np.float32 or vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f"vertices must be float32 (n, 3), got {vertices.dtype} {vertices.shape}")
    if faces.dtype != np.int32 or faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must be int32 (m, 3), got {faces.dtype} {faces.shape}")
    if len(faces) and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ValueError("face indices out of range")
