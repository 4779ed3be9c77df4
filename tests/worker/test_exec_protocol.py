"""Frames and the classification of a child's leftovers, without Blender.

The result frame comes from a process that ran untrusted code, so these tests feed the
server's classifier what a broken or hostile child could send.
"""

from __future__ import annotations

import os
import signal
import socket
import struct

import numpy as np
import pytest

from llm3d.config import ExecutorConfig
from llm3d.schemas import ExecStatus
from worker.execution.outcome import classify_child
from worker.execution.protocol import (
    FrameDecoder,
    ProtocolError,
    decode_arrays,
    encode_arrays,
    encode_frame,
    frame_complete,
    recv_frame,
    send_frame,
)

CONFIG = ExecutorConfig()
CUBE_V = np.array(
    [[x, y, z] for x in (0.0, 1.0) for y in (0.0, 1.0) for z in (0.0, 1.0)], dtype=np.float32
)
CUBE_F = np.array(
    [
        [0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
        [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3],
    ],
    dtype=np.int32,
)  # fmt: skip


def child_frame(header: dict[str, object], **arrays: np.ndarray) -> bytes:
    specs, blobs = encode_arrays(arrays)
    if arrays:
        header = {**header, "arrays": specs}
    return b"".join(encode_frame(header, *blobs))


def classify(result: bytes, *, wait_status: int = 0, timed_out: bool = False):  # type: ignore[no-untyped-def]
    return classify_child(
        "r1",
        wait_status=wait_status,
        timed_out=timed_out,
        timeout_s=2.0,
        result=result,
        result_overflow=False,
        config=CONFIG,
    )


def test_frames_round_trip_over_a_socket_and_incrementally() -> None:
    a, b = socket.socketpair()
    with a, b:
        send_frame(a, {"op": "run", "id": "x"}, b"code bytes")
        header, payload = recv_frame(b, max_payload=1 << 20)
    assert header == {"op": "run", "id": "x"} and payload == b"code bytes"

    raw = b"".join(encode_frame({"n": 1}, b"abc")) + b"".join(encode_frame({"n": 2}))
    decoder = FrameDecoder(max_payload=100)
    frames = []
    for i in range(len(raw)):  # byte by byte: frames come out whole and in order
        frames += decoder.feed(raw[i : i + 1])
    assert [(h["n"], bytes(p)) for h, p in frames] == [(1, b"abc"), (2, b"")]
    assert decoder.pending == 0
    assert not frame_complete(raw[:5]) and frame_complete(raw)


def test_decoder_refuses_oversized_or_non_json_frames() -> None:
    with pytest.raises(ProtocolError, match="payload"):
        FrameDecoder(max_payload=10).feed(struct.pack("!II", 2, 11) + b"{}")
    with pytest.raises(ProtocolError, match="header"):
        FrameDecoder(max_payload=10).feed(struct.pack("!II", 1 << 30, 0))
    with pytest.raises(ProtocolError, match="JSON"):
        FrameDecoder(max_payload=10).feed(struct.pack("!II", 3, 0) + b"{x}")
    with pytest.raises(ProtocolError, match="object"):
        FrameDecoder(max_payload=10).feed(struct.pack("!II", 2, 0) + b"[]")


def test_arrays_round_trip_as_raw_bytes() -> None:
    specs, blobs = encode_arrays({"vertices": CUBE_V, "faces": CUBE_F})
    payload = bytearray(b"".join(blobs))
    arrays = decode_arrays(specs, payload)
    np.testing.assert_array_equal(arrays["vertices"], CUBE_V)
    np.testing.assert_array_equal(arrays["faces"], CUBE_F)
    assert arrays["vertices"].flags.writeable


@pytest.mark.parametrize(
    "specs",
    [
        [{"name": "v", "dtype": "|O", "shape": [1]}],  # object arrays would unpickle
        [{"name": "v", "dtype": "<f4", "shape": [-1, 3]}],
        [{"name": "v", "dtype": "<f4", "shape": [100, 3]}],  # runs past the payload
        [{"name": "v", "dtype": "<f4"}],
    ],
)
def test_hostile_array_specs_are_refused(specs: list[dict[str, object]]) -> None:
    with pytest.raises(ProtocolError):
        decode_arrays(specs, bytearray(12))


def test_ok_mesh_is_ok_and_forwarded_unchanged() -> None:
    header, blobs = classify(
        child_frame({"outcome": "ok", "program_s": 0.01}, vertices=CUBE_V, faces=CUBE_F)
    )
    assert header["status"] == "ok" and header["error"] is None
    arrays = decode_arrays(header["arrays"], bytearray(b"".join(blobs)))
    np.testing.assert_array_equal(arrays["faces"], CUBE_F)
    assert header["diagnostics"]["program_s"] == "0.010000"


@pytest.mark.parametrize(
    ("vertices", "faces", "status", "error_part"),
    [
        (CUBE_V, CUBE_F[:3], ExecStatus.NO_GEOMETRY, "3 triangles"),
        (CUBE_V * np.float32(np.nan), CUBE_F, ExecStatus.DEGENERATE, "non-finite"),
        (CUBE_V, CUBE_F + 100, ExecStatus.EXEC_FAILED, "out of range"),
        (CUBE_V.astype(np.float64), CUBE_F, ExecStatus.EXEC_FAILED, "float32"),
        (CUBE_V, CUBE_F.reshape(-1, 2), ExecStatus.EXEC_FAILED, "int32 (m, 3)"),
    ],
    ids=["few-faces", "nan", "bad-index", "wrong-dtype", "wrong-shape"],
)
def test_mesh_gates_and_malformed_meshes(
    vertices: np.ndarray, faces: np.ndarray, status: ExecStatus, error_part: str
) -> None:
    header, _ = classify(child_frame({"outcome": "ok"}, vertices=vertices, faces=faces))
    assert header["status"] == status.value
    assert error_part in header["error"]


def test_too_many_vertices_is_degenerate_without_arrays() -> None:
    header, blobs = classify(child_frame({"outcome": "ok", "n_vertices": 100_001, "n_faces": 9}))
    assert header["status"] == "degenerate" and "100001 vertices" in header["error"]
    assert blobs == []


def test_exception_outcome_keeps_the_childs_error_line() -> None:
    header, _ = classify(child_frame({"outcome": "exception", "error": "KeyError: 'x' (line 4)"}))
    assert (header["status"], header["error"]) == ("exec_failed", "KeyError: 'x' (line 4)")


def test_timeout_wins_over_anything_the_child_wrote() -> None:
    frame = child_frame({"outcome": "ok"}, vertices=CUBE_V, faces=CUBE_F)
    header, _ = classify(frame, timed_out=True, wait_status=signal.SIGKILL)
    assert header["status"] == "timeout" and "2 s" in header["error"]


@pytest.mark.parametrize(
    ("wait_status", "error_part"),
    [
        (signal.SIGSEGV, "segmentation fault"),
        (signal.SIGXCPU, "CPU time"),
        (signal.SIGKILL, "killed"),
        (3 << 8, "exit status 3"),
    ],
)
def test_a_child_without_result_is_exec_failed_with_its_cause(
    wait_status: int, error_part: str
) -> None:
    assert os.WIFSIGNALED(wait_status) or os.WIFEXITED(wait_status)
    for garbage in (b"", b"\x00\x00\x00\x05{", b"not a frame at all"):
        header, _ = classify(garbage, wait_status=wait_status)
        assert header["status"] == "exec_failed"
        assert error_part in header["error"]
