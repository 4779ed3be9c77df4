"""Shared fixtures of the whole suite."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _no_llm3d_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests start from a clean configuration: no LLM3D_ variable leaks in from the shell."""
    for name in list(os.environ):
        if name.upper().startswith("LLM3D_"):
            monkeypatch.delenv(name)
    yield
