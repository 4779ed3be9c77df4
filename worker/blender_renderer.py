"""The render server: ``python -m worker.blender_renderer --fd N --config-json JSON`` (runs
Blender: imports ``bpy`` when it starts).

Started by :class:`worker.selection.Renderer`, never by hand. It imports Blender once and then
answers frames (:mod:`worker.execution.protocol`) on the socket ``--fd``: each ``render``
request carries a mesh (``vertices`` ``(n, 3)`` float32, ``faces`` ``(m, 3)`` int32 in the
payload) and a folder; the server renders the views of ``render`` in the configuration into
it with :func:`worker.render.render_views` and answers the paths, or the error.

It renders meshes only, never runs a program: the meshes come from the sandbox's children,
as arrays checked by the protocol. Rendering lives here, not in the process that asked,
because that process may be the API (the ``inline`` backend), which must not import
Blender. When the socket closes (its owner went away) the server exits.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys

from llm3d.config import RenderConfig
from worker.execution.protocol import decode_arrays, recv_frame, send_frame

__all__ = ["MAX_MESH_BYTES", "serve"]

logger = logging.getLogger("llm3d.blender_renderer")

#: The largest mesh a request may carry (vertices and faces together).
MAX_MESH_BYTES = 256 << 20


def serve(sock: socket.socket, config: RenderConfig) -> None:
    """Answer render requests on ``sock`` until it closes."""
    from worker.render import render_views

    send_frame(sock, {"op": "hello", "views": [v.name for v in config.views]})
    while True:
        try:
            header, payload = recv_frame(sock, max_payload=MAX_MESH_BYTES)
        except EOFError:
            return
        rid = header.get("id")
        try:
            arrays = decode_arrays(header.get("arrays") or [], payload)
            paths = render_views(
                arrays["vertices"], arrays["faces"], str(header["out_dir"]), config=config
            )
        except Exception as exc:  # one bad mesh is that request's error, not the server's end
            logger.warning("render %s failed: %s", rid, exc)
            send_frame(sock, {"op": "error", "id": rid, "error": f"{type(exc).__name__}: {exc}"})
            continue
        send_frame(sock, {"op": "rendered", "id": rid, "paths": [str(p) for p in paths]})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fd", type=int, required=True, help="the connected socket to serve")
    parser.add_argument("--config-json", required=True, help="the RenderConfig as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    sock = socket.socket(fileno=args.fd)
    try:
        serve(sock, RenderConfig.model_validate_json(args.config_json))
    finally:
        sock.close()


if __name__ == "__main__":
    main()
