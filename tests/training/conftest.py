"""Fixtures of the training tests: the tiny Qwen2.5-VL, a small chat dataset, configs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llm3d.config import Config, load_config

#: a few short example programs (fast to tokenize and to score)
NAMES = ["stool", "table", "mug", "bowl", "vase", "wine_glass"]


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    """The tiny model's ops are too small to split: 1 thread is ~10x faster on a busy CPU."""
    try:
        import torch
    except ImportError:  # tests that need torch skip themselves
        return
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("peft", reason="the training extra (torch, transformers, peft)")
    from training.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.data import write_example_dataset

    return write_example_dataset(tmp_path_factory.mktemp("data"), names=NAMES)


@pytest.fixture(scope="session")
def reward_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``llm3d serve`` on the inline backend (real Blender execution), on a free port."""
    from tests.api.farm import start_farm

    farm = start_farm("inline", tmp_path_factory.mktemp("farm"))
    yield farm.url
    farm.stop()


def make_config(tiny: Path, tmp: Path, **training: Any) -> Config:
    """The tiny model on CPU, no checkpointing, small batches; ``training`` overrides."""
    values: dict[str, Any] = {
        "backend": "local",
        "base_model": str(tiny),
        "device": "cpu",
        "gradient_checkpointing": False,
        "batch_size": 2,
        "micro_batch_size": 4,
        "learning_rate": 5e-3,
        "save_every": 0,
        "eval_every": 0,
        "max_new_tokens": 24,
        "run_name": "test",
    }
    values.update(training)
    return load_config(environ={}, seed=0, paths={"runs_dir": str(tmp)}, training=values)
