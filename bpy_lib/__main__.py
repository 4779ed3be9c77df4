"""``python -m bpy_lib``: rewrite ``docs/bpy_lib.md`` from the code and print its size."""

from __future__ import annotations

import logging

from bpy_lib.refdoc import DOCS_PATH, estimate_tokens, reference, write_markdown

logging.basicConfig(level=logging.INFO, format="%(message)s")
path = write_markdown(DOCS_PATH)
logging.getLogger("bpy_lib").info("wrote %s (about %d tokens)", path, estimate_tokens(reference()))
