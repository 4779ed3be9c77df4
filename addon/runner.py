"""Running a generated program inside the artist's Blender (main thread only).

Safe by default: the program first goes through :func:`worker.sandbox.check_policy`, the
policy the reward farm applies (imports of ``bpy_lib`` and ``math`` only, no dunders, no
``open``/``eval``/``getattr``, no ``bpy``), then runs with the farm's table of safe
builtins and an ``__import__`` that only hands out ``bpy_lib`` and ``math``. Trusted mode
(a preference) skips both.

Either way the program runs in a **temporary scene** so that it never sees or touches the
artist's objects: ``clear_scene()`` clears that scene only, ``export_scene()`` writes no
file, and the names of earlier results are set aside while it runs (so ``name="seat"``
works again). A watchdog thread enforces a time limit on the program. When it
succeeds its parts move into the result collection; when it fails everything it made is
removed and the earlier result stays.
"""

from __future__ import annotations

import ctypes
import math
import sys
import threading
import time
import types
from dataclasses import dataclass, field
from typing import Any, cast

import bpy

import bpy_lib
from bpy_lib import _mesh
from worker.sandbox import check_policy, restricted_builtins

__all__ = ["PROGRAM_FILENAME", "RunOutcome", "describe_error", "run_program"]

PROGRAM_FILENAME = "<llm3d program>"
MAX_CODE_BYTES = 65536
ALLOWED_IMPORTS = ("bpy_lib", "math")
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
    objects : list of str
        Names of the parts now in the result collection.
    seconds : float
        Time spent running the program.
    """

    ok: bool
    error: str = ""
    refused: bool = False
    objects: list[str] = field(default_factory=list)
    seconds: float = 0.0


def describe_error(exc: BaseException) -> str:
    """``Type: message (line N)`` with N the deepest line of the program in the traceback."""
    line: int | None = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == PROGRAM_FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    if isinstance(exc, SyntaxError):
        line, message = exc.lineno, exc.msg
    else:
        message = " ".join(str(exc).split())
    if len(message) > 300:
        message = message[:297] + "..."
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return f"{text} (line {line})" if line is not None else text


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
    if _mesh.prop(obj, _mesh.KIND) != _mesh.PART or not isinstance(obj.data, bpy.types.Mesh):
        return False
    return len(obj.data.polygons) > 0


def run_program(
    code: str,
    target: bpy.types.Collection,
    *,
    trusted: bool = False,
    timeout_s: float = 60.0,
) -> RunOutcome:
    """Check and run ``code``; on success its parts replace the contents of ``target``.

    Parameters
    ----------
    code : str
        A ``bpy_lib`` program.
    target : bpy.types.Collection
        The result collection. Its objects are replaced only when the program succeeds.
    trusted : bool
        Skip the sandbox policy and run with the full builtins (the artist's choice).
    timeout_s : float
        Wall-clock limit on the program's own lines.
    """
    if not trusted:
        verdict = check_policy(
            code,
            ALLOWED_IMPORTS,
            module_names={"bpy_lib": bpy_lib.__all__},
            max_code_bytes=MAX_CODE_BYTES,
        )
        if not verdict.ok:
            return RunOutcome(False, verdict.describe(), refused=verdict.rule != "syntax")
        if not verdict.imports_bpy_lib:
            return RunOutcome(False, "the program does not import bpy_lib", refused=True)
    scene = bpy.data.scenes.new("llm3d run")
    stash = _stash_names()
    wanted: list[tuple[bpy.types.Object, str]] = []
    start = time.perf_counter()
    try:
        error = _execute(code, scene, trusted=trusted, timeout_s=timeout_s)
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


def _execute(code: str, scene: bpy.types.Scene, *, trusted: bool, timeout_s: float) -> str | None:
    facade = _facade(scene)
    namespace: dict[str, Any] = {"__name__": "__main__"}
    if not trusted:
        namespace["__builtins__"] = restricted_builtins({"bpy_lib": facade, "math": math})
    view_layer = scene.view_layers[0]
    with bpy.context.temp_override(scene=scene, view_layer=view_layer):
        try:
            compiled = compile(code, PROGRAM_FILENAME, "exec", dont_inherit=True)
            previous = sys.gettrace()
            watchdog = _Watchdog(timeout_s)
            watchdog.start()
            try:
                if trusted:
                    _exec_trusted(compiled, namespace, facade)
                else:
                    exec(compiled, namespace)
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
        if cast(Any, obj).library is None and _mesh.prop(obj, _mesh.KIND) is not None:
            stash.append((obj, obj.name))
            obj.name = _STASH.format(i)
    return stash


def _restore_names(stash: list[tuple[bpy.types.Object, str]]) -> None:
    for obj, name in stash:
        try:
            obj.name = name
        except ReferenceError:  # removed meanwhile (it was in the replaced result)
            continue
