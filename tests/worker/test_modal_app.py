"""The Modal deployment (worker/farm/modal_app.py + api/modal_web.py) against the real modal SDK,
without a Modal account: one app holds the five functions with the configured resources, and
the plain-function bodies give the inline backend's results (select's: tests/api/test_select_modal.py)."""

from __future__ import annotations

import warnings

import pytest

modal = pytest.importorskip("modal", reason="pip install 'llm3d[modal]'")

from api import modal_web  # noqa: E402
from llm3d.config import load_config  # noqa: E402
from llm3d.schemas import ReferencePayload, reference_key  # noqa: E402
from worker.demo_programs import HOSTILE, OBJECTS, perturb  # noqa: E402
from worker.farm import modal_app  # noqa: E402
from worker.farm.celery_app import task_time_limits  # noqa: E402
from worker.scoring import ScoreJob, ScoreSettings  # noqa: E402
from worker.selection import RENDER_BUDGET_S  # noqa: E402


def registered() -> dict[str, object]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # registered_functions is deprecated, still the way
        return dict(modal_app.app.registered_functions)


def test_one_deploy_publishes_the_scoring_functions_and_the_api() -> None:
    """``modal deploy -m api.modal_web`` deploys one app: the worker's four functions and the
    API's ``web`` endpoint registered on it (the worker itself never imports the API)."""
    assert modal_app.app.name == modal_app.APP_NAME == "llm3d-reward"
    assert modal_web.app is modal_app.app
    assert set(registered()) == {"score", "select", "execute", "render", "web"}
    assert set(modal_app.FUNCTION_OPTIONS) == set(registered())


def test_image_installs_pyproject_extras_and_the_libraries_bpy_loads() -> None:
    assert modal_app.IMAGE_EXTRAS == ("blender", "metrics", "farm")
    assert modal_app.PYPROJECT.is_file()
    assert {"libgl1", "libxkbcommon0", "libgomp1"} <= set(modal_app.BPY_APT_PACKAGES)
    for name, options in modal_app.FUNCTION_OPTIONS.items():
        assert options["image"] is modal_app.image, name


def test_timeouts_nest_above_the_executor_and_concurrency_is_bounded() -> None:
    config = load_config()
    _, hard = task_time_limits(config)
    for name in ("score", "select", "execute"):
        assert modal_app.FUNCTION_OPTIONS[name]["timeout"] >= hard > config.executor.timeout_s
        assert modal_app.MAX_INPUTS[name] <= modal_app.FUNCTION_OPTIONS[name]["cpu"]
    # a candidate to match also renders: as long as a Celery select task may take, and more
    assert modal_app.FUNCTION_OPTIONS["select"]["timeout"] > hard + RENDER_BUDGET_S
    assert modal_app.MAX_INPUTS["web"] > 1, "the web endpoint serves concurrent requests"


def test_resources_and_timeouts_come_from_config() -> None:
    config = load_config(
        executor__timeout_s=30,
        modal__score_max_containers=128,
        modal__score_min_containers=4,
        modal__score_inputs=1,
        modal__score_cpu=1.0,
        modal__select_max_containers=8,
        modal__select_min_containers=2,
        modal__web_max_containers=2,
        modal__web_timeout_s=900,
        modal__web_scaledown_s=600,
    )
    options = modal_app.function_options(config)
    inputs = modal_app.max_inputs(config)
    _, hard = task_time_limits(config)
    assert options["score"]["max_containers"] == 128 and options["score"]["min_containers"] == 4
    assert options["score"]["cpu"] == 1.0 and inputs["score"] == inputs["execute"] == 1
    assert hard < options["score"]["timeout"] < modal_app.FUNCTION_OPTIONS["score"]["timeout"]
    assert options["execute"]["min_containers"] == 0, "only score and select are kept warm"
    select = options["select"]
    assert (select["max_containers"], select["min_containers"], select["cpu"]) == (8, 2, 1.0)
    assert inputs["select"] == 1 and hard + RENDER_BUDGET_S < select["timeout"]
    web = options["web"]
    assert (web["max_containers"], web["timeout"], web["scaledown_window"]) == (2, 900, 600)


def test_the_web_endpoint_reads_its_token_from_the_configured_secret() -> None:
    web = modal_app.FUNCTION_OPTIONS["web"]
    assert [type(s) for s in web["secrets"]] == [modal.Secret]
    for name in ("score", "select", "execute", "render"):
        assert "secrets" not in modal_app.FUNCTION_OPTIONS[name], f"{name} holds no secret"
    # the secret's variable is the one the API reads (ENV_ALIASES: LLM3D_API_TOKEN)
    config = load_config(environ={"LLM3D_API_TOKEN": "from-the-secret"})
    assert config.api.token is not None
    assert config.api.token.get_secret_value() == "from-the-secret"
    assert load_config(modal__secret_name="other").modal.secret_name == "other"


@pytest.mark.blender
@pytest.mark.slow
def test_function_bodies_give_the_inline_results() -> None:
    from worker.execution.executor import ExecutorPool
    from worker.farm.backends import InlineBackend

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
    from worker.farm.backends import ModalBackend, make_backend

    backend = make_backend(load_config(api__backend="modal"))
    assert isinstance(backend, ModalBackend) and backend.app_name == "llm3d-reward"
    other = make_backend(load_config(api__backend="modal", modal__app_name="llm3d-staging"))
    assert isinstance(other, ModalBackend) and other.app_name == "llm3d-staging"


def test_the_deployers_settings_travel_into_the_containers_but_not_the_token() -> None:
    env = modal_app.deploy_environment(
        {
            "LLM3D_EXECUTOR__TIMEOUT_S": "30",
            "LLM3D_MODAL__SCORE_INPUTS": "1",
            "LLM3D_API_TOKEN": "never-in-an-image",
            "HOME": "/root",
        }
    )
    assert env == {
        "LLM3D_EXECUTOR__TIMEOUT_S": "30",
        "LLM3D_MODAL__SCORE_INPUTS": "1",
        "LLM3D_API__BACKEND": "modal",
        "OMP_NUM_THREADS": "1",
    }
    assert load_config(environ=env).executor.timeout_s == 30
