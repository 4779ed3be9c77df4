"""SFT's periodic evaluation through the evaluation runner (:mod:`training.eval_runner`).

:func:`eval_runner_evaluator` samples the model being trained (either backend) through
:class:`training.policies.BackendPolicy`; it returns the ``evaluator`` that
:class:`~training.sft_trainer.SFTTrainer` calls every ``training.eval_every`` steps: the
held-out split is generated, scored by the reward service and reported by the runner in
``<run>/eval/step-NNNNNN/`` (report.json, report.md, plots), and its overall numbers are
logged beside the training loss (``eval_f_score_mean``, ``eval_execution_rate``, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llm3d.config import Config
from training.backends.base import Backend
from training.data import Example, system_override
from training.policies import BackendPolicy

__all__ = ["eval_runner_evaluator"]


def eval_runner_evaluator(config: Config, split: Path, out_dir: Path) -> Any:
    """An SFT ``evaluator`` running :func:`training.eval_runner.run_eval` on ``split``.

    Samples at the configured temperature, ``k = 1``, the first ``training.eval_limit``
    tasks, ``metrics.train_points`` surface samples (fast; the final evaluation with
    ``llm3d eval`` uses the evaluation setting), no comparison grid.
    """
    from training.eval_runner import EvalSettings, run_eval

    tc = config.training

    def evaluate(backend: Backend, rows: list[Example], step: int) -> dict[str, float]:
        settings = EvalSettings(
            split=split,
            out_dir=out_dir / f"step-{step:06d}",
            k=1,
            limit=tc.eval_limit,
            points=config.metrics.train_points,
            reward_url=tc.reward_url,
            timeout_s=tc.reward_timeout_s,
            grid=False,
        )
        policy = BackendPolicy(
            backend,
            name="training",
            fingerprint=(
                f"training:{backend.name}:step{step}:t{tc.temperature}"
                f":m{tc.max_new_tokens}:s{config.seed}"
            ),
            max_tokens=tc.max_new_tokens,
            temperature=tc.temperature,
            seed=config.seed,
            system=system_override(tc.system_prompt),
        )
        report = run_eval(settings, policy)
        overall = report["results"]["overall"]
        return {
            f"eval_{k}": float(v)
            for k, v in overall.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }

    return evaluate
