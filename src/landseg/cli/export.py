"""``landseg export``: a checkpoint or zoo model to ONNX (``interop.deepness``), optionally with a STAC item."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated, Literal

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
    precision: Annotated[
        Literal["fp32", "int8"],
        typer.Option(help="int8: ONNX Runtime static quantization, with its guard measured (needs --config)."),
    ] = "fp32",
    config: Annotated[
        Path | None,
        typer.Option(help="int8: experiment YAML whose train split calibrates and whose --split measures the guard."),
    ] = None,
    split: Annotated[str, typer.Option(help="int8: labelled split the guard is measured on.")] = "val",
    calibration_image: Annotated[
        list[Path] | None,
        typer.Option(help="int8 without --config: an unlabelled image to calibrate on (repeat for more)."),
    ] = None,
    guard_image: Annotated[
        list[Path] | None,
        typer.Option(help="int8 without --config: an unlabelled image the guard (agreement only) is measured on."),
    ] = None,
    keep_fp32: Annotated[
        Literal["first-last", "none"],
        typer.Option(help="int8: convolutions left in fp32, the first and last or none."),
    ] = "first-last",
):
    """Export a checkpoint or zoo model to ONNX (model card included) for `landseg predict --engine onnxruntime`.

    The fp32 file also carries Deepness metadata, so QGIS's Deepness plugin runs it as it is
    (docs/INTEROP.md). With `--precision int8` the int8 model is also cached beside the checkpoint, where
    `landseg predict --precision auto|int8` finds it; its card holds the guard (agreement with fp32).
    """
    from landseg.interop.deepness import export_for_deepness
    from landseg.interop.stac import check_item_folder, write_mlm_item
    from landseg.predict.models import load_model

    if (checkpoint is None) == (model is None):
        raise ConfigError("export needs exactly one model: --checkpoint FILE or --model NAME")
    references = options.model_references([checkpoint] if checkpoint else None, [model] if model else None)
    if precision == "int8":
        if stac is not None:
            raise ConfigError("--stac describes fp32 exports; leave it out with --precision int8")
        images = (calibration_image or [], guard_image or [])
        export_int8(references[0], onnx, config, split, images, tile, keep_fp32)
        return
    if stac is not None:
        check_item_folder(stac, onnx)
    loaded = load_model(references[0])
    path = export_for_deepness(loaded, onnx, tile)  # landseg's card and Deepness's metadata (docs/INTEROP.md)
    Console(stderr=True).print(f"[green]exported[/] {path}")
    if stac is not None:
        Console(stderr=True).print(f"[green]wrote[/] {write_mlm_item(loaded, path, stac, tile)}")


def export_int8(
    reference: str,
    onnx: Path,
    config: Path | None,
    split: str,
    images: tuple[list[Path], list[Path]],
    tile: int | None,
    keep_fp32: str,
) -> None:
    from landseg.config import load_config
    from landseg.io.write import atomic_output
    from landseg.predict.int8 import describe_guard, guard_passes
    from landseg.train.int8 import quantize_on_images, quantize_on_splits

    calibration, guarded = images
    if config is not None:
        path, guard = quantize_on_splits(reference, load_config(config), split, tile, keep_fp32)
    elif calibration and guarded:
        path, guard = quantize_on_images(reference, calibration, guarded, tile, keep_fp32)
    else:
        raise ConfigError(
            "--precision int8 needs --config (an experiment whose images calibrate and guard it), or "
            "--calibration-image and --guard-image (unlabelled images, e.g. for a zoo model)"
        )
    with atomic_output(onnx) as temporary:
        shutil.copyfile(path, temporary)
    verdict = "--precision auto runs it" if guard_passes(guard) else "below the bars: --precision auto keeps fp32"
    Console(stderr=True).print(
        f"[green]exported[/] {onnx} (int8; cached as {path.name}): {describe_guard(guard)}; {verdict}"
    )
