"""Object assembly, difficulty, categories and splits (no Blender)."""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path

import pytest

from datagen.dataset_builder import assign_splits, plan_objects
from datagen.object_assembler import assemble, difficulty, load_categories, make_object
from datagen.templates import Part
from llm3d.config import REPO_ROOT, DataConfig
from llm3d.exceptions import ConfigError

CATEGORIES = REPO_ROOT / "configs" / "categories.yaml"


def test_assemble_writes_the_house_style() -> None:
    code = assemble(
        "stool",
        [
            Part("seat", "s = box(size=[1, 1, 0.1])"),
            Part("legs", "l = cylinder(radius=0.1, depth=1)\nradial_array(l, count=3)"),
        ],
    )
    lines = code.splitlines()
    assert lines[0] == "from bpy_lib import *"
    assert "# object: stool" in lines
    assert lines.index("# part_1: seat") < lines.index("# part_2: legs")
    assert lines[-1] == "export_scene()"
    with pytest.raises(ValueError, match="no parts"):
        assemble("x", [])
    with pytest.raises(ValueError, match="belong to the object"):
        assemble("x", [Part("a", "export_scene()")])
    with pytest.raises(ValueError, match="label"):
        Part("two\nlines", "x = 1")


def test_every_category_makes_valid_deterministic_programs() -> None:
    categories = load_categories(CATEGORIES)
    assert len(categories) >= 12
    seen = Counter()
    for category in categories.values():
        for i in range(10):
            obj = make_object(category, 0, i)
            assert obj.code == make_object(category, 0, i).code
            ast.parse(obj.code)
            labels = re.findall(r"^# part_(\d+): (.+)$", obj.code, flags=re.M)
            assert [int(k) for k, _ in labels] == list(range(1, obj.n_parts + 1))
            seen[obj.difficulty] += 1
    assert set(seen) == {"easy", "medium", "hard"}  # the curriculum has all three levels


def test_symmetric_parts_are_arrays_or_mirrors_not_copies() -> None:
    categories = load_categories(CATEGORIES)
    for name in ("chair", "table", "stool", "ladder", "bookshelf", "dumbbell"):
        for i in range(5):
            obj = make_object(categories[name], 1, i)
            assert {"mirror", "grid_array", "linear_array", "radial_array"} & set(obj.ops), obj.code
            creations = [ln.split("=", 1)[1] for ln in obj.code.splitlines() if " = " in ln]
            assert len(creations) == len(set(creations)), "a part written out twice"


def test_difficulty_grows_with_parts_and_operations() -> None:
    easy = assemble("x", [Part("a", "a = box(size=[1, 1, 1])")])
    hard = assemble(
        "x",
        [Part(str(k), f"p{k} = box(size=[1, 1, 1])\ntwist(p{k}, angle=30)") for k in range(4)]
        + [Part("cut", "c = cylinder(radius=0.1, depth=1)\ndifference(p0, c)")],
    )
    assert difficulty(easy, 1) == "easy"
    assert difficulty(hard, 5) == "hard"


def test_splits_are_proportional_disjoint_and_seeded() -> None:
    ratios = {"sft": 0.8, "rl": 0.1, "eval": 0.1}
    labels = assign_splits(50, ratios, seed=0, salt="chair")
    assert Counter(labels) == {"sft": 40, "rl": 5, "eval": 5}
    assert labels == assign_splits(50, ratios, seed=0, salt="chair")
    assert labels != assign_splits(50, ratios, seed=1, salt="chair")
    assert Counter(assign_splits(3, ratios, 0, "x")) == {"sft": 1, "rl": 1, "eval": 1}
    with pytest.raises(ValueError, match="unknown splits"):
        assign_splits(3, {"train": 1.0}, 0, "x")


def test_plan_balances_categories_by_weight(tmp_path: Path) -> None:
    file = tmp_path / "cats.yaml"
    file.write_text("categories:\n  mug: {weight: 1.0}\n  bowl: {weight: 0.5, noun: salad bowl}\n")
    plan = plan_objects(load_categories(file), DataConfig(objects_per_category=10), seed=0)
    counts = Counter(obj.category for obj, _ in plan)
    assert counts == {"mug": 10, "bowl": 5}
    for category in ("mug", "bowl"):
        splits = Counter(s for obj, s in plan if obj.category == category)
        assert splits["sft"] > splits["rl"] >= 1 and splits["eval"] >= 1
    assert len({obj.id for obj, _ in plan}) == len(plan)


def test_bad_categories_files_name_the_problem(tmp_path: Path) -> None:
    file = tmp_path / "cats.yaml"
    with pytest.raises(ConfigError, match="not found"):
        load_categories(file)
    file.write_text("categories:\n  spaceship: {weight: 1}\n")
    with pytest.raises(ConfigError, match="unknown template 'spaceship'"):
        load_categories(file)
    file.write_text("cats: []\n")
    with pytest.raises(ConfigError, match="categories:"):
        load_categories(file)
