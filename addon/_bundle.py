"""Make the libraries bundled into the extension importable (imported first by the package).

The built zip carries ``bpy_lib`` and the parts of ``worker`` (and ``llm3d``) the add-on
needs under ``vendor/`` (``scripts/build_addon.sh`` copies them there). Generated programs
say ``from bpy_lib import *``, and ``bpy_lib`` imports itself by its absolute name, so that
folder goes at the front of ``sys.path``. In a source checkout there is no ``vendor/`` and
the project's own packages are used.
"""

from __future__ import annotations

import sys
from pathlib import Path

VENDOR = Path(__file__).resolve().parent / "vendor"


def add_vendor_path() -> bool:
    """Put ``vendor/`` first on ``sys.path`` when it exists; True when it is there."""
    if not VENDOR.is_dir():
        return False
    entry = str(VENDOR)
    if entry not in sys.path:
        sys.path.insert(0, entry)
    return True


add_vendor_path()
