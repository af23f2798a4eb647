"""``landseg train``: a config in, ``landseg.api.train`` (the run and its curves) called, a summary printed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from landseg.cli.errors import console


def train_command(
    config: Annotated[Path, typer.Argument(help="Experiment YAML file.")],
    out: Annotated[Path, typer.Option("--out", help="Run folder for checkpoints and logs.")] = Path("runs/latest"),
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a config value: dotted.key=value.")] = None,
    max_minutes: Annotated[float | None, typer.Option(help="Stop training after this many minutes.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/checkpoints/last.ckpt.")] = False,
    adapt_to: Annotated[
        list[str] | None,
        typer.Option(
            "--adapt-to",
            help="Unlabelled images of the place to be mapped (files, folders, patterns; repeatable): training "
            "also learns from them (train.adapt, docs/RECIPES.md).",
        ),
    ] = None,
):
    """Train a model; writes OUT/checkpoints/{best,last}.ckpt, history.csv and TensorBoard logs."""
    from landseg.api import train

    result = train(config, out, overrides=set_ or [], resume=resume, max_minutes=max_minutes, adapt_to=adapt_to or ())
    console.print(
        f"[green]trained[/] {result.epochs} epochs in {result.minutes:.1f} min; {result.validation_text()}\n"
        f"  best: {result.best_checkpoint}\n  last: {result.last_checkpoint}"
    )
