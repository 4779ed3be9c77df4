"""One exception tree for the whole project.

Each class also subclasses the standard exception it stands for, so callers that
catch ``ValueError`` or ``RuntimeError`` keep working, and each one pickles (they
cross process boundaries: fork servers, Celery workers).
"""

from __future__ import annotations


class LLM3DError(Exception):
    """Base class of every error llm3d raises on purpose."""


class ConfigError(LLM3DError, ValueError):
    """The configuration is invalid: an unknown key, a wrong type or a missing file."""


class DatasetError(ConfigError):
    """A dataset file or one of its rows is unusable (the message names the file and row)."""


class SandboxRefusedError(LLM3DError, ValueError):
    """The sandbox policy rejected a program before it ran."""


class ExecutionError(LLM3DError, RuntimeError):
    """The executor itself failed (not the user's program)."""


class InfraError(LLM3DError, RuntimeError):
    """A part of the reward infrastructure failed: never the program's fault."""


class TrainingBackendError(LLM3DError, RuntimeError):
    """A training backend answered what a trainer cannot use (e.g. samples without log-probs)."""


class MeshError(LLM3DError, ValueError):
    """A mesh could not be read or is unusable."""


class BackendUnavailableError(InfraError):
    """The reward service's execution backend (Redis, the Celery workers, Modal) cannot be reached."""

    @classmethod
    def redis(cls, url: str, exc: BaseException) -> BackendUnavailableError:
        """The 503 error of a Redis outage, naming the server (never its password) and what to do."""
        safe = url.split("@")[-1]
        return cls(
            f"Redis at {safe} is unreachable ({type(exc).__name__}: {exc}); the celery backend "
            "cannot queue or collect work until it is back. Retry later."
        )


class UnknownTaskError(LLM3DError, KeyError):
    """A request names a task id (ground truth) the reward service does not know."""

    def __str__(self) -> str:  # KeyError would print the repr of its argument
        return str(self.args[0]) if self.args else "unknown task id"


class RewardServiceError(LLM3DError, RuntimeError):
    """The reward service answered with an error (raised by :class:`llm3d.client.RewardClient`)."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code

    def __reduce__(self) -> tuple[type[RewardServiceError], tuple[str, int | None]]:
        return (type(self), (str(self), self.status_code))
