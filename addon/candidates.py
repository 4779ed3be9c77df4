"""Several candidates for one Generate, the best kept (worker thread; no Blender data here).

With *Candidates* N > 1 a Generate asks for N answers (:meth:`addon.client.ChatClient.complete_n`:
the ``n`` parameter, else one request each; not streamed), runs each program in the sandbox
under the same time limit (each in a fork child of its own: its own empty scene), sends a
failed one back to the model with its error as often as *Repair Attempts* allows (the repair
loop, per candidate), then renders every candidate that built from the training renders'
cameras and scores it against the reference images with :mod:`worker.render_match`, best-of-N's
own match (silhouette IoU and edges). The rendering and matching run in a background Blender
(``_render_match.py``: our code, the meshes in, the numbers out), so the artist's Blender never
renders. :func:`choose` keeps the best match; where nothing can be matched (a photo without a
plain background, no images) it keeps the first candidate that builds, and the note says why.
"""

from __future__ import annotations

import json
import logging
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llm3d.schemas import ExecStatus
from worker.sandbox.jail import server_environment
from worker.types import ExecResult

from .background import (
    ADDON_DIR,
    CANCEL_POLL_S,
    STARTUP_TIMEOUT_S,
    Sandbox,
    code_paths,
    kill_tree,
    script_runner,
    start_background,
)
from .client import ChatClient, EndpointError, extract_code, repair_messages
from .runner import describe_result
from .streaming import StreamCancelledError, StreamState

__all__ = ["RENDER_MATCH", "Candidate", "choose", "generate_candidates", "render_and_match"]

logger = logging.getLogger(__name__)

#: The background Blender's script that renders and scores the candidates.
RENDER_MATCH = ADDON_DIR / "_render_match.py"
#: Pixels on the longer side of the images compared (the training renders' resolution).
MATCH_SIZE = 256
#: Seconds the background Blender may spend on each candidate (four views and the match).
RENDER_S_PER_CANDIDATE = 60.0


@dataclass
class Candidate:
    """One answer and what became of it.

    Attributes
    ----------
    number : int
        1-based, in the order the server answered.
    answer, code : str
        The model's last answer for it and the program in that answer.
    result : ExecResult or None
        The sandbox's run of ``code`` (None when it never ran).
    attempts : int
        1 + the repairs it took.
    error : str
        Why it did not build ('' when it did).
    score : float or None
        The render match against the reference images, in [0, 1]; None when not matched.
    """

    number: int
    answer: str = ""
    code: str = ""
    result: ExecResult | None = None
    attempts: int = 0
    error: str = ""
    score: float | None = None

    @property
    def built(self) -> bool:
        """The program ran and made a mesh."""
        return self.result is not None and self.result.ok


def choose(candidates: Sequence[Candidate]) -> Candidate:
    """The candidate to keep: the best match among those that built; the first that built when
    none has a match; the first when none built (its error is what the panel shows)."""
    built = [c for c in candidates if c.built]
    scored = [c for c in built if c.score is not None]
    if scored:
        return max(scored, key=lambda c: (c.score or 0.0, -c.number))
    return built[0] if built else candidates[0]


def generate_candidates(
    client: ChatClient,
    messages: Sequence[dict[str, Any]],
    *,
    n: int,
    max_attempts: int,
    sandbox: Sandbox,
    timeout_s: float,
    references: Sequence[str],
    cancel: threading.Event,
    state: StreamState,
    report: Callable[[str], None],
) -> tuple[list[Candidate], str]:
    """Ask for ``n`` answers, run (and repair) each, score those that built; return the
    candidates and a note for the panel ('' when every candidate could be matched).

    Raises
    ------
    EndpointError
        When the first request fails (one candidate's failed repair only ends that one).
    StreamCancelledError
        On Cancel.
    """
    report(f"Waiting for {n} answers from {client.model}...")
    answers = client.complete_n(messages, n, state)
    batch = _Batch(client, messages, n, max_attempts, sandbox, timeout_s, cancel, state, report)
    found = []
    for number, answer in enumerate(answers, 1):
        candidate = Candidate(number)
        if isinstance(answer, EndpointError):
            candidate.error = str(answer)
        else:
            batch.run(candidate, answer)
        found.append(candidate)
    built = [c for c in found if c.built]
    if not built:
        return found, ""
    if not references:
        return found, "no reference images to compare with: kept the first candidate that builds"
    report(f"Rendering {len(built)} candidate(s) to compare them with the images...")
    note = render_and_match(built, references, sandbox, cancel)
    if cancel.is_set():
        raise StreamCancelledError("cancelled")
    return found, note


@dataclass(frozen=True)
class _Batch:
    """What every candidate of one Generate shares."""

    client: ChatClient
    messages: Sequence[dict[str, Any]]
    n: int
    max_attempts: int
    sandbox: Sandbox
    timeout_s: float
    cancel: threading.Event
    state: StreamState
    report: Callable[[str], None]

    def run(self, candidate: Candidate, answer: str) -> None:
        """Run one candidate in the sandbox, repairing it while attempts remain."""
        conversation = list(self.messages)
        while True:
            if self.cancel.is_set():
                raise StreamCancelledError("cancelled")
            candidate.attempts += 1
            candidate.answer, candidate.code = answer, extract_code(answer)
            self.report(f"Candidate {candidate.number}/{self.n}: running it in the sandbox...")
            result = self.sandbox.run(candidate.code, self.timeout_s, cancel=self.cancel)
            candidate.result = result
            if result.ok:
                candidate.error = ""
                return
            candidate.error = describe_result(result)
            if result.status is ExecStatus.INFRA_ERROR or candidate.attempts >= self.max_attempts:
                return
            conversation = repair_messages(conversation, answer, candidate.error)
            self.report(
                f"Candidate {candidate.number}/{self.n} failed; asking the model to repair it "
                f"(attempt {candidate.attempts + 1}/{self.max_attempts})..."
            )
            try:
                reply = self.client.complete_n(conversation, 1, self.state)[0]
            except EndpointError as e:
                reply = e
            if isinstance(reply, EndpointError):
                candidate.error = f"the repair request failed: {reply}"
                return
            answer = reply


def render_and_match(
    built: Sequence[Candidate], references: Sequence[str], sandbox: Sandbox, cancel: threading.Event
) -> str:
    """Render ``built`` candidates and set their :attr:`Candidate.score` (blocks: worker
    thread). Returns the note for the panel: why none could be matched, or ''."""
    with tempfile.TemporaryDirectory(prefix="llm3d-match-") as tmp:
        folder = Path(tmp)
        job = {
            "references": [str(p) for p in references],
            "candidates": [c.number for c in built],
            "size": MATCH_SIZE,
        }
        (folder / "job.json").write_text(json.dumps(job), encoding="utf-8")
        for c in built:
            assert c.result is not None
            np.savez(
                folder / f"mesh_{c.number}.npz", vertices=c.result.vertices, faces=c.result.faces
            )
        command = [*script_runner(sandbox.binary), str(RENDER_MATCH), tmp]
        env = server_environment(code_paths() or [str(ADDON_DIR.parent)], tmpdir=tmp)
        limit = STARTUP_TIMEOUT_S + RENDER_S_PER_CANDIDATE * len(built)
        with (folder / "output.log").open("wb") as log:
            try:
                proc = start_background(command, cwd=tmp, env=env, log=log)
            except OSError as e:
                return f"the candidates could not be compared (no background Blender: {e})"
            try:
                status = _wait(proc, limit, cancel)
            finally:
                kill_tree(proc)
        if status != "exited":
            return f"the candidates could not be compared ({status}); kept the first that builds"
        try:
            result = json.loads((folder / "result.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            tail = (folder / "output.log").read_bytes()[-300:].decode("utf-8", errors="replace")
            logger.warning("llm3d: render match failed: %s", tail)
            return f"the candidates could not be compared ({tail.strip()[-160:]})"
    for c in built:
        entry = result.get("scores", {}).get(str(c.number), {})
        if isinstance(entry.get("score"), int | float):
            c.score = float(entry["score"])
    note = str(result.get("note") or "")
    if all(c.score is None for c in built):
        return f"{note or 'no candidate could be matched'}; kept the first candidate that builds"
    return note


def _wait(proc: subprocess.Popen[bytes], limit_s: float, cancel: threading.Event) -> str:
    deadline = time.monotonic() + limit_s
    while proc.poll() is None:
        if cancel.is_set():
            return "cancelled"
        if time.monotonic() > deadline:
            return f"took longer than {limit_s:.0f} s"
        time.sleep(CANCEL_POLL_S / 2)
    return "exited" if proc.returncode == 0 else f"the background Blender exited {proc.returncode}"
