"""The evaluation runner end to end: both baselines and the OpenAI-compatible policy.

A small dataset of bpy_lib examples (4 eval objects, 6 training objects), a real reward
service (``llm3d serve``, inline backend) and, for the ``openai`` policy, a local HTTP
server speaking chat completions.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from environments.blender_3d.dataset import Sample, image_data_url, read_split
from tests.api.farm import Farm, start_farm
from tests.environments.chat_server import chat_server
from training.eval_runner import EvalSettings, run_eval
from training.policies import OpenAIPolicy, OraclePolicy, RetrievalPolicy

pytestmark = [pytest.mark.blender, pytest.mark.slow]

EVAL = ["mug", "table", "chair", "bottle"]
TRAIN = ["stool", "bench", "vase", "bowl", "wine_glass", "round_table"]
POINTS = 5000


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.eval_examples import build_split

    out = tmp_path_factory.mktemp("eval-data")
    build_split(out, EVAL, "eval", resolution=64, system="bpy_lib")
    build_split(out, TRAIN, "sft", resolution=64, system="bpy_lib")
    return out


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    running = start_farm(
        "inline", tmp_path_factory.mktemp("farm"), extra_env={"LLM3D_API__MAX_REQUEST_MB": "32"}
    )
    yield running
    running.stop()


def settings(data: Path, farm: Farm, out: Path, **kw: Any) -> EvalSettings:
    values: dict[str, Any] = {"points": POINTS, "grid": False, "reward_url": farm.url}
    values.update(kw)
    return EvalSettings(split=data / "eval.jsonl", out_dir=out, **values)


class Counting:
    """Wraps a policy and counts how many completions it was asked for."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.fingerprint = inner.fingerprint
        self.asked = 0

    def generate(self, sample: Sample, k: int) -> list[str]:
        self.asked += k
        return list(self.inner.generate(sample, k))


def test_oracle_is_the_ceiling_and_writes_every_output(
    data: Path, farm: Farm, tmp_path: Path
) -> None:
    report = run_eval(settings(data, farm, tmp_path, grid=True), OraclePolicy())
    overall = report["results"]["overall"]
    assert overall["tasks"] == 4 and overall["infra_errors"] == 0
    assert overall["execution_rate"] == 1.0
    assert overall["f_score_mean"] == pytest.approx(1.0, abs=1e-3)
    assert overall["f_score_ge_0.9"] == 1.0 and overall["pass@1"] == 1.0
    assert overall["mean_reward"] == pytest.approx(1.0, abs=1e-3)
    assert set(report["results"]["by_category"]) == {"container", "furniture"}
    assert report["settings"]["points"] == POINTS
    for name in ("report.json", "report.md", "f_score_hist.png", "per_category.png", "grid.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    full = json.loads((tmp_path / "report.json").read_text())
    assert len(full["records"]) == 4
    assert {r["status"] for r in full["records"]} == {"ok"}
    assert "| overall | 4 | 100.0% | 1.000 |" in (tmp_path / "report.md").read_text()
    from PIL import Image

    with Image.open(tmp_path / "grid.png") as grid:  # three cases, two rows of 4 views each
        assert grid.width > 4 * 160 and grid.height > 3 * 2 * 160


def test_retrieval_is_worse_than_oracle(data: Path, farm: Farm, tmp_path: Path) -> None:
    train = read_split(data / "sft.jsonl")
    policy = RetrievalPolicy(train)
    for sample in read_split(data / "eval.jsonl"):
        found = policy.nearest(sample, 2)
        assert len({s.id for s, _ in found}) == 2 and found[0][1] <= found[1][1]
    report = run_eval(settings(data, farm, tmp_path, k=2), policy)
    overall = report["results"]["overall"]
    assert overall["completions"] == 8
    assert overall["execution_rate"] == 1.0  # real programs, just the wrong objects
    assert overall["f_score_mean"] < 0.9
    assert overall["mean_reward"] < 0.99
    assert overall["best_of_k_f_score_mean"] >= overall["f_score_mean"]
    assert overall["pass@2"] < 1.0
    # retrieval by views: the bottle's nearest training object is another container
    bottle = next(s for s in read_split(data / "eval.jsonl") if s.id == "eval-bottle")
    assert policy.nearest(bottle, 1)[0][0].category == "container"


def test_a_rerun_pays_nothing_twice(data: Path, farm: Farm, tmp_path: Path) -> None:
    first_policy = Counting(OraclePolicy())
    first = run_eval(settings(data, farm, tmp_path, k=2, limit=2), first_policy)
    assert first_policy.asked == 4
    scores = (tmp_path / "scores.jsonl").read_text().splitlines()
    second_policy = Counting(OraclePolicy())
    second = run_eval(settings(data, farm, tmp_path, k=3, limit=2), second_policy)
    assert second_policy.asked == 2  # only the third sample of each task is new
    assert len((tmp_path / "scores.jsonl").read_text().splitlines()) == len(scores)  # same code
    assert second["results"]["overall"]["completions"] == 6
    assert (
        first["results"]["overall"]["f_score_mean"] == second["results"]["overall"]["f_score_mean"]
    )


def test_openai_policy_against_a_chat_completions_server(
    data: Path, farm: Farm, tmp_path: Path
) -> None:
    samples = read_split(data / "eval.jsonl")
    programs = {image_data_url(s.images[0]): s.code for s in samples}
    # the mug is answered with its program, the others with a program that fails

    def choose(messages: list[dict[str, Any]]) -> str:
        first = next(p for p in messages[-1]["content"] if p["type"] == "image_url")
        code = programs[first["image_url"]["url"]] or ""
        if "mug" in code:
            return f"```python\n{code}```"
        return "```python\n" + code.replace("export_scene()", "box(size=[-1, 1, 1])") + "```"

    with chat_server(choose, fail_first=1) as server:
        policy = OpenAIPolicy(server.base_url, "tiny-vl", temperature=0.5, max_tokens=512)
        report = run_eval(settings(data, farm, tmp_path, k=2, concurrency=4), policy)
        policy.close()
    bodies = server.requests
    assert len(bodies) == 5  # one retried 503, then one request (n=2) a task
    assert all(b["model"] == "tiny-vl" and b["n"] == 2 and b["max_tokens"] == 512 for b in bodies)
    parts = bodies[-1]["messages"][-1]["content"]
    assert [p["type"] for p in parts].count("image_url") == 4
    assert parts[0]["image_url"]["url"].startswith("data:image/png;base64,")
    by_category = report["results"]["by_category"]
    assert report["results"]["overall"]["statuses"] == {"exec_failed": 6, "ok": 2}
    assert by_category["container"]["execution_rate"] == 0.5  # the mug, not the bottle
    assert report["results"]["overall"]["f_score_mean"] == pytest.approx(0.25, abs=1e-3)


def test_cli_runs_the_oracle_and_rejects_unknown_policies(
    data: Path, farm: Farm, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from llm3d.cli import app

    runner = CliRunner()
    args = ["eval", "--split", str(data / "eval.jsonl"), "--reward-url", farm.url]
    result = runner.invoke(app, [*args, "--policy", "nope"])
    assert result.exit_code == 2
    assert "unknown policy" in result.output
    out = tmp_path / "cli"
    result = runner.invoke(
        app,
        [
            *args,
            "-p",
            "oracle",
            "--limit",
            "2",
            "--points",
            "2000",
            "--out",
            str(out),
            "--no-grid",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["results"]["overall"]["tasks"] == 2
    assert report["results"]["overall"]["execution_rate"] == 1.0
    assert (out / "report.md").is_file()
    missing = runner.invoke(app, ["eval", "-p", "oracle", "--split", str(tmp_path / "x.jsonl")])
    assert missing.exit_code == 2
    assert "no such dataset file" in missing.output


class ProgramAmongNeighbours:
    """Retrieval's nearest (wrong) programs with the task's true program hidden at ``slot``:
    a selection that finds it without the ground truth is doing its job."""

    name = "hidden-truth"
    fingerprint = "hidden-truth:v1"

    def __init__(self, retrieval: RetrievalPolicy, slot: int) -> None:
        self.retrieval = retrieval
        self.slot = slot

    def generate(self, sample: Sample, k: int) -> list[str]:
        texts = self.retrieval.generate(sample, k - 1)
        texts.insert(self.slot, f"```python\n{sample.code}```")
        return texts


def test_best_of_n_by_render_match_finds_the_right_program_without_ground_truth(
    data: Path, farm: Farm, tmp_path: Path
) -> None:
    from llm3d.config import RenderConfig

    policy = ProgramAmongNeighbours(RetrievalPolicy(read_split(data / "sft.jsonl")), slot=2)
    chosen = settings(data, farm, tmp_path, k=4, select=("first", "render", "oracle"))
    report = run_eval(chosen, policy, render=RenderConfig(resolution=64))
    table = report["selection"]
    assert table["render"]["f_score_0.05"] == pytest.approx(1.0, abs=1e-3)
    assert table["render"]["picked_index_mean"] == 2.0  # the hidden true program, every task
    assert table["oracle"]["f_score_0.05"] == pytest.approx(1.0, abs=1e-3)
    assert table["first"]["f_score_0.05"] < 0.9  # retrieval@1: a neighbour, not the object
    assert table["first"]["picked_index_mean"] == 0.0
    assert table["matched_candidates"] == 16 and table["seconds_per_candidate"] > 0
    steps = [table[f"{step}_per_candidate"] for step in ("execute_s", "render_s", "match_s")]
    assert all(t > 0 for t in steps)
    assert sum(steps) == pytest.approx(table["seconds_per_candidate"], rel=0.2)
    assert "## Best of 4" in (tmp_path / "report.md").read_text()
    matches = [json.loads(line) for line in (tmp_path / "matches.jsonl").read_text().splitlines()]
    assert len(matches) == 16  # a rerun reuses them
    again = run_eval(chosen, policy, render=RenderConfig(resolution=64))
    assert again["selection"]["render"] == table["render"]


def test_cli_best_of_rejects_an_unknown_selection(data: Path) -> None:
    from typer.testing import CliRunner

    from llm3d.cli import app

    result = CliRunner().invoke(
        app,
        ["eval", "-p", "oracle", "--split", str(data / "eval.jsonl"), "--best-of", "2",
         "--select", "first,best"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "--select" in result.output and "render" in result.output
