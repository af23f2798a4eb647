"""``landseg calibrate``: fit trained checkpoints' temperatures on a labelled split and store them on their cards."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from landseg.cli.errors import console


def calibrate_command(
    checkpoints: Annotated[list[Path], typer.Argument(help="Trained landseg checkpoints (.ckpt), rewritten in place.")],
    config: Annotated[Path, typer.Option(help="Experiment YAML naming the labelled images and their split.")],
    split: Annotated[
        str, typer.Option(help="Split to fit on: images the model neither trained on nor will be scored on.")
    ] = "val",
):
    """Fit each checkpoint's temperature on a labelled split, as training does on its validation images.

    The temperature goes on the model card; every prediction then gives calibrated probabilities and
    confidence (classes are unchanged). `landseg evaluate` reports the calibration before and after.
    """
    from landseg.config import load_config
    from landseg.train.calibrate import calibrate_on_split

    fitted = calibrate_on_split(checkpoints, load_config(config), split)
    table = Table("checkpoint", "temperature", "ECE before", "ECE after", "NLL before", "NLL after")
    for path, card in fitted.items():
        table.add_row(
            str(path),
            f"{card['temperature']:.3f}",
            *(f"{card[measure][when]:.4f}" for measure in ("ece", "nll") for when in ("before", "after")),
        )
    console.print(table)
    if not fitted:
        console.print(f"[yellow]no labelled pixel in split {split!r}: nothing was fitted[/]")
