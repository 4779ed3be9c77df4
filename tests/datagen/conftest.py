"""Fixtures of the data pipeline tests: one small part run shared by the session."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

from llm3d.config import DataConfig, ExecutorConfig


def blender_available() -> bool:
    """True when the bpy wheel is importable."""
    return importlib.util.find_spec("bpy") is not None


@pytest.fixture(scope="session")
def small_data() -> DataConfig:
    """Small shards and in-flight window so a 30-sample run writes several shards."""
    return DataConfig(shard_size=12, in_flight=8, workers=2, program_timeout_s=30.0)


@pytest.fixture(scope="session")
def exec_config() -> ExecutorConfig:
    return ExecutorConfig(timeout_s=30.0, children_per_server=2)


@pytest.fixture(scope="session")
def part_run(
    tmp_path_factory: pytest.TempPathFactory, small_data: DataConfig, exec_config: ExecutorConfig
) -> Iterator[tuple[Path, object]]:
    """30 kept part samples (seed 7), generated once for the session."""
    if not blender_available():
        pytest.skip("bpy is not installed")
    from datagen.part_generator import generate_parts

    out = tmp_path_factory.mktemp("parts")
    summary = generate_parts(
        out, 30, seed=7, data=small_data, executor=exec_config, show_progress=False
    )
    yield out, summary
