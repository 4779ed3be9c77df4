"""Length-prefixed frames between the executor, its fork server and the server's children.

Plain Python and numpy only (both sides import it). A frame is::

    !II header_length payload_length | header (UTF-8 JSON object) | payload (raw bytes)

The header is small JSON (ids, status, text tails); arrays travel as raw bytes in the payload,
described in the header by ``arrays: [{"name", "dtype", "shape"}, ...]`` in payload order. No
pickled object graphs cross a process boundary, so a hostile child can at worst send a frame
that fails validation here.
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "MAX_HEADER_BYTES",
    "FrameDecoder",
    "ProtocolError",
    "decode_arrays",
    "encode_arrays",
    "encode_frame",
    "frame_complete",
    "recv_frame",
    "send_frame",
]

_PREFIX = struct.Struct("!II")
MAX_HEADER_BYTES = 1 << 20  # 1 MiB of JSON is far more than any honest header
_ALLOWED_DTYPES = frozenset({"<f4", "<i4", "<f8", "<i8"})


class ProtocolError(ValueError):
    """A frame is malformed, too large or describes arrays that do not match its payload."""


def encode_frame(header: Mapping[str, Any], *payloads: bytes | memoryview) -> list[bytes]:
    """The pieces of one frame, ready for ``sendall``/``writev`` in order."""
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    size = sum(len(p) for p in payloads)
    return [_PREFIX.pack(len(head), size), head, *(bytes(p) for p in payloads)]


def send_frame(sock: socket.socket, header: Mapping[str, Any], *payloads: bytes) -> None:
    """Send one frame over a connected stream socket (blocking)."""
    for piece in encode_frame(header, *payloads):
        sock.sendall(piece)


def _recv_exact(sock: socket.socket, size: int) -> bytearray:
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:], size - got)
        if n == 0:
            raise EOFError("the peer closed the connection in the middle of a frame")
        got += n
    return buf


def recv_frame(sock: socket.socket, *, max_payload: int) -> tuple[dict[str, Any], bytearray]:
    """Receive one frame (blocking). Raises :class:`EOFError` when the peer has gone."""
    first = sock.recv(_PREFIX.size)
    if not first:
        raise EOFError("the peer closed the connection")
    prefix = first + bytes(_recv_exact(sock, _PREFIX.size - len(first)))
    head_len, payload_len = _PREFIX.unpack(prefix)
    _check_sizes(head_len, payload_len, max_payload)
    header = _parse_header(_recv_exact(sock, head_len))
    return header, _recv_exact(sock, payload_len)


def frame_complete(buffer: bytes | bytearray) -> bool:
    """True when ``buffer`` holds at least one whole frame (its prefix says how long)."""
    if len(buffer) < _PREFIX.size:
        return False
    head_len, payload_len = _PREFIX.unpack_from(buffer)
    return bool(len(buffer) >= _PREFIX.size + head_len + payload_len)


def _check_sizes(head_len: int, payload_len: int, max_payload: int) -> None:
    if head_len > MAX_HEADER_BYTES:
        raise ProtocolError(f"frame header of {head_len} bytes exceeds {MAX_HEADER_BYTES}")
    if payload_len > max_payload:
        raise ProtocolError(f"frame payload of {payload_len} bytes exceeds {max_payload}")


def _parse_header(raw: bytes | bytearray) -> dict[str, Any]:
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"frame header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise ProtocolError("frame header is not a JSON object")
    return header


class FrameDecoder:
    """Incremental decoder for a non-blocking stream: ``feed(data)`` returns finished frames."""

    def __init__(self, *, max_payload: int) -> None:
        self.max_payload = max_payload
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes received that do not yet form a whole frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[tuple[dict[str, Any], bytearray]]:
        """Append ``data``; return every frame now complete, in order."""
        self._buf += data
        frames = []
        while len(self._buf) >= _PREFIX.size:
            head_len, payload_len = _PREFIX.unpack_from(self._buf)
            _check_sizes(head_len, payload_len, self.max_payload)
            end = _PREFIX.size + head_len + payload_len
            if len(self._buf) < end:
                break
            header = _parse_header(self._buf[_PREFIX.size : _PREFIX.size + head_len])
            payload = self._buf[_PREFIX.size + head_len : end]
            del self._buf[:end]
            frames.append((header, payload))
        return frames


def encode_arrays(
    arrays: Mapping[str, npt.NDArray[Any]],
) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Array specs for a header and their raw little-endian bytes, in the same order."""
    specs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, array in arrays.items():
        contiguous = np.ascontiguousarray(array)
        dtype = contiguous.dtype.newbyteorder("<")
        contiguous = contiguous.astype(dtype, copy=False)
        specs.append({"name": name, "dtype": dtype.str, "shape": list(contiguous.shape)})
        blobs.append(contiguous.tobytes())
    return specs, blobs


def decode_arrays(
    specs: Sequence[Mapping[str, Any]], payload: bytearray, *, offset: int = 0
) -> dict[str, npt.NDArray[Any]]:
    """Rebuild the arrays ``specs`` describes from ``payload`` (views, no copy; writable).

    Raises :class:`ProtocolError` when a spec is malformed or the sizes do not add up.
    """
    out: dict[str, npt.NDArray[Any]] = {}
    position = offset
    for spec in specs:
        try:
            name = str(spec["name"])
            dtype = np.dtype(str(spec["dtype"]))
            shape = tuple(int(s) for s in spec["shape"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"malformed array spec {spec!r}") from exc
        if dtype.str not in _ALLOWED_DTYPES or any(s < 0 for s in shape) or len(shape) > 4:
            raise ProtocolError(f"array spec {spec!r} is not allowed")
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        size = count * dtype.itemsize
        if position + size > len(payload):
            raise ProtocolError(f"array {name!r} runs past the end of the payload")
        out[name] = np.frombuffer(payload, dtype=dtype, count=count, offset=position).reshape(shape)
        position += size
    if position != len(payload):
        raise ProtocolError(f"{len(payload) - position} unexplained payload bytes")
    return out
