"""Add-on preferences: the model endpoint, the repair loop and the execution mode.

The API key is a password property of the preferences: it lives in Blender's user
preferences, never in a .blend file, and the add-on never logs or shows it. When it is
empty the ``LLM3D_API_KEY`` or ``OPENAI_API_KEY`` environment variable is used.
"""

from __future__ import annotations

import ipaddress
import os
import struct
import tempfile
import threading
import urllib.parse
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bpy

from ._typing import OperatorResult
from .client import ChatClient, EndpointError

__all__ = [
    "PROVIDERS",
    "LLM3D_AddonPreferences",
    "MESH_OT_llm3d_pick_model",
    "MESH_OT_llm3d_test_connection",
    "Settings",
    "endpoint_is_local",
    "get_settings",
    "online_access_problem",
]

ADDON_ID = __package__ or "addon"

# Defaults follow configs/default.yaml's `addon:` section.
DEFAULT_URL = "http://127.0.0.1:8001/v1"
DEFAULT_MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"
DEFAULT_REPAIRS = 2

#: Provider presets: (id, label, API root, context in tokens, description). Picking one
#: fills in the URL and the context the server gives a model unless told otherwise
#: (Ollama and LM Studio load models with 4096; vLLM and SGLang with the model's own,
#: 32768 for Qwen2.5-VL).
PROVIDERS: tuple[tuple[str, str, str, int, str], ...] = (
    ("CUSTOM", "Custom", "", 0, "Type the API root yourself"),
    ("OLLAMA", "Ollama", "http://127.0.0.1:11434/v1", 4096, "ollama serve on this machine"),
    ("LMSTUDIO", "LM Studio", "http://127.0.0.1:1234/v1", 4096, "LM Studio's local server"),
    ("VLLM", "vLLM", "http://127.0.0.1:8000/v1", 32768, "vllm serve on this machine"),
    ("SGLANG", "SGLang", "http://127.0.0.1:30000/v1", 32768, "SGLang on this machine"),
    ("OPENAI", "OpenAI", "https://api.openai.com/v1", 128000, "OpenAI's API (needs a key)"),
    (
        "OPENROUTER",
        "OpenRouter",
        "https://openrouter.ai/api/v1",
        32768,
        "OpenRouter, many hosted models (needs a key)",
    ),
)

#: Answers of "Test connection", by preferences id (the thread writes, a timer reads).
_CONNECTION: dict[str, str] = {}
#: The models the endpoint listed at the last Test Connection (the model dropdown's items).
_MODELS: list[str] = []
# Blender keeps only pointers to enum item strings: the items must outlive the menu.
_MODEL_ITEMS: list[tuple[str, str, str]] = []
#: The context length the endpoint reported for the model tested (applied on the main thread).
_CONTEXT: dict[str, int] = {}


@dataclass(frozen=True)
class Settings:
    """The preferences as plain values (also when the add-on runs without them, in tests)."""

    endpoint_url: str = DEFAULT_URL
    model: str = DEFAULT_MODEL
    api_key: str = ""
    max_repairs: int = DEFAULT_REPAIRS
    request_timeout_s: float = 300.0
    run_timeout_s: float = 60.0
    max_tokens: int = 4096
    temperature: float = 0.2
    trusted_execution: bool = False
    image_size: int = 1024
    short_prompt: bool = False
    context_tokens: int = 32768
    history_size: int = 20
    candidates: int = 1

    def client(self) -> ChatClient:
        """The chat client these settings describe."""
        key = self.api_key or os.environ.get("LLM3D_API_KEY") or os.environ.get("OPENAI_API_KEY")
        return ChatClient(
            base_url=self.endpoint_url,
            model=self.model,
            api_key=key or "",
            timeout_s=self.request_timeout_s,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
        )


def endpoint_is_local(url: str) -> bool:
    """True for loopback endpoints (``localhost``, 127.0.0.0/8, ``::1``): not online access."""
    host = urllib.parse.urlsplit(url.strip()).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def online_access_problem(url: str) -> str | None:
    """Why the endpoint may not be used now, or None.

    Blender's "Allow Online Access" (Preferences > System > Network) governs every
    connection an extension makes to other machines; a server on this machine (loopback)
    needs no online access.
    """
    if endpoint_is_local(url) or bpy.app.online_access:
        return None
    if bpy.app.online_access_override:
        return (
            "Online access is disabled for this Blender session (started with --offline-mode); "
            "use an endpoint on this machine or restart Blender without it"
        )
    return (
        "Online access is off: enable Preferences > System > Network > Allow Online Access "
        "to reach this endpoint, or use a server on this machine (http://127.0.0.1:...)"
    )


def get_settings(context: bpy.types.Context) -> Settings:
    """The add-on's preferences, or the defaults when they are not registered."""
    preferences: Any = context.preferences
    addon = preferences.addons.get(ADDON_ID) if preferences is not None else None
    prefs: Any = addon.preferences if addon is not None else None
    if prefs is None:
        return Settings()
    return Settings(
        endpoint_url=prefs.endpoint_url,
        model=prefs.model,
        api_key=prefs.api_key,
        max_repairs=prefs.max_repairs,
        request_timeout_s=prefs.request_timeout_s,
        run_timeout_s=prefs.run_timeout_s,
        max_tokens=prefs.max_tokens,
        temperature=prefs.temperature,
        trusted_execution=prefs.trusted_execution,
        image_size=prefs.image_size,
        short_prompt=prefs.short_prompt,
        context_tokens=prefs.context_tokens,
        history_size=prefs.history_size,
        candidates=prefs.candidates,
    )


def _provider_changed(self: Any, _context: bpy.types.Context) -> None:
    for ident, _label, url, context_tokens, _description in PROVIDERS:
        if ident == self.provider and url:
            self.endpoint_url = url
            self.context_tokens = context_tokens


def _model_items(_self: Any, _context: bpy.types.Context | None) -> list[tuple[str, str, str]]:
    _MODEL_ITEMS[:] = [(m, m, "Served by the endpoint") for m in _MODELS] or [
        ("", "No models listed: press Test Connection", "")
    ]
    return _MODEL_ITEMS


class LLM3D_AddonPreferences(bpy.types.AddonPreferences):
    """Where the model runs and how its programs are executed."""

    bl_idname = ADDON_ID

    provider: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Provider",
        description="Fills in the endpoint URL of a common server; then pick the model",
        items=[(i, label, d) for i, label, _url, _ctx, d in PROVIDERS],
        default="CUSTOM",
        update=_provider_changed,
    )
    endpoint_url: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Endpoint URL",
        description="OpenAI-compatible API root (vLLM, SGLang, Ollama, LM Studio, a provider)",
        default=DEFAULT_URL,
    )
    model: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Model", description="Model name the server serves", default=DEFAULT_MODEL
    )
    api_key: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="API Key",
        description="Bearer token; empty uses $LLM3D_API_KEY or $OPENAI_API_KEY",
        subtype="PASSWORD",
    )
    max_repairs: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Repair Attempts",
        description="How often a failed program is sent back to the model with its error",
        default=DEFAULT_REPAIRS,
        min=0,
        max=10,
    )
    candidates: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Candidates",
        description=(
            "Answers a Generate asks for; each is built in the sandbox, rendered and matched "
            "with the images, and the best is kept (the others can be swapped in)"
        ),
        default=1,
        min=1,
        max=8,
    )
    request_timeout_s: bpy.props.FloatProperty(  # type: ignore[valid-type]
        name="Request Timeout (s)", default=300.0, min=5.0, max=3600.0
    )
    run_timeout_s: bpy.props.FloatProperty(  # type: ignore[valid-type]
        name="Program Time Limit (s)",
        description="A program running longer than this is stopped",
        default=60.0,
        min=1.0,
        max=3600.0,
    )
    max_tokens: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Max Tokens", default=4096, min=256, max=65536
    )
    temperature: bpy.props.FloatProperty(  # type: ignore[valid-type]
        name="Temperature", default=0.2, min=0.0, max=2.0
    )
    image_size: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Image Size (px)",
        description=(
            "Images larger than this (longer side) are downscaled before sending; "
            "0 sends them as they are. Smaller images fit small local models' context"
        ),
        default=1024,
        min=0,
        max=8192,
    )
    short_prompt: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Short Prompt",
        description=(
            "Send the short bpy_lib reference (signatures only, about half the tokens) "
            "for models with a small context"
        ),
        default=False,
    )
    context_tokens: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Model Context (tokens)",
        description=(
            "The model's context length; Generate warns when the prompt and Max Tokens "
            "likely exceed it (0: do not check)"
        ),
        default=32768,
        min=0,
        max=1_048_576,
    )
    history_size: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="History Size",
        description="How many attempts the History keeps (in the .blend, with thumbnails)",
        default=20,
        min=1,
        max=200,
    )
    trusted_execution: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Trusted Execution (unsafe)",
        description=(
            "Run generated programs inside this Blender, without the sandbox, its policy and "
            "its hard time limit, with all Python builtins. Only for models and endpoints you "
            "trust: a program could then read or delete files, reach the network, or hang "
            "Blender"
        ),
        default=False,
    )

    def draw(self, context: bpy.types.Context) -> None:
        """The preferences page."""
        layout = self.layout
        col = layout.column()
        col.prop(self, "provider")
        col.prop(self, "endpoint_url")
        row = col.row(align=True)
        row.prop(self, "model")
        row.operator(MESH_OT_llm3d_pick_model.bl_idname, text="", icon="DOWNARROW_HLT")
        col.prop(self, "api_key")
        row = col.row()
        row.operator(MESH_OT_llm3d_test_connection.bl_idname, icon="URL")
        row.label(text=_CONNECTION.get(ADDON_ID, ""))
        problem = online_access_problem(self.endpoint_url)
        if problem:
            col.label(text=problem, icon="ERROR")
        col.separator()
        col.prop(self, "max_repairs")
        col.prop(self, "candidates")
        col.prop(self, "request_timeout_s")
        col.prop(self, "run_timeout_s")
        row = col.row(align=True)
        row.prop(self, "max_tokens")
        row.prop(self, "temperature")
        row = col.row(align=True)
        row.prop(self, "image_size")
        row.prop(self, "context_tokens")
        col.prop(self, "short_prompt")
        col.prop(self, "history_size")
        col.separator()
        from .background import describe_layers

        col.label(text=describe_layers(False), icon="LOCKED")
        col.prop(self, "trusted_execution")
        if self.trusted_execution:
            box = col.box()
            box.label(text="Programs run unchecked, with full Python: they can read,", icon="ERROR")
            box.label(text="write or delete files and use the network. Trust the model first.")
            box.label(text="They run inside Blender: a loop inside C cannot be stopped.")


class MESH_OT_llm3d_test_connection(bpy.types.Operator):
    """Ask the endpoint which models it serves (on a thread; the answer shows beside)"""

    bl_idname = "mesh.llm3d_test_connection"
    bl_label = "Test Connection"
    bl_options = {"REGISTER"}

    def execute(self, context: bpy.types.Context) -> OperatorResult:
        settings = get_settings(context)
        problem = online_access_problem(settings.endpoint_url)
        if problem:
            self.report({"ERROR"}, problem)
            return {"CANCELLED"}
        _CONNECTION[ADDON_ID] = "Connecting..."
        thread = threading.Thread(
            target=_test_connection, args=(settings,), name="llm3d-test-connection", daemon=True
        )
        thread.start()
        if not bpy.app.timers.is_registered(_poll_connection):
            bpy.app.timers.register(_poll_connection, first_interval=0.25)
        return {"FINISHED"}


class MESH_OT_llm3d_pick_model(bpy.types.Operator):
    """Pick the model from those the endpoint serves (press Test Connection to list them)"""

    bl_idname = "mesh.llm3d_pick_model"
    bl_label = "Pick Model"
    bl_options = {"REGISTER", "INTERNAL"}
    bl_property = "model"

    model: bpy.props.EnumProperty(name="Model", items=_model_items)  # type: ignore[valid-type]

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> OperatorResult:
        if not _MODELS:
            self.report({"ERROR"}, "No model list yet: press Test Connection first")
            return {"CANCELLED"}
        wm = context.window_manager
        if wm is None:
            return {"CANCELLED"}
        wm.invoke_search_popup(self)
        return {"FINISHED"}

    def execute(self, context: bpy.types.Context) -> OperatorResult:
        preferences: Any = context.preferences
        addon = preferences.addons.get(ADDON_ID) if preferences is not None else None
        if addon is None or not self.model:
            self.report({"ERROR"}, "No model list yet: press Test Connection first")
            return {"CANCELLED"}
        addon.preferences.model = self.model
        self.report({"INFO"}, f"Model: {self.model}")
        return {"FINISHED"}


def _probe_png() -> Path:
    """A tiny PNG for the image check of Test Connection (written once a session)."""
    path = Path(tempfile.gettempdir()) / "llm3d-probe.png"
    if not path.is_file():
        row = b"\x00" + b"\x80\x80\x80" * 8
        header = struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0)

        def chunk(kind: bytes, data: bytes) -> bytes:
            crc = struct.pack(">I", zlib.crc32(kind + data))
            return struct.pack(">I", len(data)) + kind + data + crc

        path.write_bytes(
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(row * 8))
            + chunk(b"IEND", b"")
        )
    return path


def _test_connection(settings: Settings) -> None:
    client = settings.client()
    try:
        contexts = client.model_contexts()
    except EndpointError as e:
        _CONNECTION[ADDON_ID] = f"Failed: {e}"
        return
    models = list(contexts)
    _MODELS[:] = models
    if settings.model not in models:
        offered = ", ".join(models[:5]) or "none"
        _CONNECTION[ADDON_ID] = (
            f"Connected, but {settings.model!r} is not served: pick one with the "
            f"model button (has: {offered})"
        )
        return
    try:
        client.probe_image(_probe_png())
    except EndpointError as e:
        _CONNECTION[ADDON_ID] = f"Connected, but {e}"
        return
    context = contexts.get(settings.model, 0)
    note = f" (context {context} tokens)" if context else ""
    if context:
        _CONTEXT[settings.model] = context
    _CONNECTION[ADDON_ID] = f"OK: {settings.model} is served and accepts images{note}"


def stop_polling() -> None:
    """Remove the connection-test timer (on unregister: a timer left at exit crashes Blender)."""
    while bpy.app.timers.is_registered(_poll_connection):
        bpy.app.timers.unregister(_poll_connection)


def _poll_connection() -> float | None:
    """Timer: redraw while Test Connection runs; then set Model Context to what the endpoint
    reported for the model (Blender data is written here, on the main thread)."""
    for window in bpy.context.window_manager.windows if bpy.context.window_manager else ():
        for area in window.screen.areas:
            area.tag_redraw()
    if _CONNECTION.get(ADDON_ID) == "Connecting...":
        return 0.25
    preferences: Any = bpy.context.preferences
    addon = preferences.addons.get(ADDON_ID) if preferences is not None else None
    if addon is not None and addon.preferences.model in _CONTEXT:
        addon.preferences.context_tokens = _CONTEXT.pop(addon.preferences.model)
    return None


def connection_status() -> str:
    """The last answer of Test Connection ('' before the first)."""
    return _CONNECTION.get(ADDON_ID, "")


def _reset_connection_status() -> None:
    _CONNECTION.pop(ADDON_ID, None)
