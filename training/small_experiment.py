"""The report of ``scripts/run_small_experiment.sh`` (issue 20): does the loop learn?

The script trains the small CPU model (``configs/small_cpu.yaml``) by SFT, then by GRPO
under each reward variant, and evaluates every policy with the evaluation runner on the
same held-out tasks, ``k`` samples each. This module reads what the stages left in the
experiment folder and states each target with its number:

- after SFT: execution rate ≥ 90 %, and mean F@0.05 above the constant-program baseline
  (:class:`training.policies.ConstantPolicy`) by more than two standard errors;
- after GRPO: mean reward above the SFT checkpoint's by more than two standard errors;
- which reward variant's GRPO run gives the better held-out F@0.05, and the reward
  distributions of the baselines under each variant.

**Standard errors are over tasks**: each task's value is the mean of its ``k`` samples; the
standard error of a policy's mean is ``std(task means, ddof=1) / sqrt(tasks)``, and that of
a difference between two policies is the same over the per-task differences (paired: both
were evaluated on the same tasks). Infra errors are left out (as in the eval report).

``python -m training.small_experiment subset SRC DST --n 64`` writes the held-out tasks (a
seeded sample of an eval split, so easy and harder rows are both in it);
``python -m training.small_experiment report DIR`` writes ``DIR/report.{md,json}`` and PNGs.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training.eval_report import record_f_score
from training.runlog import read_metrics

__all__ = ["compare", "main", "per_task", "policy_stats", "targets", "write_report", "write_subset"]

logger = logging.getLogger(__name__)

#: the reward variants the experiment runs GRPO with (``reward.variant``), the default first
VARIANTS = ("gated", "gated-fine")
#: the evaluated policies, in the report's order: baseline, SFT, GRPO under each variant
POLICIES = ("constant", "sft", "grpo-gated", "grpo-gated-fine")
EXEC_TARGET = 0.9
SIGMAS = 2.0


def write_subset(src: Path, dst: Path, n: int, seed: int = 0) -> int:
    """Write ``n`` rows of the JSONL ``src`` drawn without replacement (seeded) to ``dst``,
    in their order in ``src``; ``dst`` must be in ``src``'s folder (image paths are relative
    to it). Returns the number of rows written (all of them when ``src`` has fewer)."""
    lines = [line for line in src.read_text(encoding="utf-8").splitlines() if line.strip()]
    keep = sorted(random.Random(seed).sample(range(len(lines)), min(n, len(lines))))
    dst.write_text("".join(lines[i] + "\n" for i in keep), encoding="utf-8")
    return len(keep)


def per_task(records: Sequence[Mapping[str, Any]], key: str) -> dict[str, float]:
    """Each task's mean of ``key`` over its scored samples: ``reward``, ``f_score`` (F@0.05,
    0 without a mesh) or ``executed`` (1 for status ``ok``)."""
    values: dict[str, list[float]] = defaultdict(list)
    for r in records:
        if r["status"] == "infra_error":
            continue
        if key == "reward":
            if r.get("reward") is None:
                continue
            value = float(r["reward"])
        elif key == "f_score":
            value = record_f_score(r)
        elif key == "executed":
            value = float(r["status"] == "ok")
        else:
            raise ValueError(f"unknown key {key!r}: reward, f_score or executed")
        values[str(r["task_id"])].append(value)
    return {task: float(np.mean(v)) for task, v in values.items()}


def _mean_se(values: Sequence[float]) -> dict[str, float | int]:
    n = len(values)
    mean = float(np.mean(values)) if n else math.nan
    se = float(np.std(values, ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return {"mean": mean, "se": se, "tasks": n}


def policy_stats(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean and standard error over tasks of reward, F@0.05 and execution, and the reward
    distribution over samples (quantiles)."""
    rewards = [float(r["reward"]) for r in records if r.get("reward") is not None]
    stats: dict[str, Any] = {
        key: _mean_se(list(per_task(records, key).values()))
        for key in ("reward", "f_score", "executed")
    }
    stats["samples"] = len(rewards)
    stats["reward_quantiles"] = (
        dict(
            zip(
                ("p10", "p25", "p50", "p75", "p90"),
                np.quantile(rewards, [0.1, 0.25, 0.5, 0.75, 0.9]).tolist(),
                strict=True,
            )
        )
        if rewards
        else {}
    )
    return stats


def compare(
    a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]], key: str
) -> dict[str, Any]:
    """``b − a`` on the tasks both have: mean of the per-task differences, its paired
    standard error, and whether it exceeds :data:`SIGMAS` standard errors."""
    ta, tb = per_task(a, key), per_task(b, key)
    common = sorted(set(ta) & set(tb))
    stats = _mean_se([tb[t] - ta[t] for t in common])
    z = stats["mean"] / stats["se"] if stats["se"] and math.isfinite(stats["se"]) else math.nan
    return {**stats, "z": z, "significant": bool(math.isfinite(z) and z > SIGMAS)}


def _records(out: Path, variant: str, policy: str) -> list[dict[str, Any]] | None:
    path = out / "eval" / variant / policy / "report.json"
    if not path.is_file():
        return None
    report = json.loads(path.read_text(encoding="utf-8"))
    # a reward_version is the variant and its revision: gated-v2, gated-fine-v1
    if str(report["reward_version"]).rsplit("-v", 1)[0] != variant:
        raise ValueError(
            f"{path} was scored with reward {report['reward_version']}, not {variant}: "
            "delete its folder and rerun the script"
        )
    records: list[dict[str, Any]] = report["records"]
    return records


def targets(evals: Mapping[str, Mapping[str, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """The issue's targets from ``evals[variant][policy] = records``: each with its numbers
    and ``reached`` (None when a stage has not run)."""
    gated = evals.get("gated", {})
    out: list[dict[str, Any]] = []
    sft, constant = gated.get("sft"), gated.get("constant")
    if sft is not None:
        rate = policy_stats(sft)["executed"]
        out.append(
            {
                "target": f"after SFT: execution rate ≥ {EXEC_TARGET:.0%}",
                "value": rate["mean"],
                "reached": rate["mean"] >= EXEC_TARGET,
            }
        )
    if sft is not None and constant is not None:
        diff = compare(constant, sft, "f_score")
        out.append(
            {
                "target": "after SFT: mean F@0.05 above the constant program's by > 2 SE",
                **diff,
                "reached": diff["significant"],
            }
        )
    for variant in VARIANTS:
        grpo = evals.get(variant, {}).get(f"grpo-{variant}")
        base = evals.get(variant, {}).get("sft")
        if grpo is None or base is None:
            continue
        diff = compare(base, grpo, "reward")
        out.append(
            {
                "target": f"after GRPO ({variant}): mean {variant} reward above SFT's by > 2 SE",
                **diff,
                "reached": diff["significant"],
            }
        )
    return out


def _fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        return "–" if not math.isfinite(value) else f"{value:.{digits}f}"
    return str(value)


def _plots(out: Path, evals: Mapping[str, Mapping[str, list[dict[str, Any]]]]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files: list[str] = []
    sft_metrics = out / "runs" / "sft" / "metrics.jsonl"
    if sft_metrics.is_file():
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
        train = read_metrics(sft_metrics, "train")
        held = read_metrics(sft_metrics, "eval")
        ax1.plot([r["step"] for r in train], [r["loss"] for r in train], lw=1)
        ax1.set(xlabel="step", ylabel="loss (per program token)", title="SFT training loss")
        ax2.plot([r["step"] for r in held], [r["eval_nll"] for r in held], marker="o")
        ax2.set(xlabel="step", ylabel="NLL per token", title="held-out NLL")
        for ax in (ax1, ax2):
            ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "sft_curves.png", dpi=110)
        plt.close(fig)
        files.append("sft_curves.png")
    keys = (("reward_mean", "train reward"), ("execution_rate", "execution rate"),
            ("f_score_0.05", "F@0.05"))  # fmt: skip
    runs = {v: out / "runs" / f"grpo-{v}" / "metrics.jsonl" for v in VARIANTS}
    if any(p.is_file() for p in runs.values()):
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
        for variant, path in runs.items():
            if not path.is_file():
                continue
            rows = read_metrics(path, "train")
            for ax, (key, label) in zip(axes, keys, strict=True):
                ax.plot([r["step"] for r in rows], [r.get(key, math.nan) for r in rows],
                        marker=".", label=variant)  # fmt: skip
                ax.set(xlabel="GRPO step", title=f"{label} (rollouts)")
        for ax in axes:
            ax.grid(alpha=0.3)
            ax.legend()
        fig.tight_layout()
        fig.savefig(out / "grpo_curves.png", dpi=110)
        plt.close(fig)
        files.append("grpo_curves.png")
    gated = evals.get("gated", {})
    names = [p for p in POLICIES if p in gated]
    if names:
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
        for ax, key, label in zip(axes, ("reward", "f_score", "executed"),
                                  ("mean reward (gated)", "mean F@0.05", "execution rate"),
                                  strict=True):  # fmt: skip
            stats = [policy_stats(gated[n])[key] for n in names]
            ax.bar(names, [s["mean"] for s in stats], yerr=[2 * s["se"] for s in stats],
                   capsize=4, color="#4c72b0")  # fmt: skip
            ax.set(title=f"{label} ± 2 SE", ylim=(0, 1.05))
            ax.tick_params(axis="x", rotation=20)
        fig.tight_layout()
        fig.savefig(out / "eval_bars.png", dpi=110)
        plt.close(fig)
        files.append("eval_bars.png")
    fig, axes = plt.subplots(1, len(VARIANTS), figsize=(11, 3.5), squeeze=False)
    drawn = False
    for ax, variant in zip(axes[0], VARIANTS, strict=True):
        for policy in ("constant", "sft"):
            recs = evals.get(variant, {}).get(policy)
            if recs:
                drawn = True
                ax.hist([r["reward"] for r in recs if r.get("reward") is not None], bins=20,
                        range=(0, 1), alpha=0.6, label=policy)  # fmt: skip
        ax.set(xlabel=f"reward ({variant})", ylabel="samples", title=f"baselines under {variant}")
        ax.legend()
    if drawn:
        fig.tight_layout()
        fig.savefig(out / "reward_hist.png", dpi=110)
        files.append("reward_hist.png")
    plt.close(fig)
    return files


def write_report(out: Path) -> dict[str, Any]:
    """Read the experiment folder ``out`` and write ``report.json``, ``report.md`` and PNGs."""
    evals: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for variant in VARIANTS:
        for policy in POLICIES:
            recs = _records(out, variant, policy)
            if recs is not None:
                evals.setdefault(variant, {})[policy] = recs
    stats = {v: {p: policy_stats(r) for p, r in ps.items()} for v, ps in evals.items()}
    goals = targets(evals)
    variant_f: dict[str, Any] = {}
    a, b = (evals.get(v, {}).get(f"grpo-{v}") for v in VARIANTS)
    if a is not None and b is not None:
        variant_f = compare(a, b, "f_score")  # gated-fine − gated, held-out F@0.05
    timings_file = out / "timings.jsonl"
    timings = _timings(timings_file)
    report = {"stats": stats, "targets": goals, "variant_f_score": variant_f,
              "timings": timings, "figures": _plots(out, evals)}  # fmt: skip
    (out / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    (out / "report.md").write_text(_markdown(report), encoding="utf-8")
    return report


def _timings(path: Path) -> list[dict[str, Any]]:
    """Seconds per stage, summed over the script's runs (a resumed stage adds up; a skipped
    one adds 0), in the order the stages first ran."""
    if not path.is_file():
        return []
    total: dict[str, int] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            entry = json.loads(line)
            total[entry["stage"]] = total.get(entry["stage"], 0) + int(entry["seconds"])
    return [{"stage": stage, "seconds": seconds} for stage, seconds in total.items()]


def _markdown(report: Mapping[str, Any]) -> str:
    lines = ["# Small CPU experiment: does the loop learn?", ""]
    lines += ["Standard errors (SE) are over tasks: a task's value is the mean of its samples; "
              "a difference's SE is that of the per-task differences (same tasks, paired).", ""]  # fmt: skip
    lines += ["## Targets", "", "| target | value | SE | reached |", "|---|---|---|---|"]
    for t in report["targets"]:
        reached = {True: "yes", False: "**no**", None: "–"}[t["reached"]]
        lines.append(f"| {t['target']} | {_fmt(t.get('mean', t.get('value')))} | "
                     f"{_fmt(t.get('se', math.nan))} | {reached} |")  # fmt: skip
    for variant, policies in report["stats"].items():
        lines += ["", f"## Held-out evaluation, reward `{variant}`", "",
                  "| policy | tasks | samples | execution | mean reward ± SE | F@0.05 ± SE | "
                  "reward p10 / p50 / p90 |", "|---|---|---|---|---|---|---|"]  # fmt: skip
        for policy, s in policies.items():
            q = s["reward_quantiles"]
            lines.append(
                f"| {policy} | {s['reward']['tasks']} | {s['samples']} | "
                f"{_fmt(s['executed']['mean'])} | {_fmt(s['reward']['mean'])} ± "
                f"{_fmt(s['reward']['se'])} | {_fmt(s['f_score']['mean'])} ± "
                f"{_fmt(s['f_score']['se'])} | {_fmt(q.get('p10', math.nan))} / "
                f"{_fmt(q.get('p50', math.nan))} / {_fmt(q.get('p90', math.nan))} |"
            )
    v = report["variant_f_score"]
    if v:
        better = "gated-fine" if v["mean"] > 0 else "gated"
        clear = math.isfinite(v["z"]) and abs(v["z"]) > SIGMAS
        lines += ["", "## Reward variant", "",
                  f"Held-out F@0.05 of GRPO under gated-fine minus under gated: {_fmt(v['mean'])} "
                  f"± {_fmt(v['se'])} (SE, {v['tasks']} tasks): {better} is ahead"
                  + (" by more than 2 SE." if clear else ", within noise (less than 2 SE).")]  # fmt: skip
    if report["timings"]:
        lines += ["", "## Wall time per stage", "", "| stage | seconds |", "|---|---|"]
        lines += [f"| {t['stage']} | {t['seconds']} |" for t in report["timings"]]
        total = sum(t["seconds"] for t in report["timings"])
        lines.append(f"| total | {total} ({total / 60:.1f} min) |")
    lines += ["", "## Figures", ""] + [f"![{f}]({f})" for f in report["figures"]]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    """``subset SRC DST --n N [--seed S]`` or ``report DIR``."""
    parser = argparse.ArgumentParser(prog="python -m training.small_experiment")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("subset", help="a seeded sample of an eval split's rows")
    s.add_argument("src", type=Path)
    s.add_argument("dst", type=Path)
    s.add_argument("--n", type=int, default=64)
    s.add_argument("--seed", type=int, default=0)
    r = sub.add_parser("report", help="the experiment's report from its folder")
    r.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "subset":
        written = write_subset(args.src, args.dst, args.n, args.seed)
        logger.info("%d held-out tasks in %s", written, args.dst)
    else:
        write_report(args.out)
        logger.info("%s", (args.out / "report.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
