"""Run a module (or a script) in a background Blender: ``blender -b --python THIS -- NAME ARGS``.

Inside the Blender application ``sys.executable`` is Blender's bundled Python, which cannot
``import bpy``; the add-on's sandbox (:mod:`addon.background`) therefore starts the fork server
as Blender itself in background mode with this file as its ``--python`` script::

    blender -b --factory-startup --python _server_boot.py -- worker.execution.blender_server --fd 5 ...

Blender's own arguments end at the first ``--``. What follows is the module to run and its
arguments (a name ending in ``.py`` is run as a script). The module then sees exactly its
own arguments in ``sys.argv[1:]``, as under ``python -m``, so its argparse never meets
Blender's. Blender's Python ignores ``PYTHONPATH`` by default; the directories it names (the
add-on's ``vendor/``, set by the sandbox's allow-listed environment) go first on
``sys.path`` here instead.

Plain Python, no imports of the project: it runs before any of them is reachable.
"""

from __future__ import annotations

import os
import runpy
import sys

__all__ = ["main", "target_arguments"]


def target_arguments(argv: list[str]) -> list[str]:
    """What follows the first ``--`` of ``argv``: the module (or script) and its arguments.

    Raises
    ------
    SystemExit
        No ``--``, or nothing after it (a usage error, with the expected form).
    """
    if "--" not in argv:
        raise SystemExit("usage: blender -b --python _server_boot.py -- MODULE [ARGS...]")
    rest = argv[argv.index("--") + 1 :]
    if not rest:
        raise SystemExit("usage: blender -b --python _server_boot.py -- MODULE [ARGS...]")
    return rest


def main(argv: list[str] | None = None) -> None:
    """Put ``PYTHONPATH`` on ``sys.path`` and run the target as ``__main__``."""
    rest = target_arguments(list(sys.argv if argv is None else argv))
    for entry in reversed([p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    target, args = rest[0], rest[1:]
    sys.argv = [target, *args]
    if target.endswith(".py"):
        runpy.run_path(target, run_name="__main__")
    else:
        runpy.run_module(target, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
