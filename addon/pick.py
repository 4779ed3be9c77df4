"""The candidates of the last Generate in the panel, and their meshes for a swap (main thread).

:func:`record` writes each candidate (number, match score, error, program) into
``scene.llm3d.candidates`` for the panel's list and keeps the meshes of those that built in
memory, so that *Use* (:class:`addon.operators.MESH_OT_llm3d_use_candidate`) swaps one in at
once, without running it again. The meshes are not saved in the .blend: after a file loads,
*Use* runs the candidate's program instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from worker.types import ExecResult

from .candidates import Candidate

__all__ = ["cached", "forget", "record", "summary"]

#: The built candidates' meshes of each scene's last Generate: scene name -> number -> result.
_MESHES: dict[str, dict[int, ExecResult]] = {}


def record(
    scene_name: str, settings: Any, candidates: Sequence[Candidate], kept: int, note: str
) -> None:
    """Fill the panel's candidate list (``kept`` is the one in the scene) and keep the meshes."""
    settings.candidates.clear()
    for c in candidates:
        item = settings.candidates.add()
        item.number = c.number
        item.ok = c.built
        item.error = c.error
        item.code = c.code
        item.has_score = c.score is not None
        item.score = c.score if c.score is not None else 0.0
        item.kept = c.number == kept
    settings.candidate_note = note
    _MESHES[scene_name] = {
        c.number: c.result for c in candidates if c.built and c.result is not None
    }


def summary(candidates: Sequence[Candidate], kept: Candidate) -> str:
    """The status line's end: which candidate was kept and why."""
    score = f", match {kept.score:.2f}" if kept.score is not None else ""
    built = sum(c.built for c in candidates)
    return f" Kept candidate {kept.number} of {len(candidates)} ({built} built{score})."


def cached(scene_name: str, number: int) -> ExecResult | None:
    """The mesh of candidate ``number`` of the scene's last Generate, if still in memory."""
    return _MESHES.get(scene_name, {}).get(number)


def forget(scene_name: str | None = None) -> None:
    """Drop the kept meshes of one scene (a new Generate) or of all (a file load)."""
    if scene_name is None:
        _MESHES.clear()
    else:
        _MESHES.pop(scene_name, None)
