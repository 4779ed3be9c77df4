"""Operators of the Image to Code panel: images, Generate, Refine, Cancel, Run, Score."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, cast

import bpy

from . import jobs, pick, placement
from ._typing import OperatorResult
from .client import IMAGE_TYPES, estimate_tokens
from .images import downscaled
from .preferences import Settings, get_settings, online_access_problem
from .runner import build_result, result_name
from .scoring import ScoreUnavailableError, score_objects
from .snapshots import RenderUnavailableError, refine_render

__all__ = [
    "MESH_OT_llm3d_add_images",
    "MESH_OT_llm3d_cancel",
    "MESH_OT_llm3d_generate",
    "MESH_OT_llm3d_refine",
    "MESH_OT_llm3d_remove_image",
    "MESH_OT_llm3d_run",
    "MESH_OT_llm3d_score",
    "MESH_OT_llm3d_use_candidate",
    "start_run",
    "system_prompt",
]

logger = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You write Python programs for Blender that rebuild the object shown in the images, "
    "using only the bpy_lib library below (and math). No other imports, no file access.\n\n"
)


def system_prompt(short: bool = False) -> str:
    """The system message: a short instruction and the ``bpy_lib`` reference (its short
    form, signatures only, for small-context models)."""
    import bpy_lib

    return SYSTEM_PROMPT + bpy_lib.reference(short=short)


def context_warning(prefs: Settings, system: str, n_images: int, text: str) -> str:
    """Why the request likely exceeds the model's context ('' when it likely fits)."""
    if prefs.context_tokens <= 0:
        return ""
    content: list[dict[str, Any]] = [{"type": "image_url"}] * n_images
    content.append({"type": "text", "text": text})
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": system},
        {"role": "user", "content": content},
    ]
    prompt = estimate_tokens(messages, prefs.image_size or 2048)
    if prompt + prefs.max_tokens <= prefs.context_tokens:
        return ""
    fixes = [] if prefs.short_prompt else ["turn on Short Prompt"]
    if n_images and (prefs.image_size == 0 or prefs.image_size > 512):
        fixes.append("lower Image Size")
    fixes.append("raise the model's context (Ollama: OLLAMA_CONTEXT_LENGTH=16384)")
    return (
        f"The prompt is about {prompt} tokens plus {prefs.max_tokens} Max Tokens: more than "
        f"the model's context ({prefs.context_tokens}), so it may be cut off. "
        f"{fixes[0][0].upper()}{'; '.join(fixes)[1:]}, and set Model Context in the preferences"
    )


def _settings(context: bpy.types.Context) -> Any:
    scene: Any = context.scene
    return scene.llm3d if scene is not None else None


def _xyz(vector: Any) -> tuple[float, float, float]:
    """A location as three floats (a ``Vector`` or a float-vector property)."""
    return (float(vector[0]), float(vector[1]), float(vector[2]))


def _busy(context: bpy.types.Context) -> bool:
    scene = context.scene
    return scene is not None and jobs.active_job(scene) is not None


class MESH_OT_llm3d_add_images(bpy.types.Operator):
    """Add reference images of the object (several views help)"""

    bl_idname = "mesh.llm3d_add_images"
    bl_label = "Add Images"
    bl_options = {"REGISTER", "UNDO"}

    filter_glob: bpy.props.StringProperty(  # type: ignore[valid-type]
        default=";".join(f"*{s}" for s in IMAGE_TYPES), options={"HIDDEN"}
    )
    files: bpy.props.CollectionProperty(  # type: ignore[valid-type]
        type=bpy.types.OperatorFileListElement, options={"HIDDEN", "SKIP_SAVE"}
    )
    directory: bpy.props.StringProperty(subtype="DIR_PATH")  # type: ignore[valid-type]
    filepath: bpy.props.StringProperty(subtype="FILE_PATH")  # type: ignore[valid-type]

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.scene is not None

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> OperatorResult:
        wm = context.window_manager
        if wm is None:
            return {"CANCELLED"}
        wm.fileselect_add(self)  # the file browser; multi-select fills self.files
        return {"RUNNING_MODAL"}

    def execute(self, context: bpy.types.Context) -> OperatorResult:
        settings = _settings(context)
        names = [f.name for f in self.files if f.name] or [Path(self.filepath).name]
        folder = Path(self.directory) if self.directory else Path(self.filepath).parent
        known = {item.path for item in settings.images}
        added = 0
        for name in names:
            path = folder / name
            if path.suffix.lower() not in IMAGE_TYPES:
                self.report({"WARNING"}, f"Skipped {name}: not an image ({', '.join(IMAGE_TYPES)})")
                continue
            if not path.is_file():
                self.report({"WARNING"}, f"Skipped {name}: no such file in {folder}")
                continue
            if str(path) in known:
                continue
            item = settings.images.add()
            item.path = str(path)
            item.name = path.name
            added += 1
        if not added:
            self.report({"ERROR"}, "No new image added; pick PNG, JPEG, WebP or BMP files")
            return {"CANCELLED"}
        settings.image_index = len(settings.images) - 1
        return {"FINISHED"}


class MESH_OT_llm3d_remove_image(bpy.types.Operator):
    """Remove the selected image from the list (the file stays)"""

    bl_idname = "mesh.llm3d_remove_image"
    bl_label = "Remove Image"
    bl_options = {"REGISTER", "UNDO"}

    clear_all: bpy.props.BoolProperty(name="All", default=False)  # type: ignore[valid-type]

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        settings = _settings(context)
        return settings is not None and len(settings.images) > 0

    def execute(self, context: bpy.types.Context) -> OperatorResult:
        settings = _settings(context)
        if self.clear_all:
            settings.images.clear()
        else:
            settings.images.remove(min(settings.image_index, len(settings.images) - 1))
        settings.image_index = max(0, min(settings.image_index, len(settings.images) - 1))
        return {"FINISHED"}


def _start_model_job(
    op: bpy.types.Operator, context: bpy.types.Context, *, refine: bool
) -> OperatorResult:
    """Generate or Refine: check, downscale the images, start the job, warn about context."""
    scene = context.scene
    if scene is None:
        return {"CANCELLED"}
    prefs = get_settings(context)
    problem = online_access_problem(prefs.endpoint_url)
    if problem:
        op.report({"ERROR"}, problem)
        return {"CANCELLED"}
    settings = _settings(context)
    images = [item.path for item in settings.images]
    missing = [p for p in images if not Path(p).is_file()]
    if missing:
        op.report({"ERROR"}, f"Image not found: {missing[0]}; remove it or fix the path")
        return {"CANCELLED"}
    system = system_prompt(prefs.short_prompt)
    prompt = settings.prompt.strip()
    if refine:  # the first turn as it was sent (a hand-written program has none)
        prompt = settings.last_prompt or ("" if images else "the object the program builds")
    sent, scratch = downscaled(images, prefs.image_size)
    render = ""
    if refine and settings.refine_render:  # a picture of what the current program builds
        try:
            render, scratch = refine_render(settings.collection, scratch)
        except RenderUnavailableError as e:
            op.report({"ERROR"}, f"Include Render: {e}; or turn Include Render off")
            return {"CANCELLED"}
    if refine:
        text = settings.text
        instruction = settings.refine_prompt.strip()
        origin = _xyz(settings.origin)
        collection = settings.collection.name if settings.collection else ""
        job = jobs.Job(
            client=prefs.client(),
            system=system,
            images=sent,
            max_attempts=1 + prefs.max_repairs,
            label=collection or text.name.removesuffix(".py"),
            trusted=prefs.trusted_execution,
            run_timeout_s=prefs.run_timeout_s,
            prompt=prompt,
            refine=(text.as_string(), instruction),
            render=render,
            text_name=text.name,
            collection_name=collection,
            scratch_dir=scratch,
            origin=origin,
        )
        words = f"{prompt}\n{text.as_string()}\n{instruction}"
    else:
        origin = _xyz(scene.cursor.location)
        replace = settings.results == "REPLACE"
        previous = settings.collection if replace else None
        if previous is not None and not placement.is_result(previous):
            previous = None  # the artist's own collection is never emptied or renamed
        text = settings.text if previous is not None else None
        job = jobs.Job(
            client=prefs.client(),
            system=system,
            images=sent,
            max_attempts=1 + prefs.max_repairs,
            label=jobs.result_label(images, prompt),
            trusted=prefs.trusted_execution,
            run_timeout_s=prefs.run_timeout_s,
            prompt=prompt,
            scratch_dir=scratch,
            origin=origin,
            replace=replace,
            candidates=1 if prefs.trusted_execution else prefs.candidates,
            collection_name=previous.name if previous is not None else "",
            text_name=text.name if text is not None and text.name.startswith("llm3d") else "",
        )
        words = prompt
    try:
        jobs.start_job(scene, job)
    except RuntimeError as e:
        op.report({"ERROR"}, str(e))
        return {"CANCELLED"}
    if not refine:
        settings.last_prompt = prompt
        settings.origin = origin
    settings.warning = context_warning(prefs, system, len(images) + bool(render), words)
    if settings.warning:
        op.report({"WARNING"}, settings.warning)
    if prefs.trusted_execution:
        op.report({"WARNING"}, "Trusted execution is on: the program will run unchecked")
        if prefs.candidates > 1 and not refine:
            op.report({"WARNING"}, "Candidates need the sandbox: one answer is asked for")
    op.report({"INFO"}, f"Asking {prefs.model} ({len(images)} image(s))...")
    return {"FINISHED"}


class MESH_OT_llm3d_generate(bpy.types.Operator):
    """Send the images and the prompt to the model and build the object it writes (runs in
    the background); a prompt without images is text to code"""

    bl_idname = "mesh.llm3d_generate"
    bl_label = "Generate"
    # Not UNDO: the result arrives later and is pushed as one undo step of its own.
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        settings = _settings(context)
        if settings is None or _busy(context):
            return False
        if not settings.images and not settings.prompt.strip():
            cls.poll_message_set("Add a reference image or describe the object in the prompt")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> OperatorResult:
        return _start_model_job(self, context, refine=False)


class MESH_OT_llm3d_refine(bpy.types.Operator):
    """Continue the conversation: send the current program (as edited) and what to change,
    then rebuild the result in place (one undo step)"""

    bl_idname = "mesh.llm3d_refine"
    bl_label = "Refine"
    # Not UNDO: the result arrives later and is pushed as one undo step of its own.
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        settings = _settings(context)
        if settings is None or _busy(context):
            return False
        if settings.text is None:
            cls.poll_message_set("No program yet: Generate first")
            return False
        if not settings.refine_prompt.strip():
            cls.poll_message_set("Say what to change, e.g. 'make the legs thinner'")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> OperatorResult:
        return _start_model_job(self, context, refine=True)


class MESH_OT_llm3d_cancel(bpy.types.Operator):
    """Stop waiting for the model, or stop the running program; a late answer is dropped"""

    bl_idname = "mesh.llm3d_cancel"
    bl_label = "Cancel"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return _busy(context)

    def execute(self, context: bpy.types.Context) -> OperatorResult:
        scene = context.scene
        if scene is None:
            return {"CANCELLED"}
        job = jobs.active_job(scene)
        if job is None:
            self.report({"ERROR"}, "No generation is running")
            return {"CANCELLED"}
        job.stop()  # a program running in the sandbox is killed now
        jobs.drain(scene.name)  # show "Cancelled" now, not at the next timer tick
        self.report({"INFO"}, "Cancelled")
        return {"FINISHED"}


def start_run(op: bpy.types.Operator, context: bpy.types.Context) -> OperatorResult:
    """Run the program in the panel's text block through the sandbox (Run, Restore)."""
    scene = context.scene
    if scene is None:
        return {"CANCELLED"}
    settings = _settings(context)
    text = settings.text
    prefs = get_settings(context)
    job = jobs.Job(
        client=None,
        system="",
        images=[],
        max_attempts=1,
        label=f"llm3d {Path(text.name).stem.removeprefix('llm3d ')}",
        trusted=prefs.trusted_execution,
        run_timeout_s=prefs.run_timeout_s,
        program=text.as_string(),
        origin=_xyz(settings.origin),
        text_name=text.name,
        collection_name=settings.collection.name if settings.collection else "",
    )
    try:
        jobs.start_job(scene, job)
    except RuntimeError as e:
        op.report({"ERROR"}, str(e))
        return {"CANCELLED"}
    if prefs.trusted_execution:
        op.report({"WARNING"}, "Trusted execution is on: the program runs unchecked")
    op.report({"INFO"}, f"Running '{text.name}'...")
    return {"FINISHED"}


class MESH_OT_llm3d_run(bpy.types.Operator):
    """Run the program in the text block again (after editing it); replaces the result"""

    bl_idname = "mesh.llm3d_run"
    bl_label = "Run"
    # Not UNDO: the result arrives later and is pushed as one undo step of its own.
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        settings = _settings(context)
        if settings is None or _busy(context):
            return False
        if settings.text is None:
            cls.poll_message_set("No program yet: Generate first, or pick a text block")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> OperatorResult:
        return start_run(self, context)


class MESH_OT_llm3d_score(bpy.types.Operator):
    """Compare the result with the reference mesh: F-score at 0.05 and Chamfer distance"""

    bl_idname = "mesh.llm3d_score"
    bl_label = "Score"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        settings = _settings(context)
        if settings is None or _busy(context):
            return False
        if settings.reference is None or settings.reference.type != "MESH":
            cls.poll_message_set("Pick a reference mesh object first")
            return False
        if settings.collection is None or not settings.collection.all_objects:
            cls.poll_message_set("No result to score yet")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> OperatorResult:
        settings = _settings(context)
        depsgraph = context.evaluated_depsgraph_get()
        try:
            metrics = score_objects(
                list(settings.collection.all_objects),
                [settings.reference],
                depsgraph,
                points=settings.score_points,
            )
        except (ScoreUnavailableError, ValueError) as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        settings.f_score = metrics["f_score_0.05"]
        settings.chamfer = metrics["chamfer_l2"]
        settings.has_score = True
        self.report(
            {"INFO"}, f"F@0.05 = {settings.f_score:.3f}, Chamfer-L2 = {settings.chamfer:.5f}"
        )
        return {"FINISHED"}


class MESH_OT_llm3d_use_candidate(bpy.types.Operator):
    """Put this candidate in the scene instead of the one there, with its program (one undo
    step)"""

    bl_idname = "mesh.llm3d_use_candidate"
    bl_label = "Use Candidate"
    # Not UNDO: the swap pushes one undo step of its own, after the mesh is built.
    bl_options = {"REGISTER"}

    number: bpy.props.IntProperty(name="Candidate", min=1)  # type: ignore[valid-type]

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        settings = _settings(context)
        return settings is not None and not _busy(context) and len(settings.candidates) > 0

    def execute(self, context: bpy.types.Context) -> OperatorResult:
        scene = context.scene
        settings = _settings(context)
        item = next((c for c in settings.candidates if c.number == self.number), None)
        if scene is None or item is None:
            self.report({"ERROR"}, f"No candidate {self.number}; Generate with Candidates > 1")
            return {"CANCELLED"}
        if not item.ok:
            self.report({"ERROR"}, f"Candidate {item.number} did not build: {item.error}")
            return {"CANCELLED"}
        text = settings.text or bpy.data.texts.new(f"{jobs.result_label([], 'candidate')}.py")
        collection = settings.collection
        result = pick.cached(scene.name, item.number)
        if result is None or collection is None:  # not in memory (the file was reloaded): run it
            text.from_string(item.code)
            settings.text = text
            ops: Any = bpy.ops.mesh
            return cast(OperatorResult, ops.llm3d_run())
        outcome = build_result(result, collection, result_name(collection))
        if not outcome.ok:
            self.report({"ERROR"}, outcome.error)
            return {"CANCELLED"}
        placement.place_and_frame(scene, outcome.objects, _xyz(settings.origin))
        text.from_string(item.code)
        for other in settings.candidates:
            other.kept = other.number == item.number
        settings.has_score = False
        score = f" (match {item.score:.2f})" if item.has_score else ""
        settings.status = f"Using candidate {item.number}{score} in '{collection.name}'."
        jobs.push_undo(f"llm3d: use candidate {item.number}")
        self.report({"INFO"}, settings.status)
        return {"FINISHED"}
