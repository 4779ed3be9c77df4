"""The views a model is given, made as the dataset builder makes them: a program run in the
sandbox and its mesh rendered from the configured cameras (PNG bytes, camera order)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from llm3d.config import Config


def program_views(code: str, config: Config) -> list[bytes]:
    from worker.execution.executor import Executor
    from worker.selection import Renderer

    renderer = Renderer(config.render)
    try:
        with Executor(config.executor) as executor, tempfile.TemporaryDirectory() as tmp:
            result = executor.run(code)
            assert result.status == "ok", result.error
            return [
                p.read_bytes() for p in renderer.render(result.vertices, result.faces, Path(tmp))
            ]
    finally:
        renderer.close()
