"""``landseg export``: a checkpoint or zoo model to ONNX (``interop.deepness``), optionally with a STAC item."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from landseg.cli import options
from landseg.errors import ConfigError


def export_command(
    onnx: Annotated[Path, typer.Option("--onnx", help="The ONNX file to write.")],
    checkpoint: Annotated[Path | None, typer.Option("--checkpoint", "-c", help="A landseg checkpoint (.ckpt).")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="A zoo model by name, instead of -c.")] = None,
    tile: Annotated[int | None, typer.Option(help="Tile side the model takes (default: the checkpoint's).")] = None,
    stac: Annotated[
        Path | None,
        typer.Option(
            "--stac",
            help="Also write a STAC Item (MLM extension) describing the export; in the ONNX file's folder or above.",
        ),
    ] = None,
):
    """Export a checkpoint or zoo model to ONNX (model card included) for `landseg predict --engine onnxruntime`.

    The file also carries Deepness metadata, so QGIS's Deepness plugin runs it as it is (docs/INTEROP.md).
    """
    from landseg.interop.deepness import export_for_deepness
    from landseg.interop.stac import check_item_folder, write_mlm_item
    from landseg.predict.models import load_model

    if (checkpoint is None) == (model is None):
        raise ConfigError("export needs exactly one model: --checkpoint FILE or --model NAME")
    references = options.model_references([checkpoint] if checkpoint else None, [model] if model else None)
    if stac is not None:
        check_item_folder(stac, onnx)
    loaded = load_model(references[0])
    path = export_for_deepness(loaded, onnx, tile)  # landseg's card and Deepness's metadata (docs/INTEROP.md)
    Console(stderr=True).print(f"[green]exported[/] {path}")
    if stac is not None:
        Console(stderr=True).print(f"[green]wrote[/] {write_mlm_item(loaded, path, stac, tile)}")
