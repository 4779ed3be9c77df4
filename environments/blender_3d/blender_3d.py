"""The llm3d verifiers environment: pictures of an object in, a ``bpy_lib`` program out.

Pinned to verifiers 0.1.9.x (``>=0.1.9,<0.2``): the classic ``vf.SingleTurnEnv`` /
``vf.Rubric(funcs, weights, parser)`` / ``vf.Parser`` / ``vf.load_environment(env_id)``
API that tinker-cookbook's verifiers integration pins; 0.4 moved to ``verifiers.v1``.
Never install the ``[rl]`` extra (old torch and vllm).

Load it the verifiers way (the package must be importable as ``blender_3d``: ``pip install
-e environments/blender_3d``)::

    import verifiers as vf
    env = vf.load_environment("blender-3d", eval_dataset_path="data/eval.jsonl",
                              reward_url="http://127.0.0.1:8000")
    results = env.evaluate_sync(client=openai_client, model="Qwen/Qwen2.5-VL-7B-Instruct")

The reward service must be running (``llm3d serve``); the tasks' ground truths and views are
registered with it on load (``register_tasks=True``) unless it already knows them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import verifiers as vf

from .dataset import Blender3DDataset
from .harness import Blender3DHarness
from .parser import Blender3DParser
from .rubric import Blender3DRubric

__all__ = ["ENV_ID", "Blender3DEnvironment", "load_environment"]

logger = logging.getLogger(__name__)

ENV_ID = "blender-3d"


class Blender3DEnvironment(vf.SingleTurnEnv):  # type: ignore[misc]
    """One turn: the prompt (system reference + images + instruction), the model's program.

    Args:
        harness: the reward service client (shared by the rubric).
        train: the training split (``None`` for evaluation only).
        eval: the evaluation split.
        **kwargs: passed to ``vf.SingleTurnEnv`` (``sampling_args``, ``max_workers``, ...).
    """

    def __init__(
        self,
        harness: Blender3DHarness,
        *,
        train: Blender3DDataset | None = None,
        eval: Blender3DDataset | None = None,
        **kwargs: Any,
    ) -> None:
        if train is None and eval is None:
            raise ValueError("Blender3DEnvironment needs a training split, an eval split or both")
        parser = Blender3DParser()
        self.harness = harness
        self.train_split = train
        self.eval_split = eval
        super().__init__(
            dataset=train.to_hf() if train is not None else None,
            eval_dataset=eval.to_hf() if eval is not None else None,
            parser=parser,
            rubric=Blender3DRubric(harness, parser),
            message_type="chat",
            env_id=ENV_ID,
            **kwargs,
        )

    def register_tasks(self, *, replace: bool = False) -> int:
        """Register every split's ground truths with the reward service."""
        count = 0
        for split in (self.train_split, self.eval_split):
            if split is not None:
                count += self.harness.register(split.samples, replace=replace)
        return count


def _default(path: str | Path | None, name: str, data_dir: Path) -> Path | None:
    if path is not None:
        return Path(path)
    # beside the data folder, or where `llm3d data build` writes (data_dir/objects)
    for candidate in (data_dir / f"{name}.jsonl", data_dir / "objects" / f"{name}.jsonl"):
        if candidate.is_file():
            return candidate
    return None


def load_environment(
    dataset_path: str | Path | None = None,
    eval_dataset_path: str | Path | None = None,
    *,
    reward_url: str | None = None,
    token: str | None = None,
    points: int | None = None,
    timeout_s: float | None = None,
    limit: int | None = None,
    register_tasks: bool = True,
    config_path: str | Path | None = None,
    **kwargs: Any,
) -> Blender3DEnvironment:
    """Build the environment (verifiers calls this from ``vf.load_environment``).

    Args:
        dataset_path: training split (JSONL); default ``{data.out_dir}[/objects]/rl.jsonl``.
        eval_dataset_path: eval split; default ``{data.out_dir}[/objects]/eval.jsonl``.
        reward_url: the reward service (default ``training.reward_url`` of the config).
        token: its Bearer token (default env ``LLM3D_API_TOKEN``).
        points: surface samples per scored program (default: the service's setting).
        timeout_s: per-program execution limit (default: the service's setting).
        limit: keep the first ``limit`` tasks of each split.
        register_tasks: register the ground truths with the service now.
        config_path: an llm3d YAML config overriding ``configs/default.yaml``.
        **kwargs: passed to :class:`Blender3DEnvironment` / ``vf.SingleTurnEnv``.
    """
    from llm3d.config import load_config

    config = load_config(config_path)
    data_dir = Path(config.data.out_dir)
    train_path = _default(dataset_path, "rl", data_dir)
    eval_path = _default(eval_dataset_path, "eval", data_dir)
    if train_path is None and eval_path is None:
        raise ValueError(
            f"no split given and neither {data_dir}/rl.jsonl nor {data_dir}/eval.jsonl exists: "
            "pass dataset_path= / eval_dataset_path= (JSONL files from `llm3d data build`)"
        )
    harness = Blender3DHarness(
        reward_url or config.training.reward_url,
        token=token,
        points=points,
        timeout_s=timeout_s,
        max_items=config.api.max_items,
    )
    env = Blender3DEnvironment(
        harness,
        train=Blender3DDataset(train_path, limit=limit) if train_path else None,
        eval=Blender3DDataset(eval_path, limit=limit) if eval_path else None,
        **kwargs,
    )
    if register_tasks:
        registered = env.register_tasks()
        logger.info("blender-3d: %d new tasks registered with %s", registered, harness.base_url)
    return env
