"""The loop SFT and GRPO share (training/loop.py): cadence, checkpoints, resume, logs.

First with a stand-in method and backend (no torch: the loop's own rules), then both real
methods on the tiny model: a run that dies mid-way resumes from its last checkpoint at
the right step and ends where an uninterrupted run ends.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from llm3d.exceptions import ConfigError
from tests.training.conftest import make_config
from training.loop import Curve, Trainer
from training.runlog import latest_checkpoint, read_metrics, read_state


class CountingMethod:
    """A method whose batch is its step and whose loss is 1 / (step + 1)."""

    kind = "count"
    title = "Count"
    batch_seconds = "seconds_batch"
    curves = (Curve("train", ("loss",), "loss.png", "loss"),)

    def __init__(self, eval_every: int = 0, total: int = 5) -> None:
        self.eval_every = eval_every
        self.total = total
        self.batches: list[int] = []
        self.restored: dict[str, Any] | None = None

    def total_steps(self) -> int:
        return self.total

    def batch(self, step: int) -> int:
        self.batches.append(step)
        return step

    def learn(self, batch: int, learning_rate: float) -> dict[str, Any]:
        return {"loss": 1.0 / (batch + 1), "lr_seen": learning_rate}

    def evaluate(self, step: int) -> dict[str, Any] | None:
        return {"eval_step": step}

    def describe(self, record: Mapping[str, Any]) -> str:
        return f"loss {record['loss']:.2f}"

    def state(self) -> dict[str, Any]:
        return {"extra": "kept"}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.restored = dict(state)


class FolderBackend:
    """Saves a file holding how many times it was saved; load records what it read."""

    name = "folder"

    def __init__(self) -> None:
        self.saves = 0
        self.loaded: list[tuple[str, bool]] = []

    def save(self, directory: Path, name: str) -> str:
        self.saves += 1
        path = directory / name
        path.mkdir(parents=True, exist_ok=True)
        (path / "weights.txt").write_text(str(self.saves))
        return str(path)

    def load(self, ref: str, *, optimizer: bool = True) -> None:
        self.loaded.append((ref, optimizer))


def _trainer(tmp_path: Path, method: CountingMethod, **training: Any) -> Trainer[int]:
    config = make_config(Path("unused"), tmp_path, **training)
    return Trainer(config, FolderBackend(), tmp_path / "run", method)  # type: ignore[arg-type]


def test_checkpoint_cadence_contents_and_evaluations(tmp_path: Path) -> None:
    method = CountingMethod(eval_every=2, total=5)
    trainer = _trainer(tmp_path, method, save_every=2)
    records = trainer.train(progress=False)

    assert [r["step"] for r in records] == [1, 2, 3, 4, 5]
    assert method.batches == [0, 1, 2, 3, 4]
    assert all(r["kind"] == "train" and r["seconds"] >= r["seconds_batch"] for r in records)
    # every save_every steps, and the last step
    saved = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert saved == ["step-000002", "step-000004", "step-000005"]
    state = read_state(tmp_path / "run" / "checkpoints" / "step-000004")
    ref = str(tmp_path / "run" / "checkpoints" / "step-000004" / "model")
    assert state == {
        "trainer": "count",
        "step": 4,
        "backend": "folder",
        "ref": ref,
        "seed": 0,
        "extra": "kept",
    }
    # evaluations every eval_every steps, and once more at the end
    log = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [(r["kind"], r["step"]) for r in log] == [
        ("train", 1),
        ("train", 2),
        ("eval", 2),
        ("train", 3),
        ("train", 4),
        ("eval", 4),
        ("train", 5),
        ("eval", 5),
    ]
    assert (tmp_path / "run" / "loss.png").stat().st_size > 1000


def test_resume_continues_at_the_checkpoints_step_and_cuts_the_log(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, CountingMethod(total=6), save_every=2)
    trainer.train(steps=5, progress=False)  # checkpoints 2, 4, 5

    method = CountingMethod(total=6)
    resumed = _trainer(tmp_path, method, save_every=2)
    checkpoint = tmp_path / "run" / "checkpoints" / "step-000004"
    records = resumed.train(resume=checkpoint, progress=False)

    assert resumed.backend.loaded == [(str(checkpoint / "model"), True)]  # type: ignore[attr-defined]
    assert method.restored is not None and method.restored["extra"] == "kept"
    assert method.batches == [4, 5]
    assert [r["step"] for r in records] == [5, 6]
    steps = [r["step"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl", "train")]
    assert steps == [1, 2, 3, 4, 5, 6], "step 5 of the first run was dropped, not repeated"


def test_resume_refuses_another_methods_checkpoint_but_init_from_takes_its_weights(
    tmp_path: Path,
) -> None:
    first = _trainer(tmp_path, CountingMethod(total=2))
    first.train(progress=False)
    checkpoint = latest_checkpoint(tmp_path / "run")
    assert checkpoint is not None
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    state["trainer"] = "sft"
    (checkpoint / "trainer_state.json").write_text(json.dumps(state))

    other = _trainer(tmp_path, CountingMethod(total=2))
    with pytest.raises(ConfigError, match="--init-from"):
        other.resume(checkpoint)
    other.init_from(checkpoint)
    assert other.backend.loaded == [(state["ref"], False)]  # type: ignore[attr-defined]
    assert other.step == 0, "init_from starts a new run"


# ---------------------------------------------------------------------- both real methods


class CrashedError(Exception):
    """Stands for a crash (lost machine, out of memory) in the middle of a step."""


def _crash_at_update(backend: Any, update: int) -> None:
    """Make the backend's ``update``-th optimizer step raise, once."""
    real = backend.optim_step
    calls = {"n": 0}

    def optim_step(learning_rate: float) -> dict[str, float]:
        calls["n"] += 1
        if calls["n"] == update:
            raise CrashedError
        result: dict[str, float] = real(learning_rate)
        return result

    backend.optim_step = optim_step


def _sft(config: Any, rows: list[Any], run_dir: Path) -> Any:
    from training.backends.local import LocalBackend
    from training.sft_trainer import SFTTrainer

    return SFTTrainer(config, LocalBackend(config.training), rows, run_dir)


def _grpo(config: Any, rows: list[Any], run_dir: Path) -> Any:
    from tests.training.test_rl import FakeScorer
    from training.backends.local import LocalBackend
    from training.rl_trainer import GRPOTrainer

    return GRPOTrainer(config, LocalBackend(config.training), rows, FakeScorer(), run_dir)


@pytest.mark.parametrize("build", [_sft, _grpo], ids=["sft", "grpo"])
def test_a_crashed_run_resumes_from_its_last_checkpoint_at_the_right_step(
    build: Any, tiny_model: Path, dataset: Path, tmp_path: Path
) -> None:
    from training.data import load_examples

    rows = load_examples(dataset)
    config = make_config(
        tiny_model,
        tmp_path,
        save_every=2,
        sft_max_steps=4,
        sft_epochs=4,
        rl_steps=4,
        group_size=4,
        max_new_tokens=16,
    )
    straight = build(config, rows, tmp_path / "straight").train(progress=False)
    # GRPO steps without signal make no update; the fake rewards must give some
    updates = [r for r in straight if r["loss"] is not None]
    assert len(updates) >= 3

    crashing = build(config, rows, tmp_path / "run")
    step_of_third_update = updates[2]["step"]
    _crash_at_update(crashing.backend, 3)
    with pytest.raises(CrashedError):
        crashing.train(progress=False)
    logged = [r["step"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl", "train")]
    assert logged == list(range(1, step_of_third_update))

    checkpoint = latest_checkpoint(tmp_path / "run")
    assert checkpoint is not None
    last_saved = (step_of_third_update - 1) // 2 * 2
    assert checkpoint.name == f"step-{last_saved:06d}"
    state = read_state(checkpoint)
    assert state["step"] == last_saved and state["backend"] == "local"
    assert state["trainer"] == ("sft" if build is _sft else "rl")
    saved = Path(state["ref"])
    assert {"adapter_model.safetensors", "adapter_config.json", "optimizer.pt"} <= {
        p.name for p in saved.iterdir()
    }

    resumed = build(config, rows, tmp_path / "run")
    rest = resumed.train(resume=checkpoint, progress=False)
    assert [r["step"] for r in rest] == list(range(last_saved + 1, 5))
    assert [r["loss"] for r in rest] == [r["loss"] for r in straight[last_saved:]]
    steps = [r["step"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl", "train")]
    assert steps == [1, 2, 3, 4]
    final = latest_checkpoint(tmp_path / "run")
    assert final is not None and final.name == "step-000004"


def test_learning_rate_schedule_warms_up_decays_to_its_floor_and_survives_resume(
    tmp_path: Path,
) -> None:
    settings = {"learning_rate": 1e-3, "warmup_steps": 2, "lr_min_ratio": 0.1}
    cosine = _trainer(tmp_path / "a", CountingMethod(total=6), lr_schedule="cosine", **settings)
    lrs = [r["lr_seen"] for r in cosine.train(progress=False)]
    assert lrs[:2] == pytest.approx([5e-4, 1e-3])  # linear warmup, step 0 already moves
    assert lrs[2] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-4)  # peak -> floor
    assert all(a > b for a, b in itertools.pairwise(lrs[2:])), lrs
    assert lrs[3] > 5.5e-4, "cosine stays above the linear decay in its first half"

    linear = _trainer(tmp_path / "b", CountingMethod(total=6), lr_schedule="linear", **settings)
    assert [r["lr_seen"] for r in linear.train(progress=False)][2:] == pytest.approx(
        [1e-3, 7e-4, 4e-4, 1e-4]
    )
    constant = _trainer(tmp_path / "c", CountingMethod(total=4), learning_rate=2e-4)
    records = constant.train(progress=False)
    assert [r["lr_seen"] for r in records] == [2e-4] * 4
    assert [r["learning_rate"] for r in records] == [2e-4] * 4  # the run log records it

    # a run stopped at step 3 and resumed takes the same rates as one that never stopped
    first = _trainer(
        tmp_path / "d", CountingMethod(total=6), lr_schedule="cosine", save_every=3, **settings
    )
    first.train(steps=3, progress=False)
    again = _trainer(
        tmp_path / "d", CountingMethod(total=6), lr_schedule="cosine", save_every=3, **settings
    )
    rest = again.train(
        resume=tmp_path / "d" / "run" / "checkpoints" / "step-000003", progress=False
    )
    assert [r["lr_seen"] for r in rest] == pytest.approx(lrs[3:])
