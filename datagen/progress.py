"""Progress bars of the long stages: rich, with count, rate and ETA (no Blender).

When disabled (``--json``, tests, ``enabled=False``) the bar is a no-op with the same API.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import ProgressColumn as _ProgressColumn
from rich.text import Text

__all__ = ["Bar", "progress_bar"]


class _RateColumn(_ProgressColumn):
    """Items a second since the bar started (not counting what was done before a resume)."""

    def render(self, task: Task) -> Text:
        speed = task.speed
        return Text(f"{speed:6.1f}/s" if speed else "   –  /s", style="cyan")


class Bar:
    """What a stage sees of its progress bar."""

    def __init__(self, progress: Progress | None, task_id: int | None) -> None:
        self._progress = progress
        self._task = task_id

    def advance(self, amount: int = 1) -> None:
        """Count ``amount`` more items done."""
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, amount)  # type: ignore[arg-type]


@contextmanager
def progress_bar(
    description: str, *, total: int, completed: int = 0, enabled: bool = True
) -> Iterator[Bar]:
    """A progress bar for ``total`` items, ``completed`` of them already done (resume)."""
    if not enabled:
        yield Bar(None, None)
        return
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        speed_estimate_period=60.0,
    )
    with progress:
        task = progress.add_task(description, total=total, completed=completed)
        yield Bar(progress, int(task))
