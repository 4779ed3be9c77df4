"""The gated reward of DESIGN §4: every gate, every boundary, the format score."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from llm3d.config import ExecutorConfig
from llm3d.program import format_checks, format_score
from llm3d.schemas import ExecStatus
from tests.helpers import meshes
from worker.metrics import exact_copy_f_score, prepare_ground_truth
from worker.reward import (
    REWARD_VERSION,
    RewardBreakdown,
    compute_reward,
    gated_reward,
)
from worker.types import ExecResult

GOOD_CODE = """from bpy_lib import *

# object name: table
# part_1: top
box(name="top", size=[1, 1, 0.1])
# part_2: leg
cylinder(name="leg", radius=0.05, depth=1.0)
export_scene()
"""


@pytest.fixture(scope="module")
def cube_gt():  # type: ignore[no-untyped-def]
    return prepare_ground_truth(*meshes.unit_cube(), points=5000)


def ok_result(mesh: meshes.Mesh) -> ExecResult:
    vertices, faces = mesh
    return ExecResult(
        status=ExecStatus.OK,
        vertices=vertices.astype(np.float32),
        faces=faces.astype(np.int32),
    )


# ------------------------------------------------------------------------- the table


@pytest.mark.parametrize(
    ("status", "gate", "gated"),
    [
        (ExecStatus.EMPTY, 0, 0.00),
        (ExecStatus.REFUSED, 1, 0.05),
        (ExecStatus.EXEC_FAILED, 1, 0.05),
        (ExecStatus.TIMEOUT, 1, 0.05),
        (ExecStatus.NO_GEOMETRY, 2, 0.10),
        (ExecStatus.DEGENERATE, 3, 0.15),
    ],
)
def test_status_gates(status: ExecStatus, gate: int, gated: float) -> None:
    assert gated_reward(status) == (gate, gated)


@pytest.mark.parametrize(
    ("f_score", "gate", "gated"),
    [
        (0.0, 4, 0.20),
        (0.049, 4, 0.20),
        (0.05, 5, 0.30 + 0.70 * 0.05 / 0.60),
        (0.3, 5, 0.30 + 0.70 * 0.5),
        (0.6, 5, 1.0),
        (0.9, 5, 1.0),
        (1.0, 5, 1.0),
    ],
)
def test_f_score_gates_at_every_boundary(f_score: float, gate: int, gated: float) -> None:
    got_gate, got = gated_reward(ExecStatus.OK, f_score)
    assert got_gate == gate
    assert got == pytest.approx(gated, abs=1e-12)


def test_the_gated_reward_never_falls_as_the_f_score_rises() -> None:
    values = [gated_reward("ok", f)[1] for f in np.linspace(0, 1, 1001)]
    assert all(b >= a for a, b in itertools.pairwise(values))
    assert gated_reward("degenerate")[1] < values[0]


def test_infra_error_and_missing_f_score_have_no_gated_value() -> None:
    with pytest.raises(ValueError, match="infra_error"):
        gated_reward(ExecStatus.INFRA_ERROR)
    with pytest.raises(ValueError, match=r"F@0\.05"):
        gated_reward(ExecStatus.OK)


# ------------------------------------------------------------------------ the format


def test_format_checks_each_rule() -> None:
    assert format_checks(GOOD_CODE).score == 1.0
    assert format_score("") == 0.0
    no_comment = GOOD_CODE.replace("# part_1: top\n", "").replace("# part_2: leg\n", "")
    assert format_checks(no_comment).part_comment is False
    assert format_score(no_comment) == pytest.approx(2 / 3)
    no_export = GOOD_CODE.replace("export_scene()", "pass")
    assert format_checks(no_export).calls_export_scene is False
    no_import = GOOD_CODE.replace("from bpy_lib import *", "import math")
    assert format_checks(no_import).imports_bpy_lib is False


def test_format_checks_read_code_not_comments_or_strings() -> None:
    fake = 'import math\n# from bpy_lib import *\ns = "export_scene()"\n# export_scene()\n'
    checks = format_checks(fake)
    assert not checks.imports_bpy_lib and not checks.calls_export_scene
    assert format_checks("import bpy_lib\nbpy_lib.export_scene()\n# part 3: seat\n").score == 1.0
    assert not format_checks("from bpy_lib import *\n# part_1:\n").part_comment  # no label
    assert not format_checks("from bpy_lib import *\n# object: chair\n").part_comment


def test_format_checks_survive_code_that_does_not_parse() -> None:
    broken = "from bpy_lib import *\n# part_1: leg\nbox(size=[1, 2\nexport_scene()\n"
    assert format_checks(broken).score == 1.0


# -------------------------------------------------------------------- compute_reward


def test_a_perfect_program_gets_the_full_reward(cube_gt) -> None:  # type: ignore[no-untyped-def]
    out = compute_reward(GOOD_CODE, ok_result(meshes.unit_cube()), cube_gt)
    assert isinstance(out, RewardBreakdown)
    assert out.status == "ok" and out.error is None
    assert out.reward == pytest.approx(1.0)
    assert out.components["gated"] == 1.0 and out.components["format"] == 1.0
    assert out.components["gate"] == 5.0
    # independent samples (DESIGN §3): an exact copy is at the sampling floor, not 0,
    # and still far above F@0.05 = 0.60, where the reward is full
    assert out.metrics["f_score_0.05"] >= 0.99
    assert 0.0 < out.metrics["chamfer_l2"] < 1e-3
    assert out.reward_version == REWARD_VERSION == "gated-v2"
    assert set(out.to_dict()) == {
        "status",
        "reward",
        "components",
        "metrics",
        "error",
        "reward_version",
    }


def test_an_exact_copy_gets_the_full_reward_at_training_points() -> None:
    mesh = meshes.parts_object(seed=4)
    for seed in range(3):
        gt = prepare_ground_truth(*mesh, points=10_000, seed=seed)
        out = compute_reward(GOOD_CODE, ok_result(mesh), gt, seed=seed)
        assert out.metrics["f_score_0.05"] >= 0.99
        assert out.reward == pytest.approx(1.0)


def test_a_partial_match_follows_the_formula(cube_gt) -> None:  # type: ignore[no-untyped-def]
    out = compute_reward(GOOD_CODE, ok_result(meshes.unit_cube(centre=(0.3, 0.2, 0))), cube_gt)
    f = out.metrics["f_score_0.05"]
    assert 0.05 < f < 0.6
    assert out.reward == pytest.approx(0.9 * (0.30 + 0.70 * f / 0.60) + 0.1)


def test_a_far_prediction_lands_in_gate_4(cube_gt) -> None:  # type: ignore[no-untyped-def]
    out = compute_reward(GOOD_CODE, ok_result(meshes.unit_cube(centre=(5, 0, 0))), cube_gt)
    assert out.components["gate"] == 4.0
    assert out.reward == pytest.approx(0.9 * 0.20 + 0.1)


def test_infra_error_has_no_reward_never_zero() -> None:
    result = ExecResult(status=ExecStatus.INFRA_ERROR, error="fork server died")
    out = compute_reward(GOOD_CODE, result, None)
    assert out.reward is None
    assert out.status == "infra_error" and out.error == "fork server died"


@pytest.mark.parametrize(
    ("status", "gated"),
    [
        (ExecStatus.REFUSED, 0.05),
        (ExecStatus.EXEC_FAILED, 0.05),
        (ExecStatus.TIMEOUT, 0.05),
        (ExecStatus.NO_GEOMETRY, 0.10),
        (ExecStatus.DEGENERATE, 0.15),
    ],
)
def test_failed_runs_keep_their_format_points(status: ExecStatus, gated: float) -> None:
    out = compute_reward(GOOD_CODE, ExecResult(status=status, error="boom"), None)
    assert out.status == status.value and out.metrics == {}
    assert out.reward == pytest.approx(0.9 * gated + 0.1)
    assert out.error == "boom"


def test_code_without_bpy_lib_is_empty_whatever_the_executor_said(cube_gt) -> None:  # type: ignore[no-untyped-def]
    for code in ("", "   \n", "import math\nexport_scene()\n"):
        out = compute_reward(code, ok_result(meshes.unit_cube()), cube_gt)
        assert out.status == "empty"
        assert out.components["gated"] == 0.0
        assert out.reward == pytest.approx(0.1 * format_score(code))


def test_ok_results_are_regated_on_their_geometry(cube_gt) -> None:  # type: ignore[no-untyped-def]
    vertices, faces = meshes.unit_cube()
    few = compute_reward(GOOD_CODE, ok_result((vertices, faces[:3])), cube_gt)
    assert few.status == "no_geometry" and few.components["gated"] == 0.10
    bad = vertices.copy()
    bad[0, 0] = np.inf
    nonfinite = compute_reward(GOOD_CODE, ok_result((bad, faces)), cube_gt)
    assert nonfinite.status == "degenerate" and "non-finite" in (nonfinite.error or "")
    small = ExecutorConfig(max_vertices=8)
    many = ok_result(meshes.sphere(0.5, 1))
    out = compute_reward(GOOD_CODE, many, cube_gt, executor_config=small)
    assert out.status == "degenerate" and out.components["gated"] == 0.15


def test_an_ok_mesh_needs_a_ground_truth() -> None:
    with pytest.raises(ValueError, match="ground truth"):
        compute_reward(GOOD_CODE, ok_result(meshes.unit_cube()), None)


# ------------------------------------------------------------------ the gated-fine variant


def test_gated_fine_keeps_rising_where_the_seed_reward_saturates(cube_gt) -> None:  # type: ignore[no-untyped-def]
    """Once F@0.05 passes 0.6 every prediction gets the seed's full reward; the gated-fine
    variant still ranks a closer one higher (GRPO keeps an advantage to learn from)."""
    shifts = (0.03, 0.015, 0.0)
    seed_rewards, fine_rewards = [], []
    for shift in shifts:
        result = ok_result(meshes.unit_cube(centre=(shift, 0, 0)))
        seed = compute_reward(GOOD_CODE, result, cube_gt)
        fine = compute_reward(GOOD_CODE, result, cube_gt, variant="gated-fine")
        assert seed.metrics["f_score_0.05"] >= 0.6  # all three saturate the seed's reward
        seed_rewards.append(seed.reward)
        fine_rewards.append(fine.reward)
        f, f_fine = fine.metrics["f_score_0.05"], fine.metrics["f_score_0.02"]
        full = 0.98 * exact_copy_f_score(cube_gt, 0.02)
        expected = 0.30 + 0.70 * (0.5 * min(1, f / 0.6) + 0.5 * min(1, f_fine / full))
        assert fine.components["gated"] == pytest.approx(expected)
        assert (seed.reward_version, fine.reward_version) == ("gated-v2", "gated-fine-v1")
    assert seed_rewards == pytest.approx([1.0, 1.0, 1.0])
    assert fine_rewards[0] < fine_rewards[1] < fine_rewards[2]


def test_gated_fine_gives_an_exact_copy_the_full_reward_at_training_points() -> None:
    for mesh in (meshes.unit_cube(), meshes.parts_object(seed=4)):
        gt = prepare_ground_truth(*mesh, points=10_000, seed=0)
        out = compute_reward(GOOD_CODE, ok_result(mesh), gt, variant="gated-fine")
        assert out.metrics["f_score_0.02"] >= 0.98 * exact_copy_f_score(gt, 0.02)
        assert out.reward == pytest.approx(1.0)


def test_the_exact_copy_floor_predicts_what_an_exact_copy_scores() -> None:
    for mesh in (meshes.unit_cube(), meshes.parts_object(seed=1)):
        for seed in range(2):
            gt = prepare_ground_truth(*mesh, points=10_000, seed=seed)
            copy = compute_reward(GOOD_CODE, ok_result(mesh), gt, seed=seed)
            floor = exact_copy_f_score(gt, 0.02)
            assert copy.metrics["f_score_0.02"] == pytest.approx(floor, abs=0.01)


def test_gated_fine_keeps_every_gate(cube_gt) -> None:  # type: ignore[no-untyped-def]
    for status, gated in [(ExecStatus.EMPTY, 0.0), (ExecStatus.TIMEOUT, 0.05)]:
        assert gated_reward(status, variant="gated-fine") == gated_reward(status)
        assert gated_reward(status)[1] == gated
    far = compute_reward(
        GOOD_CODE, ok_result(meshes.unit_cube(centre=(5, 0, 0))), cube_gt, variant="gated-fine"
    )
    assert far.components["gate"] == 4.0 and far.reward == pytest.approx(0.9 * 0.20 + 0.1)
    with pytest.raises(ValueError, match="unknown reward variant"):
        gated_reward(ExecStatus.OK, 0.9, variant="gated-v3")
    with pytest.raises(ValueError, match=r"F@0\.02"):
        gated_reward(ExecStatus.OK, 0.9, variant="gated-fine")


def test_the_variant_is_a_setting_with_its_own_version() -> None:
    from llm3d.config import load_config
    from llm3d.exceptions import ConfigError
    from worker.scoring import ScoreSettings

    config = load_config(reward__variant="gated-fine")
    settings = ScoreSettings.from_config(config)
    assert settings.reward_variant == "gated-fine"
    assert ScoreSettings.from_dict(settings.to_dict()) == settings  # what a worker receives
    old = {k: v for k, v in settings.to_dict().items() if k != "reward_variant"}
    assert ScoreSettings.from_dict(old).reward_variant == "gated"  # a message from before
    with pytest.raises(ConfigError, match=r"add 0\.02 to metrics\.fscore_thresholds"):
        load_config(reward__variant="gated-fine", metrics__fscore_thresholds=[0.01, 0.05])
