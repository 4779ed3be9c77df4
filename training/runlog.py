"""What a training run leaves behind: per-step JSONL metrics, optional W&B, curve PNGs, state.

A run folder (``paths.runs_dir/<run_name>/``) holds ``metrics.jsonl`` (one object per
step, ``"kind": "train"`` or ``"eval"``), ``checkpoints/step-NNNNNN/`` (the backend's
weights and optimizer, ``trainer_state.json``) and the curve PNGs.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from llm3d.exceptions import ConfigError

__all__ = [
    "RunLog",
    "latest_checkpoint",
    "plot_curves",
    "read_metrics",
    "read_state",
    "write_state",
]

logger = logging.getLogger(__name__)

STATE_FILE = "trainer_state.json"


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class RunLog:
    """Append-only per-step metrics (JSONL), mirrored to Weights & Biases when configured.

    Args:
        run_dir: the run folder (created).
        wandb_project: a W&B project name, or None for no W&B.
        config: the run's configuration, stored with the W&B run.
        resume_step: on resume, lines of steps after this one are dropped first, so the
            log reads as one uninterrupted run.
    """

    def __init__(
        self,
        run_dir: Path,
        *,
        wandb_project: str | None = None,
        config: Mapping[str, Any] | None = None,
        resume_step: int | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / "metrics.jsonl"
        if resume_step is not None and self.path.exists():
            kept = [r for r in read_metrics(self.path) if int(r.get("step", 0)) <= resume_step]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
        elif resume_step is None and self.path.exists():
            self.path.unlink()
        self._wandb: Any = None
        if wandb_project:
            try:
                wandb: Any = importlib.import_module("wandb")
            except ImportError as exc:
                raise ConfigError(
                    "training.wandb_project is set but wandb is not installed "
                    "(pip install wandb, or set it to null)"
                ) from exc
            self._wandb = wandb.init(
                project=wandb_project,
                name=self.run_dir.name,
                config=dict(config or {}),
                resume="allow",
            )

    def log(self, record: Mapping[str, Any]) -> None:
        """Write one record (must contain ``step``)."""
        row = {k: _clean(v) for k, v in record.items()}
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
        if self._wandb is not None:
            numbers = {k: v for k, v in row.items() if isinstance(v, int | float) and k != "step"}
            prefix = "" if row.get("kind", "train") == "train" else f"{row['kind']}/"
            self._wandb.log({prefix + k: v for k, v in numbers.items()}, step=int(row["step"]))

    def close(self) -> None:
        if self._wandb is not None:
            self._wandb.finish()


def read_metrics(path: Path, kind: str | None = None) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` (of one ``kind`` when given)."""
    rows = [
        json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line
    ]
    return [r for r in rows if kind is None or r.get("kind", "train") == kind]


def plot_curves(
    rows: Sequence[Mapping[str, Any]],
    keys: Sequence[str],
    out: Path,
    *,
    title: str,
) -> Path | None:
    """A PNG of ``keys`` against ``step`` (matplotlib, headless); None when nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {
        key: [(r["step"], r[key]) for r in rows if isinstance(r.get(key), int | float)]
        for key in keys
    }
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None
    fig, axes = plt.subplots(len(series), 1, figsize=(7, 2.4 * len(series)), squeeze=False)
    for ax, (key, points) in zip(axes[:, 0], series.items(), strict=True):
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, marker="o" if len(xs) < 40 else None, linewidth=1.5)
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    axes[0, 0].set_title(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def write_state(checkpoint_dir: Path, state: Mapping[str, Any]) -> Path:
    """Write ``trainer_state.json`` beside the backend's files."""
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    path = checkpoint_dir / STATE_FILE
    path.write_text(json.dumps(dict(state), indent=2), encoding="utf-8")
    return path


def read_state(checkpoint: Path) -> dict[str, Any]:
    """The trainer state of a checkpoint folder (or of its ``trainer_state.json``)."""
    path = checkpoint if checkpoint.name == STATE_FILE else checkpoint / STATE_FILE
    if not path.is_file():
        raise ConfigError(f"not a checkpoint: {checkpoint} (no {STATE_FILE})")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest ``checkpoints/step-*`` folder of a run that has a trainer state."""
    found = sorted((run_dir / "checkpoints").glob(f"step-*/{STATE_FILE}"))
    return found[-1].parent if found else None
