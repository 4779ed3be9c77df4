"""Fixtures of the executor tests: warm fork servers shared per session (each costs ~1 s)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from llm3d.config import ExecutorConfig

CUBE = "from bpy_lib import *\nbox(size=[1, 1, 1])\nexport_scene()\n"


def _blender_available() -> bool:
    try:
        import importlib.util

        return importlib.util.find_spec("bpy") is not None
    except (ImportError, ValueError):
        return False


@pytest.fixture(scope="session")
def executor_config() -> ExecutorConfig:
    """The default limits, with two children per server and a short default timeout."""
    return ExecutorConfig(timeout_s=20.0, children_per_server=2)


@pytest.fixture(scope="session")
def executor(executor_config: ExecutorConfig) -> Iterator[object]:
    """One warm fork server with the policy on, shared by the whole session."""
    if not _blender_available():
        pytest.skip("bpy is not installed")
    from worker.execution.executor import Executor

    with Executor(executor_config) as ex:
        yield ex


@pytest.fixture(scope="session")
def unsafe_executor(executor_config: ExecutorConfig) -> Iterator[object]:
    """A server with the policy OFF and NO jail (tests only): programs may import os/ctypes
    to attack each layer behind the policy on its own, as if the policy and the jail had
    both fallen (privileges, rlimits, Landlock, seccomp, network namespace, crashes)."""
    if not _blender_available():
        pytest.skip("bpy is not installed")
    from worker.execution.executor import Executor

    with Executor(executor_config.model_copy(update={"jail": "none"}), policy=False) as ex:
        yield ex


@pytest.fixture(scope="session")
def jailed_unsafe_executor(executor_config: ExecutorConfig) -> Iterator[object]:
    """A server with the policy OFF inside the bubblewrap jail (tests only): attacks on the
    jail itself, as if the language layer had fallen. Skipped where bubblewrap cannot run."""
    if not _blender_available():
        pytest.skip("bpy is not installed")
    from worker.execution.executor import Executor

    try:
        ex = Executor(executor_config.model_copy(update={"jail": "bwrap"}), policy=False)
        ex.start()
    except RuntimeError as exc:
        pytest.skip(f"no bubblewrap jail here: {exc}")
    with ex:
        yield ex
