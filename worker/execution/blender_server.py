"""The warm fork server: ``python -m worker.execution.blender_server --fd N`` (runs inside Blender).

Started by :class:`worker.execution.executor.Executor`, never by hand. It imports ``bpy`` and ``bpy_lib``
once, empties the scene, drops its network namespace, and then serves frames on the
socket ``--fd``: for each ``run`` request it checks the sandbox policy, forks one child
(:mod:`worker.execution.blender_child`) that runs the program, and answers with one result frame.

The server itself never runs untrusted code; its loop is :class:`worker.execution.fork_server.ForkServer`.
Started as root it first gives up root (:mod:`worker.sandbox.privileges`). When the socket closes (the
executor went away) or on SIGTERM, every child is killed and the server exits.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import gc
import json
import logging
import math
import os
import signal
import socket
import sys
import types

from llm3d.config import ExecutorConfig
from worker.execution.blender_child import ChildRuntime, name_process
from worker.execution.fork_server import ForkServer
from worker.execution.protocol import encode_frame
from worker.sandbox.privileges import capabilities, drop_privileges, others_can_read
from worker.sandbox.seccomp import prepare_filter
from worker.sandbox.verb_guard import guarded_facade

logger = logging.getLogger("llm3d.blender_server")

_CLONE_NEWNET = 0x40000000
SERVER_NAME = b"llm3d-forksrv"


# ----------------------------------------------------------------------------------------
# start-up


def _isolate_network(libc: ctypes.CDLL | None) -> str:
    """Move this server (and so every child) into a new, empty network namespace."""
    if libc is None:
        return "not isolated: libc unavailable"
    if libc.unshare(_CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        return f"not isolated: unshare(CLONE_NEWNET) failed ({os.strerror(err)})"
    return "isolated (empty network namespace)"


def build_runtime(
    config: ExecutorConfig, readable: list[str], *, jailed: bool = False
) -> tuple[ChildRuntime, list[str], dict[str, str]]:
    """Import Blender and bpy_lib, empty the scene, and prepare what children share."""
    import bpy

    import bpy_lib
    from bpy_lib.export import scene_arrays  # the same arrays export_scene() gives programs

    bpy.ops.wm.read_factory_settings(use_empty=True)
    leftover = len(bpy.data.objects)
    if leftover:
        raise RuntimeError(f"the server's scene is not empty after reset ({leftover} objects)")
    facade = guarded_facade(bpy_lib)
    names = list(facade.__all__)
    modules: dict[str, types.ModuleType] = {}
    for name in config.allowed_imports:
        if name == "bpy_lib":
            modules[name] = facade
        elif name in sys.modules or name == "math":
            modules[name] = sys.modules.get(name) or math
        else:
            modules[name] = __import__(name)
    try:
        libc: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
    except OSError:
        libc = None
    name_process(libc, SERVER_NAME)  # ps/top tell the server and its children from other Pythons
    runtime = ChildRuntime(
        allowed_imports=frozenset(config.allowed_imports),
        modules=modules,
        scene_arrays=scene_arrays,
        memory_mb=config.memory_mb,
        cpu_seconds=config.cpu_seconds,
        max_open_files=config.max_open_files,
        max_file_mb=config.max_file_mb,
        max_vertices=config.max_vertices,
        readable=tuple(readable),
        libc=libc,
        seccomp=prepare_filter(),
    )
    info = {"blender": bpy.app.version_string}
    if jailed:
        info["network"] = "isolated (the jail's empty network namespace)"
    elif config.isolate_network:
        info["network"] = _isolate_network(libc)
    else:
        info["network"] = "not isolated (executor.isolate_network is false)"
    # RLIMIT_NPROC is not used: root ignores it, and for other users Blender's worker threads
    # count against it. Each child installs worker.sandbox.seccomp's filter instead.
    info["processes"] = "children may not fork or exec (seccomp filter)"
    return runtime, names, info


def main(argv: list[str] | None = None) -> int:
    """Entry point of the server process."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--fd", type=int, required=True, help="connected socket to serve")
    parser.add_argument("--config-json", required=True, help="ExecutorConfig as JSON")
    parser.add_argument("--readable-json", default="[]", help="paths children may read")
    parser.add_argument("--jailed", action="store_true", help="started inside worker.sandbox.jail")
    parser.add_argument("--allow-unsafe", action="store_true", help="tests only: policy off")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    sock = socket.socket(fileno=args.fd)
    config = ExecutorConfig.model_validate_json(args.config_json)
    readable = [str(p) for p in json.loads(args.readable_json)]
    try:
        user = ""
        if args.jailed:  # the jail shows only world-readable installations: drop before Blender
            user = drop_privileges(config.sandbox_uid, config.sandbox_gid)
        runtime, names, diagnostics = build_runtime(config, readable, jailed=args.jailed)
        if not args.jailed:
            # Python may live where only root can read (/root/.pyenv): then nothing could be
            # imported lazily after the drop. Say so rather than break; the jail has no such gap.
            closed = others_can_read(sys.base_prefix, sys.prefix, *readable)
            if os.geteuid() == 0 and closed is not None:
                user = (
                    f"not dropped: {closed} is closed to other users, so uid "
                    f"{config.sandbox_uid} could not load Python (use executor.jail: bwrap)"
                )
            else:
                user = drop_privileges(config.sandbox_uid, config.sandbox_gid)
        diagnostics["user"] = user
        diagnostics["jail"] = "bubblewrap" if args.jailed else "none"
        held = {k: v for k, v in capabilities().items() if k != "CapBnd" and v}
        # children drop every capability themselves only where there is one to drop
        runtime = dataclasses.replace(runtime, holds_capabilities=os.geteuid() == 0 or bool(held))
    except Exception as exc:
        logger.exception("the fork server could not start")
        with contextlib.suppress(OSError):
            for piece in encode_frame({"op": "hello", "error": f"{type(exc).__name__}: {exc}"}):
                sock.sendall(piece)
        return 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    gc.collect()
    gc.freeze()  # keep the warm heap out of the collector: fewer copy-on-write pages per child
    # Every result carries the sandbox's shortfalls (DESIGN §2: say so and carry on).
    shortfalls = {k: v for k, v in diagnostics.items() if k == "network" and "not" in v}
    server = ForkServer(
        sock, config, runtime, names, allow_unsafe=args.allow_unsafe, diagnostics=shortfalls
    )
    # cheaper forks: one page-table entry per 2 MiB of the warm heap (worker/execution/hugepages.py)
    diagnostics["huge_pages"] = server.recollapse.start().describe()
    hello = {
        "op": "hello",
        "pid": os.getpid(),
        "bpy_lib": names,
        "workdir_root": server.root,
        "diagnostics": diagnostics,
    }
    for piece in encode_frame(hello):
        sock.sendall(piece)
    logger.info("fork server %d ready (%s)", os.getpid(), diagnostics)
    server.serve()
    return 0


def _run() -> None:
    """``python -m`` entry: leave without Blender's exit handlers (they may crash after forks)."""
    code = main()
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    _run()
