"""``landseg train``: a config in, ``train.run.train`` called, the run's checkpoints and curves out."""

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
):
    """Train a model; writes OUT/checkpoints/{best,last}.ckpt, history.csv and TensorBoard logs."""
    from landseg.config import load_config
    from landseg.report import plot_training_curves
    from landseg.train.run import train as run_training

    experiment = load_config(config, set_ or [])
    result = run_training(experiment, out, resume=resume, max_minutes=max_minutes)
    if result.history.exists():
        plot_training_curves(result.history, out / "training_curves.png")
    console.print(
        f"[green]trained[/] {result.epochs} epochs in {result.minutes:.1f} min; {result.validation_text()}\n"
        f"  best: {result.best_checkpoint}\n  last: {result.last_checkpoint}"
    )
