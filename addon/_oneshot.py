"""Run one program in a Blender of its own (the sandbox's fallback where there is no fork server).

``python _oneshot.py RUN_DIR OPTIONS_JSON`` with the ``bpy`` wheel, or
``blender -b --factory-startup --python _server_boot.py -- _oneshot.py RUN_DIR OPTIONS_JSON``
with the Blender application. Started by :class:`addon.background.Sandbox` on platforms where
the fork server cannot work (Windows and macOS have no ``pidfd``/Linux namespaces): one
process per program, killed with its process group at the time limit.

The program is ``RUN_DIR/program.py``. It passes the reward farm's policy and runs with its safe
builtins and guarded ``bpy_lib`` verbs, like a fork-server child. What comes back is written to
``RUN_DIR``: ``result.json`` (``status``, ``error``, ``program_s``) and, on success,
``vertices.npy``/``faces.npy`` (read back with ``allow_pickle=False``). ``RUN_DIR/started``
appears once Blender is imported, so the time limit counts the program, not the start-up.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _run(run_dir: Path, options: dict[str, Any]) -> dict[str, Any]:
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    import bpy_lib
    from bpy_lib.export import scene_arrays
    from worker.sandbox.policy import check_policy, restricted_builtins
    from worker.sandbox.verb_guard import guarded_facade

    (run_dir / "started").write_text("")
    code = (run_dir / "program.py").read_text(encoding="utf-8", errors="replace")
    names = [str(n) for n in bpy_lib.__all__]
    if not options.get("policy", True):  # tests only: a program that escaped the policy
        return _execute(run_dir, code, {"__name__": "__main__"}, scene_arrays)
    verdict = check_policy(
        code,
        options["allowed_imports"],
        module_names={"bpy_lib": names},
        max_code_bytes=int(options["max_code_bytes"]),
    )
    if not verdict.imports_bpy_lib:
        error = "the program does not import bpy_lib; start with 'from bpy_lib import *'"
        return {"status": "empty", "error": error}
    if not verdict.ok:
        status = "exec_failed" if verdict.rule == "syntax" else "refused"
        return {"status": status, "error": verdict.describe()}
    facade = guarded_facade(bpy_lib)  # the fork server's facade: plain values in and out
    namespace: dict[str, Any] = {
        "__name__": "__main__",
        "__builtins__": restricted_builtins({"bpy_lib": facade, "math": math}),
    }
    return _execute(run_dir, code, namespace, scene_arrays)


def _execute(
    run_dir: Path, code: str, namespace: dict[str, Any], scene_arrays: Any
) -> dict[str, Any]:
    import numpy as np

    from llm3d.program import PROGRAM_FILENAME, describe_error

    start = time.perf_counter()
    try:
        exec(compile(code, PROGRAM_FILENAME, "exec", dont_inherit=True), namespace)
    except BaseException as exc:  # the program's failure, whatever it is, is its result
        return {"status": "exec_failed", "error": describe_error(exc)}
    program_s = time.perf_counter() - start
    vertices, faces = scene_arrays()
    np.save(run_dir / "vertices.npy", np.asarray(vertices, dtype=np.float32).reshape(-1, 3))
    np.save(run_dir / "faces.npy", np.asarray(faces, dtype=np.int32).reshape(-1, 3))
    return {"status": "ok", "error": None, "program_s": program_s}


def main() -> None:
    """Run ``RUN_DIR/program.py`` and write ``RUN_DIR/result.json``; leave without Blender's exit."""
    run_dir, options = Path(sys.argv[1]), json.loads(sys.argv[2])
    code = 0
    try:
        result = _run(run_dir, options)
        partial = run_dir / "result.json.part"
        partial.write_text(json.dumps(result), encoding="utf-8")
        partial.replace(run_dir / "result.json")
    except BaseException as exc:  # reported through the exit status and stderr
        sys.stderr.write(f"llm3d one-shot runner failed: {type(exc).__name__}: {exc}\n")
        code = 70
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
