"""worker.selection: the candidate step of best-of-N (run, gate, render, match) and its render
server, with a real Blender render server process."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

from llm3d.config import ExecutorConfig, RenderConfig
from llm3d.schemas import ExecStatus
from worker.selection import (
    CandidateOutcome,
    Renderer,
    RenderError,
    SelectJob,
    SelectSettings,
    match_candidate,
    select_job,
)
from worker.types import ExecResult

CONFIG = RenderConfig(resolution=64)


def box(size: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A closed box as 12 triangles."""
    v = np.array([[x, y, z] for x in (0, size) for y in (0, 1) for z in (0, 1)], dtype=np.float32)
    f = np.array(
        [[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
         [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]],
        dtype=np.int32,
    )  # fmt: skip
    return v, f


def test_an_unusable_run_keeps_its_status_and_is_never_rendered(tmp_path: Path) -> None:
    def render(*_: object) -> list[Path]:
        raise AssertionError("nothing to render")

    failed = ExecResult(ExecStatus.EXEC_FAILED, error="NameError: teleport (line 3)")
    outcome = match_candidate(failed, [], render, tmp_path)
    assert outcome.status is ExecStatus.EXEC_FAILED and outcome.score is None
    assert outcome.error == "NameError: teleport (line 3)"
    v, f = box()
    flat = ExecResult(ExecStatus.OK, v, f[:2])  # two faces: under the geometry gate
    gated = match_candidate(flat, [], render, tmp_path, executor_config=ExecutorConfig())
    assert gated.status is ExecStatus.NO_GEOMETRY and "faces" in (gated.error or "")


def test_an_outcome_travels_through_the_farm_carrier_unchanged() -> None:
    from worker.render_match import ViewMatch

    outcome = CandidateOutcome(
        ExecStatus.OK, 0.8, (ViewMatch(0.9, 0.5), ViewMatch(0.7, 0.4)), None, 0.1, 0.3, 0.05
    )
    result = outcome.to_result("g#1")
    assert result.reward is None and result.seconds == pytest.approx(0.45)
    assert CandidateOutcome.from_result(result) == outcome


@pytest.mark.blender
def test_the_render_server_renders_matches_and_comes_back_after_dying(tmp_path: Path) -> None:
    renderer = Renderer(CONFIG)
    try:
        v, f = box()
        views = renderer.render(v, f, tmp_path / "ref")
        assert [p.name for p in views] == [f"{view.name}.png" for view in CONFIG.views]
        same = match_candidate(ExecResult(ExecStatus.OK, v, f), views, renderer.render, tmp_path)
        long_v, long_f = box(3.0)
        other = ExecResult(ExecStatus.OK, long_v, long_f)
        longer = match_candidate(other, views, renderer.render, tmp_path / "long")
        assert same.score is not None and same.score > 0.99
        assert longer.score is not None and longer.score < same.score - 0.1
        assert same.render_s > 0 and same.match_s > 0
        # a mesh the renderer refuses is that request's error; the server lives on
        with pytest.raises(RenderError, match="non-finite"):
            renderer.render(np.full((3, 3), np.nan, np.float32), f[:1], tmp_path / "nan")
        pid = renderer.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # the server dies: this render fails, the next one works
        with pytest.raises(RenderError):
            renderer.render(v, f, tmp_path / "dead")
        assert len(renderer.render(v, f, tmp_path / "again")) == len(CONFIG.views)
    finally:
        renderer.close()


@pytest.mark.blender
def test_select_job_reports_a_broken_runner_or_view_as_infra_error(tmp_path: Path) -> None:
    def runner(code: str, timeout_s: float) -> ExecResult:
        raise OSError("the fork server is gone")

    job = SelectJob("g#0", "from bpy_lib import *\n", (b"png?",), SelectSettings(5.0, CONFIG))
    renderer = Renderer(CONFIG)
    try:
        bad_view = select_job(job, runner=runner, renderer=renderer)
        assert bad_view.status is ExecStatus.INFRA_ERROR and "not a readable image" in (
            bad_view.error or ""
        )
        v, f = box()
        png = renderer.render(v, f, tmp_path)[0].read_bytes()
        broken = select_job(
            SelectJob("g#1", job.code, (png,), job.settings), runner=runner, renderer=renderer
        )
        assert broken.status is ExecStatus.INFRA_ERROR and "fork server is gone" in (
            broken.error or ""
        )
    finally:
        renderer.close()
    assert SelectJob.from_dict(job.to_dict()) == job


@pytest.mark.blender
def test_extreme_meshes_from_a_program_are_one_requests_answer_not_the_servers_end(
    tmp_path: Path,
) -> None:
    """What a policy's program controls here is the mesh. The numeric extremes of it (a
    box 1e30 wide, one at 1e-30, all vertices in one point, faces out of range) each get
    views or a RenderError, within the render timeout, and the same server renders the
    next mesh and matches it as before."""
    renderer = Renderer(CONFIG)
    try:
        v, f = box()
        reference = renderer.render(v, f, tmp_path / "ref")
        pid = renderer.pid
        hostile = {
            "huge": (v * np.float32(1e30), f),
            "tiny": (v * np.float32(1e-30), f),
            "point": (np.zeros_like(v), f),
            "out_of_range": (v, f + 100),
        }
        for name, (hv, hf) in hostile.items():
            try:
                views = renderer.render(hv, hf, tmp_path / name)
            except RenderError:
                continue
            assert len(views) == len(CONFIG.views), name
        assert renderer.pid == pid, "an extreme mesh killed the render server"
        again = match_candidate(
            ExecResult(ExecStatus.OK, v, f), reference, renderer.render, tmp_path
        )
        assert again.score is not None and again.score > 0.99
    finally:
        renderer.close()
