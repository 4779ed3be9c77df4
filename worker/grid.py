"""The comparison grid: ground-truth views above prediction views, metrics underneath (Pillow).

Plain Python (no Blender), so evaluation reports and the add-on can compose grids from
images rendered anywhere.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["comparison_grid", "format_metric"]

_LINE_HEIGHT = 17
_LABEL_WIDTH = 92
_PADDING = 6
_BACKGROUND = (255, 255, 255)
_TEXT = (20, 20, 20)


def format_metric(value: float) -> str:
    """A metric value for humans: 4 significant digits, ``inf`` / ``nan`` spelled out."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.4g}"


def comparison_grid(
    gt_views: Sequence[str | Path],
    pred_views: Sequence[str | Path],
    metrics: Mapping[str, float | None],
    out_path: str | Path,
    *,
    title: str | None = None,
) -> Path:
    """Compose one PNG: a row of ground-truth views, a row of prediction views, the metrics.

    Parameters
    ----------
    gt_views, pred_views : sequence of path
        Images of the same views in the same order (the prediction row may be empty when
        the program made no mesh; its cells are then left blank).
    metrics : mapping of str to float
        Written underneath, three to a line (``None`` is written as ``-``).
    out_path : str or Path
        The PNG to write (its folder is created).
    title : str, optional
        A first line above the metrics (e.g. the task id and reward).

    Returns
    -------
    Path
        ``out_path``.

    Raises
    ------
    ValueError
        When there is no ground-truth view, or more prediction views than ground-truth views.
    """
    from PIL import Image, ImageDraw, ImageFont

    if not gt_views:
        raise ValueError("comparison_grid needs at least one ground-truth view")
    if len(pred_views) > len(gt_views):
        raise ValueError(
            f"{len(pred_views)} prediction views but only {len(gt_views)} ground-truth views"
        )
    gt_images = [Image.open(p).convert("RGB") for p in gt_views]
    pred_images = [Image.open(p).convert("RGB") for p in pred_views]
    cell_w = max(im.width for im in gt_images + pred_images)
    cell_h = max(im.height for im in gt_images + pred_images)
    columns = len(gt_images)
    items = [
        f"{name}: {'-' if value is None else format_metric(float(value))}"
        for name, value in metrics.items()
    ]
    per_line = 3
    lines = ([title] if title else []) + [
        "   ".join(items[i : i + per_line]) for i in range(0, len(items), per_line)
    ]
    text_h = _PADDING * 2 + _LINE_HEIGHT * len(lines)
    width = _LABEL_WIDTH + columns * cell_w
    height = 2 * cell_h + text_h
    canvas = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=13)
    for row, (label, images) in enumerate(
        (("ground truth", gt_images), ("prediction", pred_images))
    ):
        y = row * cell_h
        draw.text((_PADDING, y + cell_h // 2 - _LINE_HEIGHT // 2), label, fill=_TEXT, font=font)
        for col, image in enumerate(images):
            canvas.paste(image, (_LABEL_WIDTH + col * cell_w, y))
        if not images:
            draw.text((_LABEL_WIDTH + _PADDING, y + cell_h // 2), "no mesh", fill=_TEXT, font=font)
    for i, line in enumerate(lines):
        draw.text((_PADDING, 2 * cell_h + _PADDING + i * _LINE_HEIGHT), line, fill=_TEXT, font=font)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out, format="PNG")
    return out
