"""Registration, the panel's and the preferences' draw(), Test Connection, and the client."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import bpy
import pytest

from tests.addon.conftest import MODEL, ChatServer, png_bytes

pytestmark = pytest.mark.blender

CLASS_NAMES = (
    "MESH_OT_llm3d_generate",
    "MESH_OT_llm3d_cancel",
    "MESH_OT_llm3d_run",
    "MESH_OT_llm3d_score",
    "MESH_OT_llm3d_add_images",
    "VIEW3D_PT_llm3d_image_to_code",
    "LLM3D_UL_images",
)


class StubLayout:
    """Records every layout call (no UI exists headless); each call returns a child layout."""

    def __init__(self, log: list[tuple[str, tuple[Any, ...], dict[str, Any]]]) -> None:
        self._log = log

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> StubLayout:
            self._log.append((name, args, kwargs))
            return StubLayout(self._log)

        return call


def _draw_panel() -> tuple[list[str], list[str], list[tuple[str, tuple[Any, ...], dict[str, Any]]]]:
    from addon import ui

    log: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
    ui.VIEW3D_PT_llm3d_image_to_code.draw(SimpleNamespace(layout=StubLayout(log)), bpy.context)  # type: ignore[arg-type]
    labels = [str(kw.get("text", "")) for name, _, kw in log if name == "label"]
    ops = [str(args[0]) for name, args, _ in log if name == "operator"]
    return labels, ops, log


def test_register_and_unregister_twice() -> None:
    import addon_utils

    def fail(exc: BaseException) -> None:
        raise exc

    for _ in range(2):
        addon_utils.enable("addon", default_set=True, handle_error=fail)
        assert "addon" in bpy.context.preferences.addons
        assert hasattr(bpy.types.Scene, "llm3d")
        assert all(hasattr(bpy.types, name) for name in CLASS_NAMES)
        assert type(bpy.context.scene.llm3d).bl_rna.properties["score_points"].default == 10_000
        module = sys.modules["addon"]
        handlers = [h for h in bpy.app.handlers.load_pre if h is module._cancel_on_load]
        assert len(handlers) == 1
        addon_utils.disable("addon", default_set=True, handle_error=fail)
        assert module._cancel_on_load not in bpy.app.handlers.load_pre
        assert "addon" not in bpy.context.preferences.addons
        assert not hasattr(bpy.types.Scene, "llm3d")
        assert not any(hasattr(bpy.types, name) for name in CLASS_NAMES)


def test_unregister_cancels_a_running_job(chat_server: ChatServer, addon: Any) -> None:
    import addon_utils

    from addon import jobs, operators, preferences

    chat_server.hold.clear()
    scene = bpy.context.scene
    job = jobs.Job(
        client=preferences.get_settings(bpy.context).client(),
        system=operators.system_prompt(),
        images=[],
        max_attempts=1,
        label="llm3d x",
    )
    jobs.start_job(scene, job, register_timer=False)
    addon_utils.disable("addon", default_set=True)
    assert job.cancel.is_set()
    assert jobs.active_job(scene) is None
    assert jobs.drain(scene.name) is None
    addon_utils.enable("addon", default_set=True)  # the fixture disables it again


def test_panel_draws_every_section(addon: Any, images: list[Path]) -> None:
    settings = bpy.context.scene.llm3d
    labels, ops, log = _draw_panel()
    assert ops == [
        "mesh.llm3d_add_images",
        "mesh.llm3d_remove_image",
        "mesh.llm3d_add_view",
        "preferences.addon_show",
        "mesh.llm3d_pick_model",
        "mesh.llm3d_test_connection",
        "mesh.llm3d_generate",
        "mesh.llm3d_run",
        "mesh.llm3d_refine",
        "mesh.llm3d_score",
    ]
    props = [args[1] for name, args, _ in log if name == "prop"]
    # the prompt, then the endpoint: chosen in the panel too, a preset filling in the URL
    assert props[:4] == ["prompt", "provider", "endpoint_url", "model"]
    assert "No images: the prompt alone describes the object" in labels
    assert not any("Online access" in label for label in labels)  # a local endpoint
    assert (
        "template_list",
        ("LLM3D_UL_images", "", settings, "images", settings, "image_index"),
    ) in [(n, a) for n, a, _ in log]

    item = settings.images.add()
    item.path, item.name = str(images[0]), images[0].name
    settings.status = "Done: 2 parts in 'llm3d mug' (attempt 2/3)."
    settings.error = "ValueError: box(size): expected 3 positive lengths, got [1, 1] (line 3) " * 2
    attempt = settings.attempts.add()
    attempt.number, attempt.ok, attempt.error = 1, False, "NameError: name 'cube' is not defined"
    settings.has_score, settings.f_score, settings.chamfer = True, 0.8125, 0.00042
    labels, ops, log = _draw_panel()
    assert settings.status in labels
    wrapped = [
        label for label in labels if "box(size)" in label or "expected" in label or "got" in label
    ]
    assert " ".join(" ".join(labels).split()).count("ValueError") == 2
    assert all(len(label) <= 48 for label in wrapped)
    assert "F@0.05: 0.812" in labels and "Chamfer-L2: 0.00042" in labels
    assert any(n == "template_list" and a[0] == "LLM3D_UL_attempts" for n, a, _ in log)
    assert "Each Generate, Refine and Run is kept here" in labels  # the history, empty
    assert "refine_render" in [args[1] for name, args, _ in log if name == "prop"]

    entry = settings.history.add()
    entry.name, entry.ok, entry.error = "Run 15:04", False, "NameError: name 'cube' is not defined"
    labels, ops, log = _draw_panel()
    assert any(n == "template_list" and a[0] == "LLM3D_UL_history" for n, a, _ in log)
    assert ops[-2:] == ["mesh.llm3d_restore", "mesh.llm3d_score"]
    assert "NameError: name 'cube' is not defined" in labels


def test_panel_explains_online_access_and_trusted_mode(addon: Any) -> None:
    prefs = bpy.context.preferences.addons["addon"].preferences
    prefs.endpoint_url = "https://api.example.com/v1"
    prefs.trusted_execution = True
    labels, _, _ = _draw_panel()
    text = " ".join(labels)
    assert "Online access is off" in text and "Allow Online Access" in text
    assert "Trusted execution: programs run unchecked" in labels


def test_panel_shows_cancel_while_a_job_runs(
    addon: Any, chat_server: ChatServer, images: list[Path]
) -> None:
    chat_server.hold.clear()
    bpy.ops.mesh.llm3d_add_images(directory=str(images[0].parent), files=[{"name": images[0].name}])
    bpy.ops.mesh.llm3d_generate()
    labels, ops, _ = _draw_panel()
    assert "mesh.llm3d_cancel" in ops
    assert labels.count("Sending the images to the model...") == 1
    bpy.ops.mesh.llm3d_cancel()
    _, ops, _ = _draw_panel()
    assert "mesh.llm3d_cancel" not in ops


def test_lists_draw_their_items(addon: Any, tmp_path: Path) -> None:
    from addon import ui

    image = tmp_path / "front.png"
    image.write_bytes(png_bytes())
    rows: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
    present = SimpleNamespace(path=str(image), name="front.png")
    missing = SimpleNamespace(path=str(tmp_path / "gone.png"), name="gone.png")
    for item in (present, missing):
        ui.LLM3D_UL_images.draw_item(None, bpy.context, StubLayout(rows), None, item, 0, None, "")  # type: ignore[arg-type]
    assert rows[0][2]["text"] == "front.png"
    # the thumbnail is loaded (headless Blender has no icons, so the row shows a generic one)
    assert ui._PREVIEWS["images"][str(image)].image_size[:] == (4, 3)
    assert rows[1][2] == {"text": "gone.png (missing)", "icon": "ERROR"}
    rows.clear()
    for item in (
        SimpleNamespace(number=1, ok=False, error="SyntaxError: invalid syntax (line 2)"),
        SimpleNamespace(number=2, ok=True, error=""),
    ):
        ui.LLM3D_UL_attempts.draw_item(None, bpy.context, StubLayout(rows), None, item, 0, None, "")  # type: ignore[arg-type]
    assert [r[2]["text"] for r in rows] == [
        "Attempt 1: SyntaxError: invalid syntax (line 2)",
        "Attempt 2: ok",
    ]


def test_preferences_draw_and_hide_the_key(addon: Any) -> None:
    from addon import preferences

    prefs = bpy.context.preferences.addons["addon"].preferences
    assert type(prefs).bl_rna.properties["api_key"].subtype == "PASSWORD"
    log: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
    fake = SimpleNamespace(
        layout=StubLayout(log),
        endpoint_url="https://api.example.com/v1",
        trusted_execution=True,
    )
    preferences.LLM3D_AddonPreferences.draw(fake, bpy.context)  # type: ignore[arg-type]
    props = [args[1] for name, args, _ in log if name == "prop"]
    assert props[:4] == ["provider", "endpoint_url", "model", "api_key"]
    assert {"image_size", "context_tokens", "short_prompt"} <= set(props)
    labels = " ".join(str(kw.get("text", "")) for name, _, kw in log if name == "label")
    assert "Online access is off" in labels
    assert "read," in labels  # the trusted-mode warning
    assert "sk-" not in repr(preferences.get_settings(bpy.context).client())


def _wait_connection(timeout_s: float = 10.0) -> str:
    from addon import preferences

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = preferences.connection_status()
        if status != "Connecting...":
            return status
        time.sleep(0.02)
    raise AssertionError("Test Connection did not answer")


def test_test_connection(addon: Any, chat_server: ChatServer) -> None:
    from addon import preferences

    prefs = bpy.context.preferences.addons["addon"].preferences
    assert bpy.ops.mesh.llm3d_test_connection() == {"FINISHED"}
    assert _wait_connection() == (
        f"OK: {MODEL} is served and accepts images (context 16384 tokens)"
    )
    assert prefs.context_tokens == 32768
    preferences._poll_connection()  # the timer, on the main thread: Model Context follows
    assert prefs.context_tokens == 16384
    assert chat_server.requests[-1]["messages"][0]["content"][0]["type"] == "image_url"
    prefs.model = "other/model"
    bpy.ops.mesh.llm3d_test_connection()
    assert _wait_connection() == (
        f"Connected, but 'other/model' is not served: pick one with the model button (has: {MODEL})"
    )
    # the model button then offers what the server listed
    assert bpy.ops.mesh.llm3d_pick_model(model=MODEL) == {"FINISHED"}
    assert prefs.model == MODEL
    # a text-only model: the connection works, the image does not
    chat_server.text_only = True
    bpy.ops.mesh.llm3d_test_connection()
    status = _wait_connection()
    assert status.startswith(f"Connected, but '{MODEL}' does not accept images"), status
    assert "pick a vision model" in status
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    prefs.endpoint_url = f"http://127.0.0.1:{port}/v1"
    bpy.ops.mesh.llm3d_test_connection()
    status = _wait_connection()
    assert status.startswith(f"Failed: cannot reach http://127.0.0.1:{port}/v1/models")
    assert "is the server running?" in status


def test_preference_defaults_follow_the_config() -> None:
    from addon import preferences
    from llm3d.config import load_config

    config = load_config().addon
    assert config.endpoint_url == preferences.DEFAULT_URL
    assert config.model == preferences.DEFAULT_MODEL
    assert config.max_repairs == preferences.DEFAULT_REPAIRS


def test_provider_presets_fill_in_the_url(addon: Any) -> None:
    prefs = bpy.context.preferences.addons["addon"].preferences
    assert prefs.context_tokens == 32768  # vLLM's Qwen2.5-VL, the default model
    prefs.provider = "OLLAMA"
    assert prefs.endpoint_url == "http://127.0.0.1:11434/v1"
    assert prefs.context_tokens == 4096  # what Ollama gives a model unless told otherwise
    prefs.provider = "LMSTUDIO"
    assert prefs.endpoint_url == "http://127.0.0.1:1234/v1"
    prefs.provider = "VLLM"
    assert prefs.endpoint_url == "http://127.0.0.1:8000/v1"
    prefs.provider = "OPENAI"
    assert prefs.endpoint_url == "https://api.openai.com/v1"
    prefs.provider = "CUSTOM"  # keeps what is there, for the artist to edit
    assert prefs.endpoint_url == "https://api.openai.com/v1"
