"""Building a program's result into the artist's scene (main thread only).

Safe by default: an untrusted program never runs in this process. :mod:`addon.background`
runs it in a separate, sandboxed background Blender (the reward farm's fork server on Linux)
and hands back only its mesh; :func:`build_result` turns that mesh into one object in the
result collection. Inside that background Blender ``clear_scene()`` clears the program's own
empty scene and ``export_scene()`` writes nothing the artist sees, so the artist's objects are
out of reach by construction. :func:`run_program` does both steps in one blocking call (for
scripts and tests; the panel runs the first step on a worker thread, :mod:`addon.jobs`).

*Trusted Execution* (a preference) is the explicit opt-in for running a program **inside**
this Blender, as it was written, with full builtins: :func:`run_program` with
``trusted=True``. It runs in a **temporary scene** so that it never sees or touches the
artist's objects (``clear_scene()`` clears that scene only, ``export_scene()`` writes no
file, the names of earlier results are set aside while it runs), its parts keep their own
objects and names, and a watchdog thread raises a timeout into it (which cannot stop a loop
inside one C call). When it fails everything it made is removed and the earlier result stays.
"""

from __future__ import annotations

import ctypes
import sys
import threading
import time
import types
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import bpy
import numpy as np

import bpy_lib
from bpy_lib.export import PART, kind_of, mark_part, mesh_from_arrays
from llm3d.program import PROGRAM_FILENAME, describe_error
from llm3d.schemas import ExecStatus
from worker.types import ExecResult

if TYPE_CHECKING:
    from .background import Sandbox

__all__ = [
    "PROGRAM_FILENAME",
    "RunOutcome",
    "build_result",
    "describe_error",
    "describe_result",
    "run_program",
]

_STASH = "\x7fllm3d stash {}"
_FRESH = "\x7fllm3d new {}"


class ProgramTimeoutError(TimeoutError):
    """The program ran longer than the add-on's time limit.

    The watchdog delivers it into the main thread; it is instantiated there, and from then
    on every line of the program raises it again (a line tracer is switched on), so a
    program that catches it cannot keep running.
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*(args or ("the program ran past the add-on's time limit",)))
        _trace_program_lines()


def _stop_line(frame: types.FrameType, event: str, arg: object) -> Any:
    if event == "line":
        raise ProgramTimeoutError
    return _stop_line


def _trace_new_frames(frame: types.FrameType, event: str, arg: object) -> Any:
    return _stop_line if frame.f_code.co_filename == PROGRAM_FILENAME else None


def _trace_program_lines() -> None:
    """Make every further line of the program, in running and new frames, raise."""
    sys.settrace(_trace_new_frames)
    frame: types.FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename == PROGRAM_FILENAME:
            frame.f_trace = _stop_line
        frame = frame.f_back


@dataclass
class RunOutcome:
    """What running one program gave.

    Attributes
    ----------
    ok : bool
        The program ran and made at least one part with faces.
    error : str
        One line for the panel (``Type: message (line N)``); empty when ``ok``.
    refused : bool
        The sandbox policy refused the program before it ran.
    sandbox_failed : bool
        The sandbox itself failed (not the program's fault: nothing for the model to repair).
    objects : list of str
        Names of the parts now in the result collection.
    seconds : float
        Time spent running the program.
    """

    ok: bool
    error: str = ""
    refused: bool = False
    sandbox_failed: bool = False
    objects: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _facade(scene: bpy.types.Scene) -> types.ModuleType:
    """``bpy_lib`` as the program sees it: the same verbs, with scene-safe clear/export."""
    module = types.ModuleType("bpy_lib", bpy_lib.__doc__)
    for name in bpy_lib.__all__:
        setattr(module, name, getattr(bpy_lib, name))

    def clear_scene() -> None:
        """Remove every part the program made so far (the artist's objects stay)."""
        for obj in list(scene.collection.all_objects):
            _remove_object(obj)

    def export_scene(path: str | None = None) -> tuple[Any, Any]:
        """All parts as triangles; inside the add-on no file is written (path is ignored)."""
        del path
        return bpy_lib.export_scene()

    module.clear_scene = clear_scene  # type: ignore[attr-defined]
    module.export_scene = export_scene  # type: ignore[attr-defined]
    module.__all__ = list(bpy_lib.__all__)  # type: ignore[attr-defined]
    return module


class _Watchdog:
    """Raises :class:`ProgramTimeoutError` in the main thread once ``timeout_s`` has passed.

    A watchdog thread uses ``PyThreadState_SetAsyncExc``: the exception lands at the
    program's next bytecode (not inside one long C call), and again every
    :attr:`REPEAT_S` while the program swallows it. Unlike a trace function it costs the
    program nothing while it runs. :meth:`stop` disarms it and clears an exception not yet
    delivered, so none can escape into the add-on's own code afterwards.
    """

    REPEAT_S = 0.25

    def __init__(self, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._thread_id = threading.get_ident()
        self._lock = threading.Lock()
        self._armed = True
        self._fired = False
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="llm3d-watchdog", daemon=True)

    def _raise(self, exc: type[BaseException] | None) -> None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(self._thread_id), ctypes.py_object(exc) if exc else None
        )

    def _watch(self) -> None:
        wait = self._timeout_s
        while not self._stopped.wait(wait):
            with self._lock:
                if not self._armed:
                    return
                self._fired = True
                self._raise(ProgramTimeoutError)
            wait = self.REPEAT_S

    def start(self) -> None:
        """Arm the watchdog (call from the thread that runs the program)."""
        self._thread.start()

    def stop(self) -> None:
        """Disarm; an exception set but not yet delivered is cleared."""
        with self._lock:
            self._armed = False
            self._stopped.set()
            if self._fired:
                self._raise(None)


def _remove_object(obj: bpy.types.Object) -> None:
    data = obj.data
    bpy.data.objects.remove(obj)
    if isinstance(data, bpy.types.Mesh) and data.users == 0:
        bpy.data.meshes.remove(data)


def _is_part(obj: bpy.types.Object) -> bool:
    if kind_of(obj) != PART or not isinstance(obj.data, bpy.types.Mesh):
        return False
    return len(obj.data.polygons) > 0


def describe_result(result: ExecResult) -> str:
    """One line for the panel (and the repair request): what went wrong and what to do."""
    error = " ".join(str(result.error or "").split())
    if result.status is ExecStatus.TIMEOUT:
        return (
            f"TimeoutError: {error or 'the program ran past the time limit'}; make it do less, "
            "or raise Program Time Limit in the add-on preferences"
        )
    if result.status is ExecStatus.NO_GEOMETRY:
        return "the program made no part with faces; build at least one solid part"
    if result.status is ExecStatus.DEGENERATE:
        return f"the result is too large or broken ({error}); build fewer, simpler parts"
    if result.status is ExecStatus.INFRA_ERROR:
        return f"the sandbox failed, not the program ({error}); press Run to try again"
    return error or f"the program failed ({result.status.value})"


def _checked_mesh(result: ExecResult) -> tuple[np.ndarray, np.ndarray] | str:
    """The result's arrays, checked again here (they come from a process that ran untrusted
    code); a reason when they are unusable."""
    vertices = np.asarray(result.vertices)
    faces = np.asarray(result.faces)
    if vertices.ndim != 2 or vertices.shape[1:] != (3,) or faces.ndim != 2:
        return f"malformed mesh arrays {vertices.shape} / {faces.shape}"
    if faces.shape[1:] != (3,) or len(faces) == 0:
        return "the program made no part with faces; build at least one solid part"
    if not np.isfinite(vertices).all():
        return "the mesh has non-finite coordinates"
    if int(faces.min()) < 0 or int(faces.max()) >= len(vertices):
        return "the mesh's faces index missing vertices"
    return vertices.astype(np.float32, copy=False), faces.astype(np.int32, copy=False)


def build_result(result: ExecResult, target: bpy.types.Collection, name: str) -> RunOutcome:
    """Build a sandboxed run's mesh into ``target`` (main thread); the earlier result goes.

    One object named ``name`` (Blender appends ``.001`` while the name is taken) holds the
    whole result: the sandbox hands back the triangles of every part, not the parts. When
    the run failed nothing changes and the outcome carries the panel's error line.
    """
    if not result.ok:
        return RunOutcome(
            False,
            describe_result(result),
            refused=result.status in (ExecStatus.REFUSED, ExecStatus.EMPTY),
            sandbox_failed=result.status is ExecStatus.INFRA_ERROR,
            seconds=result.seconds,
        )
    checked = _checked_mesh(result)
    if isinstance(checked, str):
        return RunOutcome(False, checked, seconds=result.seconds)
    vertices, faces = checked
    mesh = mesh_from_arrays(name, vertices, faces)
    mesh.validate()
    for obj in list(target.all_objects):
        _remove_object(obj)
    obj = bpy.data.objects.new(name, mesh)
    mark_part(obj)
    target.objects.link(obj)
    mesh.name = obj.name
    return RunOutcome(True, objects=[obj.name], seconds=result.seconds)


def result_name(target: bpy.types.Collection) -> str:
    """The result object's name: the collection's, without the ``llm3d`` prefix."""
    return target.name.removeprefix("llm3d ").strip() or "result"


def run_program(
    code: str,
    target: bpy.types.Collection,
    *,
    trusted: bool = False,
    timeout_s: float = 60.0,
    sandbox: Sandbox | None = None,
) -> RunOutcome:
    """Run ``code`` and put its result into ``target`` (blocks until it is done).

    Parameters
    ----------
    code : str
        A ``bpy_lib`` program.
    target : bpy.types.Collection
        The result collection. Its objects are replaced only when the program succeeds.
    trusted : bool
        Run inside this Blender with full builtins and no policy (the artist's choice, see
        the module docstring); otherwise in the sandbox, out of this process.
    timeout_s : float
        The time limit (a hard kill in the sandbox; a watchdog when trusted).
    sandbox : Sandbox, optional
        Where to run; the session's (:func:`addon.background.get_sandbox`) when omitted.
    """
    if not trusted:
        from .background import get_sandbox

        result = (sandbox or get_sandbox()).run(code, timeout_s)
        return build_result(result, target, result_name(target))
    return _run_in_process(code, target, timeout_s=timeout_s)


def _run_in_process(code: str, target: bpy.types.Collection, *, timeout_s: float) -> RunOutcome:
    """Trusted Execution: run ``code`` in this Blender, in a temporary scene."""
    scene = bpy.data.scenes.new("llm3d run")
    stash = _stash_names()
    wanted: list[tuple[bpy.types.Object, str]] = []
    start = time.perf_counter()
    try:
        error = _execute(code, scene, timeout_s=timeout_s)
        seconds = time.perf_counter() - start
        made = list(scene.collection.all_objects)
        parts = [o for o in made if _is_part(o)]
        if error is None and not parts:
            error = "the program made no part with faces; build at least one solid part"
        if error is not None:
            for obj in made:
                _remove_object(obj)
            return RunOutcome(False, error, seconds=seconds)
        for obj in list(target.all_objects):
            _remove_object(obj)
        for i, obj in enumerate(made):
            if obj in parts:
                wanted.append((obj, obj.name))
                obj.name = _FRESH.format(i)
                target.objects.link(obj)
            else:
                _remove_object(obj)  # curves and empty helpers are inputs, not results
    finally:
        _restore_names(stash)
        bpy.data.scenes.remove(scene)
    for obj, name in wanted:
        obj.name = name  # Blender appends .001 where an earlier result holds the name
        if isinstance(obj.data, bpy.types.Mesh):
            obj.data.name = obj.name
    return RunOutcome(True, objects=sorted(o.name for o, _ in wanted), seconds=seconds)


def _execute(code: str, scene: bpy.types.Scene, *, timeout_s: float) -> str | None:
    facade = _facade(scene)
    namespace: dict[str, Any] = {"__name__": "__main__"}
    view_layer = scene.view_layers[0]
    with bpy.context.temp_override(scene=scene, view_layer=view_layer):
        try:
            compiled = compile(code, PROGRAM_FILENAME, "exec", dont_inherit=True)
            previous = sys.gettrace()
            watchdog = _Watchdog(timeout_s)
            watchdog.start()
            try:
                _exec_trusted(compiled, namespace, facade)
            finally:
                watchdog.stop()
                sys.settrace(previous)
        except Exception as exc:  # the program's failure is its result, shown to the artist
            return describe_error(exc)
    return None


def _exec_trusted(
    compiled: types.CodeType, namespace: dict[str, Any], facade: types.ModuleType
) -> None:
    """Full builtins, but ``from bpy_lib import *`` still gets the scene-safe facade.

    Anything else of the package (``bpy_lib.export``, private helpers) is reached through
    the facade's module ``__getattr__``, since a trusted program may import it.
    """
    real = sys.modules.get("bpy_lib")
    facade.__getattr__ = lambda name: getattr(bpy_lib, name)  # type: ignore[method-assign]
    sys.modules["bpy_lib"] = facade
    try:
        exec(compiled, namespace)
    finally:
        if real is not None:
            sys.modules["bpy_lib"] = real


def _stash_names() -> list[tuple[bpy.types.Object, str]]:
    """Give earlier bpy_lib parts placeholder names while a program runs."""
    stash: list[tuple[bpy.types.Object, str]] = []
    for i, obj in enumerate(list(bpy.data.objects)):
        if cast(Any, obj).library is None and kind_of(obj) is not None:
            stash.append((obj, obj.name))
            obj.name = _STASH.format(i)
    return stash


def _restore_names(stash: list[tuple[bpy.types.Object, str]]) -> None:
    for obj, name in stash:
        try:
            obj.name = name
        except ReferenceError:  # removed meanwhile (it was in the replaced result)
            continue
