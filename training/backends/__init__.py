"""The training backends behind one interface (:class:`~training.backends.base.Backend`).

``local``: torch + transformers + peft in this process (:mod:`training.backends.local`).
``tinker``: the Tinker service through its SDK (:mod:`training.backends.tinker`).
Both are imported lazily: neither torch nor tinker is needed to import this package.
"""

from __future__ import annotations

from typing import Any

from llm3d.config import Config
from training.backends.base import Backend, Completion, Datum, LossFn, StepResult

__all__ = ["Backend", "Completion", "Datum", "LossFn", "StepResult", "make_backend"]


def make_backend(config: Config, *, service_client: Any = None) -> Backend:
    """The backend ``config.training.backend`` names.

    ``training.model_init`` ``tiny`` / ``small`` (local): the random checkpoint is built
    at ``training.base_model`` first when the folder holds none.

    Args:
        config: the whole configuration.
        service_client: Tinker only: a ``tinker.ServiceClient`` (default: a new one, which
            reads ``TINKER_API_KEY``); tests pass a stand-in.
    """
    if config.training.backend == "local":
        from training.backends.local import LocalBackend

        if config.training.model_init != "pretrained":
            from training.tiny import ensure_random_model

            ensure_random_model(
                config.training.base_model, config.training.model_init, seed=config.seed
            )

        return LocalBackend(config.training, seed=config.seed)
    from training.backends.tinker import TinkerBackend

    return TinkerBackend(config.training, seed=config.seed, service_client=service_client)
