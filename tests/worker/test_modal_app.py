"""worker/modal_app.py against the real modal SDK, without a Modal account: the module
imports, its functions are registered with the intended image, resources, timeouts and
concurrency, and their plain-function bodies give the inline backend's results."""

from __future__ import annotations

import re
import warnings

import pytest

modal = pytest.importorskip("modal", reason="pip install 'llm3d[modal]'")

from llm3d.config import load_config  # noqa: E402
from worker import modal_app  # noqa: E402
from worker.celery_app import task_time_limits  # noqa: E402
from worker.samples import HOSTILE, OBJECTS, perturb  # noqa: E402
from worker.scoring import ReferencePayload, ScoreJob, ScoreSettings, reference_key  # noqa: E402


def registered() -> dict[str, object]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # registered_functions is deprecated, still the way
        return dict(modal_app.app.registered_functions)


def test_app_registers_the_four_functions_on_the_blender_image() -> None:
    assert modal_app.app.name == modal_app.APP_NAME == "llm3d-reward"
    functions = registered()
    assert set(functions) == {"score", "execute", "render", "web"}
    for name, function in functions.items():
        spec = function._spec_  # type: ignore[attr-defined]
        sources = spec.image._added_python_source_set
        assert {"llm3d", "bpy_lib", "worker", "api"} <= set(sources), name
        options = modal_app.FUNCTION_OPTIONS[name]
        assert (spec.cpu, spec.memory) == (options["cpu"], options["memory"]), name


def test_image_is_debian_slim_python_311_with_bpy_and_its_libraries() -> None:
    assert "bpy==4.2.0" in modal_app.PYTHON_PACKAGES
    assert {"libgl1", "libxkbcommon0", "libgomp1"} <= set(modal_app.BPY_APT_PACKAGES)
    spec = registered()["score"]._spec_  # type: ignore[attr-defined]
    layers: list[str] = []
    image = spec.image
    while True:
        parents = [d for d in image._deps() if type(d).__name__ == "_Image"]
        if not parents:
            break
        image = parents[0]
        match = re.search(r"_Image\.(\w+)\.<locals>", repr(image))
        layers.append(match.group(1) if match else repr(image))
    assert layers == [
        "Image(local files)",  # our packages and configs/, added last (no rebuild on edits)
        "env",
        "uv_pip_install",
        "apt_install",
        "debian_slim",
    ]


def test_timeouts_nest_above_the_executor_and_concurrency_is_bounded() -> None:
    config = load_config()
    _, hard = task_time_limits(config)
    for name in ("score", "execute"):
        assert modal_app.FUNCTION_OPTIONS[name]["timeout"] >= hard > config.executor.timeout_s
        assert modal_app.MAX_INPUTS[name] <= modal_app.FUNCTION_OPTIONS[name]["cpu"]
    assert modal_app.MAX_INPUTS["web"] > 1, "the web endpoint serves concurrent requests"
    assert registered()["web"]._is_web_endpoint()  # type: ignore[attr-defined]


@pytest.mark.blender
@pytest.mark.slow
def test_function_bodies_give_the_inline_results() -> None:
    from worker.backends import InlineBackend
    from worker.executor import ExecutorPool

    config = load_config()
    table = OBJECTS["table"]
    ref = ReferencePayload(code=table)
    settings = ScoreSettings.from_config(config, points=2000, timeout_s=10)
    jobs = [
        ScoreJob("exact", table, reference_key(ref), settings, ref),
        ScoreJob("perturbed", perturb(table, 1.25), reference_key(ref), settings, ref),
        ScoreJob("hostile", HOSTILE[0].code, reference_key(ref), settings, ref),
    ]
    try:
        modal_results = [modal_app.score_body(j.to_dict()) for j in jobs]
        executed = modal_app.execute_body(table, 10)
    finally:
        if modal_app._scorer is not None:
            modal_app._scorer.close()
            modal_app._scorer = None
    with ExecutorPool(config.executor, size=1) as pool:
        inline = [InlineBackend(config, pool=pool).score_one(j) for j in jobs]
    for got, want in zip(modal_results, inline, strict=True):
        got.pop("seconds")
        assert got == want.model_dump(mode="json", exclude={"seconds"})
    assert [r.status for r in inline] == ["ok", "ok", "refused"]
    assert executed["status"] == "ok" and len(executed["faces"]) > 4


def test_modal_backend_is_chosen_by_config() -> None:
    from worker.backends import ModalBackend, make_backend

    backend = make_backend(load_config(api__backend="modal"))
    assert isinstance(backend, ModalBackend) and backend.app_name == "llm3d-reward"
