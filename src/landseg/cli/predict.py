"""``landseg predict`` and ``landseg export``: options in, ``predict.run.run_predict`` or the exporter called."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from landseg.errors import ConfigError
from landseg.predict.blocks import DEFAULT_BLOCK_WIDTH

def _parse_bands(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        return tuple(int(part) for part in text.replace(" ", "").split(","))
    except ValueError:
        raise ConfigError(f"--bands must be 1-based band numbers separated by commas, got {text!r}") from None


CheckpointOption = typer.Option("--checkpoint", "-c", help="A .ckpt or exported .onnx model; repeat for an ensemble.")
ProbabilitiesOption = typer.Option("--probabilities", help="Also write per-class probabilities (uint8 COG).")
ConfidenceOption = typer.Option("--confidence", help="Also write the winning class's probability (uint8 COG).")
EngineOption = typer.Option(help="auto (ONNX Runtime on CPU when installed), torch or onnxruntime.")
PrecisionOption = typer.Option(help="fp32, or bf16 autocast (torch engine; faster, less exact).")
MinAreaOption = typer.Option(help="Regions under this many pixels take their surroundings' class.")
DaskOption = typer.Option("--dask", help="Run on the Dask scheduler at this address (tcp://host:8786); inputs and "
                          "--out must be on a file system every worker sees.")
WorkersOption = typer.Option("--workers", help="Run on a local Dask cluster of N worker processes.")


def predict_command(
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders or glob patterns.")],
    checkpoint: Annotated[list[Path], CheckpointOption],
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("predictions"),
    tile: Annotated[Optional[int], typer.Option(help="Network tile side in pixels (default: the card's).")] = None,
    overlap: Annotated[float, typer.Option(help="Tile overlap fraction in [0, 1).")] = 0.5,
    blend: Annotated[str, typer.Option(help="Weights of overlapping tiles: uniform, hann or gaussian.")] = "hann",
    batch_size: Annotated[int, typer.Option(help="Tiles per forward pass (CPU: 1-2; GPU: 8+).")] = 2,
    tta: Annotated[Optional[str], typer.Option(help="Test-time augmentation: flips or d4.")] = None,
    engine: Annotated[str, EngineOption] = "auto",
    precision: Annotated[str, PrecisionOption] = "fp32",
    device: Annotated[str, typer.Option(help="Torch device: cpu, cuda, cuda:1 ...")] = "cpu",
    bands: Annotated[Optional[str], typer.Option(help="Input bands in the model's order, e.g. 4,3,2.")] = None,
    nodata: Annotated[Optional[float], typer.Option(help="Input no-data value (default: the file's).")] = None,
    min_area: Annotated[int, MinAreaOption] = 0,
    probabilities: Annotated[bool, ProbabilitiesOption] = False,
    confidence: Annotated[bool, ConfidenceOption] = False,
    polygons: Annotated[Optional[str], typer.Option(help="Also write polygons per class: gpkg or geojson.")] = None,
    simplify: Annotated[float, typer.Option(help="Polygon simplification tolerance in pixels.")] = 0.0,
    preview: Annotated[bool, typer.Option(help="Write a coloured PNG preview with legend.")] = True,
    areas: Annotated[bool, typer.Option(help="Write class areas (CSV and JSON).")] = True,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Redo scenes whose outputs already exist.")] = False,
    block_width: Annotated[int, typer.Option(help="Columns streamed at once; bounds memory.")] = DEFAULT_BLOCK_WIDTH,
    dask: Annotated[Optional[str], DaskOption] = None,
    workers: Annotated[Optional[int], WorkersOption] = None,
    threads: Annotated[Optional[int], typer.Option(help="Network threads per Dask worker (default: its share "
                                                          "of the cores on a local cluster).")] = None,
):
    """Land-cover maps of scenes of any size: class COG, optional probabilities, preview, areas, polygons.

    With --dask or --workers, scenes and column blocks of scenes run as Dask tasks and each scene is assembled into the same files the single-process command writes (docs/DISTRIBUTED.md).
    """
    from landseg.predict.engine import PredictOptions

    options = PredictOptions(
        tile=tile, overlap=overlap, blend=blend, batch_size=batch_size, block_width=block_width,
        bands=_parse_bands(bands), nodata=nodata, probabilities=probabilities, confidence=confidence,
        preview=preview, areas=areas, polygons=polygons, simplify=simplify, min_area=min_area,
    )
    common = dict(options=options, engine=engine, tta=tta, precision=precision, device=device, overwrite=overwrite)
    if dask or workers:
        from landseg.distributed.predict import predict_on_cluster

        summary = predict_on_cluster(inputs, checkpoint, out, address=dask, workers=workers, threads=threads, **common)
    else:
        if threads is not None:
            raise ConfigError("--threads sets the threads of Dask workers; use it with --dask or --workers")
        from landseg.predict.run import run_predict

        summary = run_predict(inputs, checkpoint, out, **common)
    if summary.failed:
        total = len(summary.done) + len(summary.skipped) + len(summary.failed)
        Console(stderr=True).print(f"[red]{len(summary.failed)} of {total} inputs failed[/]")
        raise typer.Exit(1)


def export_command(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", "-c", help="A landseg checkpoint (.ckpt).")],
    onnx: Annotated[Path, typer.Option("--onnx", help="The ONNX file to write.")],
    tile: Annotated[Optional[int], typer.Option(help="Tile side the model takes (default: the checkpoint's).")] = None,
):
    """Export a checkpoint to ONNX (model card included) for `landseg predict --engine onnxruntime`."""
    from landseg.predict.onnx import export_onnx

    path = export_onnx(checkpoint, onnx, tile)
    Console(stderr=True).print(f"[green]exported[/] {path}")
