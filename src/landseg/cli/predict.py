"""``landseg predict``: options in, ``predict.run.run_predict`` (or the Dask cluster) called."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from landseg.cli import options
from landseg.cli.options import DEFAULTS
from landseg.errors import ConfigError
from landseg.predict.blocks import DEFAULT_BLOCK_WIDTH
from landseg.predict.options import PredictOptions

ProbabilitiesOption = typer.Option("--probabilities", help="Also write per-class probabilities (uint8 COG).")
ConfidenceOption = typer.Option("--confidence", help="Also write the winning class's probability (uint8 COG).")
UncertaintyOption = typer.Option(
    "--uncertainty",
    help="Also write an uncertainty COG: entropy (of the class probabilities, over log of the class count) "
    "or margin (1 - the gap between the two likeliest classes); 0 certain, 1 undecided.",
)
DaskOption = typer.Option(
    "--dask",
    help="Run on the Dask scheduler at this address (tcp://host:8786); inputs and "
    "--out must be on a file system every worker sees.",
)
WorkersOption = typer.Option("--workers", help="Run on a local Dask cluster of N worker processes.")
OutputsOption = typer.Option(
    "--outputs",
    help="Extra layers, comma-separated or repeated: cloud (the cloud and shadow mask), probabilities, confidence.",
)
OUTPUT_LAYERS = ("cloud", "probabilities", "confidence")
CompositeOption = typer.Option(
    "--composite",
    help="Combine the inputs (one place, several dates) into one map over their clear pixels: mode (the "
    "class seen most often) or mean-probability.",
)
GridOption = typer.Option("--grid", help="A raster whose grid (CRS, pixels, extent) the --composite takes.")


def parse_outputs(values: list[str] | None) -> set[str]:
    layers = {part.strip().lower() for value in values or [] for part in value.split(",") if part.strip()}
    unknown = sorted(layers - set(OUTPUT_LAYERS))
    if unknown:
        raise ConfigError(f"--outputs: unknown layer {', '.join(unknown)}; choose from {', '.join(OUTPUT_LAYERS)}")
    return layers


def predict_command(
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders or glob patterns.")],
    checkpoint: options.Checkpoints = None,
    model: options.ZooModels = None,
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("predictions"),
    tile: options.Tile = DEFAULTS.tile,
    overlap: options.Overlap = DEFAULTS.overlap,
    blend: options.Blend = DEFAULTS.blend,
    batch_size: options.BatchSize = DEFAULTS.batch_size,
    tta: options.TTA = None,
    engine: options.Engine = "auto",
    precision: options.Precision = "auto",
    device: options.Device = "cpu",
    bands: options.Bands = None,
    nodata: options.Nodata = None,
    min_area: options.MinArea = DEFAULTS.min_area,
    input_scale_values: options.InputScaleValues = DEFAULTS.input_value_scale,
    allow_input_mismatch: options.AllowInputMismatch = False,
    cloud_mask: options.CloudMask = DEFAULTS.cloud_mask,
    outputs: Annotated[list[str] | None, OutputsOption] = None,
    composite: Annotated[str | None, CompositeOption] = None,
    grid: Annotated[Path | None, GridOption] = None,
    probabilities: Annotated[bool, ProbabilitiesOption] = False,
    confidence: Annotated[bool, ConfidenceOption] = False,
    uncertainty: Annotated[str | None, UncertaintyOption] = None,
    polygons: Annotated[str | None, typer.Option(help="Also write polygons per class: gpkg or geojson.")] = None,
    simplify: Annotated[float, typer.Option(help="Polygon simplification tolerance in pixels.")] = 0.0,
    preview: Annotated[bool, typer.Option(help="Write a coloured PNG preview with legend.")] = True,
    areas: Annotated[bool, typer.Option(help="Write class areas (CSV and JSON).")] = True,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Redo scenes whose outputs already exist.")] = False,
    block_width: Annotated[int, typer.Option(help="Columns streamed at once; bounds memory.")] = DEFAULT_BLOCK_WIDTH,
    dask: Annotated[str | None, DaskOption] = None,
    workers: Annotated[int | None, WorkersOption] = None,
    threads: Annotated[
        int | None,
        typer.Option(help="Network threads per Dask worker (default: its share of the cores on a local cluster)."),
    ] = None,
    stac: Annotated[
        list[Path] | None,
        typer.Option(
            "--stac", help="A STAC Item (MLM extension) whose mlm:model asset to run; repeatable, combinable with -c."
        ),
    ] = None,
):
    """Land-cover maps of scenes of any size: class COG, optional probabilities, preview, areas, polygons.

    With --dask or --workers, scenes and column blocks of scenes run as Dask tasks and each scene is assembled into the same files the single-process command writes (docs/DISTRIBUTED.md).
    """
    layers = parse_outputs(outputs)
    chosen = PredictOptions(
        tile=tile,
        overlap=overlap,
        blend=blend,
        batch_size=batch_size,
        block_width=block_width,
        bands=options.parse_bands(bands),
        nodata=nodata,
        probabilities=probabilities or "probabilities" in layers,
        confidence=confidence or "confidence" in layers,
        uncertainty=uncertainty,
        preview=preview,
        areas=areas,
        polygons=polygons,
        simplify=simplify,
        min_area=min_area,
        input_value_scale=input_scale_values,
        allow_input_mismatch=allow_input_mismatch,
        cloud_mask=cloud_mask,
        cloud_output="cloud" in layers,
    )
    if stac:  # the model each MLM item describes joins the ensemble like a --checkpoint
        from landseg.interop.stac import model_from_item

        checkpoint = [*(checkpoint or []), *(model_from_item(item) for item in stac)]
    models = options.model_references(checkpoint, model)
    if composite is not None:
        if dask or workers:
            raise ConfigError("--composite runs in one process: leave out --dask and --workers")
        from landseg.predict.composite import run_composite

        result = run_composite(
            inputs,
            models,
            out,
            composite,
            options=chosen,
            grid=grid,
            engine=engine,
            tta=tta,
            precision=precision,
            device=device,
            overwrite=overwrite,
        )
        left_out = f", {len(result.skipped)} cloudy dates left out" if result.skipped else ""
        Console(stderr=True).print(
            f"[green]{composite} composite[/] of {len(result.dates)} dates{left_out}: "
            f"{100 * result.clear_fraction:.1f} % of the grid seen clear -> {result.paths['classes']}"
        )
        return
    elif grid is not None:
        raise ConfigError("--grid sets the grid of a --composite; use it with --composite")
    if dask or workers:
        from landseg.distributed.predict import predict_on_cluster

        summary = predict_on_cluster(
            inputs,
            models,
            out,
            address=dask,
            workers=workers,
            threads=threads,
            options=chosen,
            engine=engine,
            tta=tta,
            precision=precision,
            device=device,
            overwrite=overwrite,
        )
    else:
        if threads is not None:
            raise ConfigError("--threads sets the threads of Dask workers; use it with --dask or --workers")
        from landseg.predict.run import run_predict

        summary = run_predict(
            inputs,
            models,
            out,
            options=chosen,
            engine=engine,
            tta=tta,
            precision=precision,
            device=device,
            overwrite=overwrite,
        )
    if summary.failed:
        total = len(summary.done) + len(summary.skipped) + len(summary.failed)
        Console(stderr=True).print(f"[red]{len(summary.failed)} of {total} inputs failed[/]")
        raise typer.Exit(1)
