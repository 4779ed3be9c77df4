"""The dataset card: counts per split, category and difficulty, and a contact sheet (no Blender).

:func:`write_card` writes ``README.md`` (Markdown tables) and ``contact_sheet.png`` (one
rendered view per object, a few objects per category, labelled) into the dataset folder.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from datagen.object_assembler import DIFFICULTIES
from llm3d.chat import SPLITS

__all__ = ["contact_sheet", "write_card"]


def contact_sheet(
    rows: Sequence[dict[str, Any]], base: Path, out: Path, *, per_category: int = 4, tile: int = 160
) -> Path:
    """A grid of one view per object (``per_category`` objects of each category), labelled.

    Parameters
    ----------
    rows : sequence of dict
        Dataset rows (``id``, ``category``, ``difficulty``, ``images``).
    base : Path
        The folder the rows' image paths are relative to.
    out : Path
        The PNG written.
    """
    from PIL import Image, ImageDraw

    by_category: dict[str, list[dict[str, Any]]] = {}
    for row in sorted(rows, key=lambda r: str(r["id"])):
        by_category.setdefault(str(row["category"]), []).append(row)
    categories = sorted(by_category)
    cols = max(1, per_category)
    label_h = 16
    sheet = Image.new(
        "RGB", (cols * tile, max(1, len(categories)) * (tile + label_h)), (255, 255, 255)
    )
    draw = ImageDraw.Draw(sheet)
    for r, category in enumerate(categories):
        for c, row in enumerate(by_category[category][:cols]):
            images = [str(p) for p in row["images"]]
            pick = next((p for p in images if "three_quarter" in p), images[-1])
            with Image.open(base / pick) as img:
                thumb = img.convert("RGB").resize((tile, tile))
            x, y = c * tile, r * (tile + label_h)
            sheet.paste(thumb, (x, y))
            draw.text((x + 3, y + tile + 2), f"{row['id']} ({row['difficulty']})", fill=(0, 0, 0))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


def _table(counts: Counter[tuple[str, str]], rows_keys: Sequence[str], cols: Sequence[str]) -> str:
    head = "| | " + " | ".join(cols) + " | total |\n|---|" + "---|" * (len(cols) + 1) + "\n"
    lines = []
    for key in rows_keys:
        values = [counts[(key, c)] for c in cols]
        lines.append(f"| {key} | " + " | ".join(map(str, values)) + f" | {sum(values)} |")
    totals = [sum(counts[(k, c)] for k in rows_keys) for c in cols]
    lines.append("| **total** | " + " | ".join(map(str, totals)) + f" | {sum(totals)} |")
    return head + "\n".join(lines) + "\n"


def _infinigen_section(info: dict[str, Any]) -> list[str]:
    """Which Infinigen factories the objects come from, what was rejected, what was skipped."""
    report = info.get("infinigen_factories")
    if report is None:
        return []
    text = [
        "## Infinigen factories",
        "",
        "Assets spawned by `llm3d data infinigen`, fitted and assembled by `llm3d data "
        f"assemble --infinigen`, kept at F@0.05 ≥ {info.get('min_object_f_score')} against the "
        "asset's mesh.",
        "",
        "| factory | kept | rejected | not spawned | median F@0.05 |",
        "|---|---|---|---|---|",
    ]
    for row in report:
        median = "–" if row["median_f_score"] is None else f"{row['median_f_score']:.3f}"
        text.append(
            f"| {row['factory']} | {row['kept']} | {row['rejected']} | {row['not_spawned']} "
            f"| {median} |"
        )
    reasons = [reason for row in report for reason in row["reasons"]]
    if reasons:
        text += ["", "Rejected or not spawned:", "", *(f"- {r}" for r in reasons)]
    skipped = info.get("infinigen_skipped") or {}
    text += [
        "",
        f"Indoor factories skipped ({len(skipped)}; from `{info.get('infinigen_survey')}`, "
        "`llm3d data infinigen --survey`: seed 0 of each factory Infinigen's indoor scenes use, "
        "spawned headless within `data.infinigen_timeout_s`):",
        "",
        *(f"- {name}: {why}" for name, why in sorted(skipped.items())),
        "",
    ]
    return text


def write_card(
    out_dir: Path, rows: Sequence[dict[str, Any]], info: dict[str, Any]
) -> tuple[Path, Path]:
    """Write ``README.md`` and ``contact_sheet.png``; returns their paths."""
    categories = sorted({str(r["category"]) for r in rows})
    by_cat_diff = Counter((str(r["category"]), str(r["difficulty"])) for r in rows)
    by_cat_split = Counter((str(r["category"]), str(r["split"])) for r in rows)
    by_split_diff = Counter((str(r["split"]), str(r["difficulty"])) for r in rows)
    sources = sorted({str(r.get("source", "templates")) for r in rows})
    by_source_split = Counter((str(r.get("source", "templates")), str(r["split"])) for r in rows)
    by_source_diff = Counter(
        (str(r.get("source", "templates")), str(r["difficulty"])) for r in rows
    )
    by_source_split_diff = Counter(
        (f"{r.get('source', 'templates')} / {r['split']}", str(r["difficulty"])) for r in rows
    )
    source_splits = [f"{src} / {split}" for src in sources for split in SPLITS]
    sheet = contact_sheet(rows, out_dir, out_dir / "contact_sheet.png")
    failed = info.get("failed", {})
    text = [
        "# llm3d object dataset",
        "",
        "Synthetic objects written with `bpy_lib` (`llm3d data build`), rendered by "
        "`worker/render.py`, in the Qwen2.5-VL chat format of DESIGN §6.",
        "",
        f"- seed: {info.get('seed')}; categories file: `{info.get('categories_file')}`",
        f"- objects: {len(rows)} (failed or out of frame, left out: {sum(failed.values())})",
        f"- views: {', '.join(info.get('views', []))} at {info.get('resolution')} px "
        f"({info.get('engine')})",
        "- files: `sft.jsonl`, `rl.jsonl`, `eval.jsonl`, `eval_unseen.jsonl` (curriculum order easy → medium → "
        "hard), `meshes/<id>.ply` (ground truths), `images/<id>/<view>.png`",
        '- load: `datasets.load_dataset("json", data_files={"sft": "sft.jsonl", ...})`; '
        "paths are relative to this folder",
        "- reward service: `api.datasets: [<this folder>/rl.jsonl, <this folder>/eval.jsonl]` "
        "registers every RL/eval ground truth under its `task_id`",
        "- honest splits: seen categories are cut per category into sft / rl / eval by whole "
        "assets; the held-out categories "
        f"({', '.join(info.get('unseen_categories', [])) or 'none'}) are only in eval_unseen; "
        "objects of one asset or closer than "
        f"{info.get('dedup_threshold', 0)} by the shape descriptor share one split "
        f"({info.get('split_moved', 0)} moved to their group's split, "
        f"{info.get('split_dropped', 0)} near-copies of held-out shapes left out)",
        "",
        "## Objects per split and difficulty",
        "",
        _table(by_split_diff, SPLITS, DIFFICULTIES),
        "## Objects per source and split",
        "",
        _table(by_source_split, sources, SPLITS),
        "## Objects per source, split and difficulty",
        "",
        _table(by_source_split_diff, source_splits, DIFFICULTIES),
        "## Objects per source and difficulty",
        "",
        _table(by_source_diff, sources, DIFFICULTIES),
        "## Objects per category and difficulty",
        "",
        _table(by_cat_diff, categories, DIFFICULTIES),
        "## Objects per category and split",
        "",
        _table(by_cat_split, categories, SPLITS),
        "## Contact sheet",
        "",
        "![contact sheet](contact_sheet.png)",
        "",
    ]
    text += _infinigen_section(info)
    if failed:
        text += ["## Left out", "", *(f"- {k}: {v}" for k, v in sorted(failed.items())), ""]
    card = out_dir / "README.md"
    card.write_text("\n".join(text), encoding="utf-8")
    return card, sheet
