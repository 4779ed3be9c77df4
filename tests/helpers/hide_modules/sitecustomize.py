"""Make the modules named in ``$HIDE_MODULES`` (comma-separated) unimportable in this process.

Put this directory on ``PYTHONPATH`` to start a process (a Celery worker, a fresh venv's
Python) as if those packages were missing from its environment: a real process with a real
missing dependency, which is how an image that forgot a package fails.
"""

import os
import sys
from importlib.abc import MetaPathFinder

_HIDDEN = {name for name in os.environ.get("HIDE_MODULES", "").split(",") if name}


class _Hide(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):  # type: ignore[no-untyped-def]
        if name.partition(".")[0] in _HIDDEN:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


if _HIDDEN:
    sys.meta_path.insert(0, _Hide())
