"""Jobs: the model request and the sandboxed run on a worker thread, results on the main thread.

Blender's data may only be touched from the main thread, and neither an HTTP request nor a
program may block it. A :class:`Job` therefore does each attempt on a daemon thread: it asks
the model (a Generate; a Run job has its program already), then runs the program in the
sandbox out of this process (:meth:`addon.background.Sandbox.run`, which waits for the
background Blender), and puts one :class:`Message` with the mesh on the job's queue.
:func:`drain`, registered with ``bpy.app.timers``, runs on the main thread: it updates the
status line, and when a message arrives it writes the program into the job's text block,
builds the mesh into the result collection (:func:`addon.runner.build_result`) and either
finishes (one undo step for the whole result) or, when the program failed and attempts
remain, asks the model to repair it (the repair loop). With *Trusted Execution* the thread
only asks the model, and :func:`drain` runs the program inside Blender as before.

The answer streams (:meth:`addon.client.ChatClient.stream`): while it arrives, :func:`drain`
copies it into the result's text block, shows it in a Text Editor if one is open
(:mod:`addon.live`) and puts tokens and tokens/s in the status line. With *Candidates* > 1
the thread asks for several answers and keeps the best match (:mod:`addon.candidates`).

Cancel (:meth:`Job.stop`) sets the job's event and closes the stream's connection at once:
:func:`drain` ends the job at its next call, and a message that arrives afterwards is dropped
unread; the text block gets back what it held. A program running in the sandbox is killed at
once (its process group; the background server stays up for the next run).
"""

from __future__ import annotations

import functools
import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import bpy

from worker.types import ExecResult

from . import history, pick
from .background import Sandbox, get_sandbox
from .candidates import Candidate, choose, generate_candidates
from .client import (
    ChatClient,
    EndpointError,
    build_messages,
    extract_code,
    refine_messages,
    repair_messages,
)
from .live import (
    StreamTarget,
    ensure_text,
    settle_failed,
    show_stream,
    stream_status,
    unstream,
)
from .placement import ensure_collection, place_and_frame
from .runner import RunOutcome, build_result, result_name, run_program
from .streaming import StreamCancelledError, StreamState

__all__ = ["DRAIN_INTERVAL_S", "Job", "Message", "active_job", "drain", "start_job"]

logger = logging.getLogger(__name__)

#: Seconds between two calls of :func:`drain` while a request is in flight.
DRAIN_INTERVAL_S = 0.2

#: The running job of each scene, by scene name (one at a time per scene).
_JOBS: dict[str, Job] = {}
# Drain timers still registered: unregister() must remove them, since a timer left behind
# at exit is freed by Blender after Python has finalised (a segfault on quit).
_TIMERS: list[Callable[[], float | None]] = []


@dataclass(frozen=True)
class Message:
    """What a worker thread hands back: the model's answer or the error of its request.

    ``code`` is the program taken from the answer, ``result`` what the sandbox made of it
    (None when the program runs inside Blender: Trusted Execution).
    """

    attempt: int
    answer: str | None = None
    error: str | None = None
    code: str = ""
    result: ExecResult | None = None
    #: With Candidates > 1: all of them (this message carries the kept one) and the note.
    candidates: tuple[Candidate, ...] = ()
    kept: int = 0
    note: str = ""


@dataclass
class Job:
    """One Generate (or Run): the conversation so far and the thread that extends it.

    Attributes
    ----------
    client : ChatClient or None
        None for a Run job.
    system : str
        The system prompt (the ``bpy_lib`` reference).
    images : list of str
        Paths of the reference images.
    max_attempts : int
        1 + the number of repairs the artist allows.
    label : str
        Name of the result collection and of the text block.
    trusted : bool
        Run inside Blender without the sandbox (the artist's preference).
    run_timeout_s : float
        Time limit of each program run.
    sandbox : Sandbox or None
        Where programs run when not trusted; the session's when omitted.
    program : str or None
        A Run job's program (no model request, one attempt).
    phase : str
        ``model`` while the request is in flight, ``running`` while the sandbox runs it.
    prompt : str
        The artist's words sent with the images (alone: text to code).
    refine : tuple of (str, str) or None
        A Refine job's (current program, the artist's instruction): the conversation of the
        first request continues with them, and the result is rebuilt in place.
    render : str
        A Refine's render of the current result ('' for none).
    scratch_dir : str
        A folder of downscaled images, removed once the first attempt is done.
    origin : tuple of float
        Where the result goes (the 3D cursor at Generate; the same place for Refine and Run).
    replace : bool
        Generate rebuilds the previous result's collection and text block (renamed) instead
        of adding new ones (*Replace previous*, the default; off: *Keep all*).
    candidates : int
        How many answers a Generate asks for (:mod:`addon.candidates`; not streamed).
    detail : str
        With candidates: what the worker thread does now (the status line).
    """

    client: ChatClient | None
    system: str
    images: list[str]
    max_attempts: int
    label: str
    trusted: bool = False
    run_timeout_s: float = 60.0
    attempt: int = 0
    messages: list[dict[str, Any]] = field(default_factory=list)
    queue: queue.Queue[Message] = field(default_factory=queue.Queue)
    cancel: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.monotonic)
    text_name: str = ""
    collection_name: str = ""
    thread: threading.Thread | None = None
    sandbox: Sandbox | None = None
    program: str | None = None
    phase: str = "model"
    prompt: str = ""
    refine: tuple[str, str] | None = None
    render: str = ""
    scratch_dir: str = ""
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    replace: bool = False
    stream: StreamState = field(default_factory=StreamState)
    target: StreamTarget = field(default_factory=StreamTarget)
    candidates: int = 1
    detail: str = ""

    def __post_init__(self) -> None:
        if not self.trusted and self.sandbox is None:
            self.sandbox = get_sandbox()

    def request(self) -> None:
        """Start the next attempt (request, then run) on a daemon thread."""
        self.attempt += 1
        self.started = time.monotonic()
        self.phase = "running" if self.program is not None else "model"
        self.stream = StreamState()
        self.target = StreamTarget()
        self.thread = threading.Thread(
            target=self._work, args=(self.attempt,), name=f"llm3d-request-{self.attempt}"
        )
        self.thread.daemon = True
        self.thread.start()

    def _work(self, attempt: int) -> None:
        try:
            if self.program is not None:
                answer = code = self.program
            else:
                if self.client is None:
                    raise RuntimeError("a Generate job needs a chat client")
                if not self.messages:
                    self.messages = self._first_messages()
                if self.candidates > 1 and self.sandbox is not None:
                    self.queue.put(self._candidates(attempt, self.client, self.sandbox))
                    return
                answer = self.client.stream(self.messages, self.stream, self.cancel)
                code = extract_code(answer)
            result: ExecResult | None = None
            if self.sandbox is not None and not self.cancel.is_set():
                self.phase = "running"
                self.started = time.monotonic()
                result = self.sandbox.run(code, self.run_timeout_s, cancel=self.cancel)
        except StreamCancelledError:
            return  # the job is over; nothing to deliver
        except EndpointError as e:
            self.queue.put(Message(attempt, error=str(e)))
        except Exception as e:  # a bug must reach the panel, not die silently in a thread
            logger.exception("llm3d request failed")
            self.queue.put(Message(attempt, error=f"{type(e).__name__}: {e}"))
        else:
            self.queue.put(Message(attempt, answer=answer, code=code, result=result))
        finally:
            if self.scratch_dir:  # the images are in the messages (and matched) now
                shutil.rmtree(self.scratch_dir, ignore_errors=True)

    def _first_messages(self) -> list[dict[str, Any]]:
        messages = build_messages(self.system, self.images, self.prompt)
        if self.refine is not None:
            program, instruction = self.refine
            messages = refine_messages(messages, program, instruction, self.render or None)
        return messages

    def _candidates(self, attempt: int, client: ChatClient, sandbox: Sandbox) -> Message:
        """Ask for the candidates, run, repair and match them; the kept one as the message."""
        found, note = generate_candidates(
            client,
            self.messages,
            n=self.candidates,
            max_attempts=self.max_attempts,
            sandbox=sandbox,
            timeout_s=self.run_timeout_s,
            references=self.images,
            cancel=self.cancel,
            state=self.stream,
            report=functools.partial(setattr, self, "detail"),
        )
        kept = choose(found)
        if kept.result is None:
            return Message(attempt, error=kept.error, candidates=tuple(found), note=note)
        return Message(
            kept.attempts,
            answer=kept.answer,
            code=kept.code,
            result=kept.result,
            candidates=tuple(found),
            kept=kept.number,
            note=note,
        )

    @property
    def kind(self) -> str:
        """``Generate``, ``Refine`` or ``Run``: what the undo step and the panel call it."""
        if self.program is not None:
            return "Run"
        return "Refine" if self.refine is not None else "Generate"

    def stop(self) -> None:
        """Cancel: drop what comes later; a program running in the sandbox is killed.

        The worker thread sees the event within :data:`addon.background.CANCEL_POLL_S` and
        has the server kill the program's process group; the server stays up (warm) for the
        next run. A streamed answer's connection is closed now. Nothing here waits.
        """
        self.cancel.set()
        self.stream.abort()


def active_job(scene: bpy.types.Scene) -> Job | None:
    """The job running for ``scene``, if any."""
    return _JOBS.get(scene.name)


def start_job(scene: bpy.types.Scene, job: Job, *, register_timer: bool = True) -> None:
    """Reset the panel's attempt list, send the first request (or run) and start draining.

    A Run job keeps the attempt list of the last Generate.

    Raises
    ------
    RuntimeError
        When a job already runs for this scene.
    """
    if scene.name in _JOBS:
        raise RuntimeError("a generation or run is already going on; cancel it first")
    settings: Any = scene.llm3d  # type: ignore[attr-defined]
    settings.busy = True
    settings.error = ""
    settings.warning = ""
    if job.program is None:
        settings.attempts.clear()
        pick.record(scene.name, settings, [], 0, "")
        what = (
            "the request"
            if job.refine is not None
            else ("the images" if job.images else "the prompt")
        )
        settings.status = f"Sending {what} to the model..."
    else:
        settings.status = f"Running '{job.text_name}' in the sandbox..."
    _JOBS[scene.name] = job
    job.request()
    if register_timer:
        timer = functools.partial(drain, scene.name)
        _TIMERS.append(timer)
        bpy.app.timers.register(timer, first_interval=DRAIN_INTERVAL_S)


def _finish(scene_name: str, settings: Any, status: str, *, error: str = "") -> None:
    _JOBS.pop(scene_name, None)
    settings.busy = False
    settings.status = status
    settings.error = error
    _redraw()


def _redraw() -> None:
    wm = bpy.context.window_manager
    if wm is None:
        return
    for window in wm.windows:
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


def push_undo(message: str) -> None:
    """Make everything done since the last step one undo step (works from timers too)."""
    wm = bpy.context.window_manager
    window = wm.windows[0] if wm is not None and len(wm.windows) else None
    with bpy.context.temp_override(window=window):
        bpy.ops.ed.undo_push(message=message)


def drain(scene_name: str) -> float | None:
    """Timer callback: deliver what the worker thread sent; return the next interval or None.

    Called by ``bpy.app.timers`` while a job runs (tests call it directly). Never raises:
    a failure ends the job with its message in the panel.
    """
    job = _JOBS.get(scene_name)
    scene: bpy.types.Scene | None = cast(Any, bpy.data.scenes).get(scene_name)
    if job is None:
        return None
    if scene is None:
        job.cancel.set()
        _JOBS.pop(scene_name, None)
        return None
    settings: Any = cast(Any, scene).llm3d
    if job.cancel.is_set():
        unstream(job.target)
        _finish(scene_name, settings, f"Cancelled (attempt {job.attempt}).")
        return None
    try:
        message = job.queue.get_nowait()
    except queue.Empty:
        if job.phase == "model" and job.program is None:
            show_stream(job.target, job.stream.snapshot(), job.text_name, f"{job.label}.py")
        settings.status = _progress(job)
        _redraw()
        return DRAIN_INTERVAL_S
    try:
        return _deliver(scene_name, scene, settings, job, message)
    except Exception as e:  # never let a timer die with the job half done
        logger.exception("llm3d: delivering the model's answer failed")
        _finish(scene_name, settings, "Failed.", error=f"{type(e).__name__}: {e}")
        return None


def _progress(job: Job) -> str:
    """The status line while a job's thread works."""
    waited = time.monotonic() - job.started
    if job.program is not None:
        return f"Running '{job.text_name}' in the sandbox... {waited:.0f} s"
    if job.candidates > 1:
        return f"{job.detail or 'Starting...'} {waited:.0f} s"
    if job.phase == "running":
        what = f"Running the program in the sandbox... {waited:.0f} s"
    else:
        what = stream_status(job.client.model if job.client else "the model", job.stream.snapshot())
    return f"{what} (attempt {job.attempt}/{job.max_attempts})"


def _run(job: Job, message: Message, collection: bpy.types.Collection) -> RunOutcome:
    """Build the sandbox's result, or run the program here when the artist trusts it."""
    if job.trusted:
        return run_program(message.code, collection, trusted=True, timeout_s=job.run_timeout_s)
    if message.result is None:  # never run it here instead
        return RunOutcome(False, "the program was not run (cancelled); press Run")
    return build_result(message.result, collection, result_name(collection))


def _add_attempt(settings: Any, number: int, code: str, ok: bool, error: str) -> None:
    item = settings.attempts.add()
    item.number = number
    item.ok = ok
    item.error = error
    item.code = code
    settings.attempt_index = len(settings.attempts) - 1


def _deliver(
    scene_name: str, scene: bpy.types.Scene, settings: Any, job: Job, message: Message
) -> float | None:
    if message.candidates:
        pick.record(scene_name, settings, message.candidates, message.kept, message.note)
    if message.error is not None or message.answer is None:
        error = message.error or "the model sent no answer"
        if job.program is None:
            settle_failed(job.target, job.stream.snapshot(), job.text_name, f"{job.label}.py")
        _add_attempt(settings, message.attempt, "", False, error)
        _finish(scene_name, settings, "The model request failed.", error=error)
        return None
    if job.program is not None:
        _deliver_run(scene, settings, job, message)
        return None
    code = message.code
    text = ensure_text(job.target.name or job.text_name, f"{job.label}.py")
    if job.replace and text.name != f"{job.label}.py":
        text.name = f"{job.label}.py"  # the previous result's block, under the new name
    job.text_name = text.name
    text.from_string(code)
    settings.text = text
    collection = ensure_collection(scene, job.collection_name, job.label)
    if job.replace and collection.name != job.label:
        collection.name = job.label
    job.collection_name = collection.name
    settings.collection = collection
    settings.has_score = False
    outcome = _run(job, message, collection)
    _add_attempt(settings, message.attempt, code, outcome.ok, outcome.error)
    if outcome.ok:
        place_and_frame(scene, outcome.objects, job.origin)
        parts = len(outcome.objects)
        _finish(
            scene_name,
            settings,
            f"Done: {parts} part{'s' if parts != 1 else ''} in '{collection.name}' "
            f"(attempt {message.attempt}/{job.max_attempts}).",
        )
        _record(settings, job, code, outcome)
        if message.candidates:
            kept = next(c for c in message.candidates if c.number == message.kept)
            settings.status += pick.summary(message.candidates, kept)
        push_undo(f"llm3d: {job.kind} {job.label}")
        return None
    # a sandbox failure is nothing for the model to repair; candidates were repaired already
    retry = not outcome.sandbox_failed and not message.candidates
    if retry and job.attempt < job.max_attempts and not job.cancel.is_set():
        job.messages = repair_messages(job.messages, message.answer, outcome.error)
        settings.error = outcome.error
        settings.status = (
            f"Attempt {message.attempt} failed; asking the model to repair it "
            f"(attempt {job.attempt + 1}/{job.max_attempts})..."
        )
        job.request()
        _redraw()
        return DRAIN_INTERVAL_S
    if not collection.all_objects:
        settings.collection = None
        bpy.data.collections.remove(collection)
        job.collection_name = ""
    _record(settings, job, code, outcome)
    _finish(
        scene_name,
        settings,
        f"Failed after {job.attempt} attempt{'s' if job.attempt != 1 else ''}; "
        f"edit '{text.name}' and press Run.",
        error=outcome.error,
    )
    push_undo(f"llm3d: {job.kind} {job.label} (failed)")
    return None


def _deliver_run(scene: bpy.types.Scene, settings: Any, job: Job, message: Message) -> None:
    """A Run job's result: the result collection is rebuilt, or the error shown."""
    collection = ensure_collection(scene, job.collection_name, job.label)
    settings.collection = collection
    settings.has_score = False
    outcome = _run(job, message, collection)
    _record(settings, job, message.code, outcome)
    if not outcome.ok:
        _finish(scene.name, settings, f"Run failed: {outcome.error}", error=outcome.error)
        return
    place_and_frame(scene, outcome.objects, job.origin)
    parts = len(outcome.objects)
    _finish(
        scene.name,
        settings,
        f"Ran '{job.text_name}': {parts} part{'s' if parts != 1 else ''} in '{collection.name}'.",
    )
    push_undo(f"llm3d: Run {job.text_name}")


def _record(settings: Any, job: Job, code: str, outcome: RunOutcome) -> None:
    """Keep the attempt in the history (with a thumbnail of what it built)."""
    prompt = job.refine[1] if job.refine is not None else job.prompt
    history.record(
        settings,
        kind=job.kind,
        prompt=prompt,
        code=code,
        ok=outcome.ok,
        error=outcome.error,
        objects=outcome.objects,
    )


def clear_stale_state() -> None:
    """After a file loads: no job can be running, so no scene may say one is (a .blend
    saved mid-request would show "Waiting for ..." forever)."""
    for scene in bpy.data.scenes:
        settings: Any = getattr(scene, "llm3d", None)
        if settings is None or not (settings.busy or scene.name in _JOBS):
            continue
        settings.busy = False
        settings.status = "Interrupted: the file was saved while a request ran; Generate again."
    _JOBS.clear()


def result_label(images: Sequence[str], prompt: str = "") -> str:
    """``llm3d chair_front+chair_side``: the result's name, after the images' file stems
    (after the prompt's first words for text to code)."""
    stems = [p.replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0] for p in images]
    words = "_".join("".join(c for c in w if c.isalnum()) for w in prompt.split()[:4])
    label = "+".join(s for s in stems if s) or words.strip("_") or "result"
    if len(label) > 48:
        label = label[:45] + "..."
    return f"llm3d {label}"


def cancel_all() -> None:
    """Cancel every job (on unregister, on a file load): their threads' answers are dropped,
    and the candidates' meshes kept for *Use* go (they belong to the file's scenes)."""
    for job in _JOBS.values():
        job.stop()
    _JOBS.clear()
    pick.forget()
    for timer in _TIMERS:
        if bpy.app.timers.is_registered(timer):
            bpy.app.timers.unregister(timer)
    _TIMERS.clear()
