"""The bar that ``predict``, ``change`` and distributed prediction show: items done of a total, with
elapsed and remaining time, gone from the terminal when the run ends."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def counting_bar(console: Console, unit: str) -> Progress:
    """A transient bar counting ``unit`` (tiles, blocks) for each task, labelled by its description."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


def set_total(bar: Progress, task: TaskID, total: int) -> None:
    """``predict_scene``'s ``on_start``: the scene's tile count becomes the task's total."""
    bar.update(task, total=total)
