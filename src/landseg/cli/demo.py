"""``landseg demo``: the built-in demo (``landseg.demo.run_demo``) from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from landseg.cli.errors import console


def demo_command(
    out: Annotated[Path, typer.Option("--out", help="Folder for the demo data, run and report.")] = Path(
        "landseg-demo"
    ),
    minutes: Annotated[float, typer.Option(help="Training time budget in minutes.")] = 4.0,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic scenes and the training.")] = 0,
):
    """Generate a synthetic georeferenced scene set, train, evaluate, predict and write a report."""
    from landseg.demo import run_demo

    report = run_demo(out, minutes=minutes, seed=seed)
    console.print(f"[bold green]demo report:[/] {report}")
