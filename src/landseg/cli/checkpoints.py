"""``landseg convert-checkpoint``: a trusted checkpoint that holds pickled objects, rewritten as data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from landseg.cli.errors import console


def convert_checkpoint_command(
    source: Annotated[Path, typer.Argument(help="Checkpoint to convert; it is unpickled, which can run code.")],
    destination: Annotated[Path, typer.Argument(help="Where to write the copy that holds only data.")],
    trust: Annotated[
        bool,
        typer.Option("--trust", help="I trust where SOURCE comes from: unpickle it, running whatever code it holds."),
    ] = False,
):
    """Rewrite a checkpoint that landseg refuses to unpickle as one of tensors and plain data only.

    The copy keeps weights, model card and training settings: it predicts like the original, never resumes.
    """
    from landseg.checkpoint import convert_checkpoint

    written = convert_checkpoint(source, destination, trust=trust)
    console.print(f"[green]converted[/] {escape(str(source))} -> {escape(str(written))} (tensors and plain data only)")
