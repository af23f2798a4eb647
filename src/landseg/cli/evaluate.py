"""``landseg evaluate``: the prediction options of ``landseg predict``, a config naming the labelled split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from landseg.cli import options
from landseg.cli.errors import console
from landseg.cli.options import DEFAULTS
from landseg.predict.options import PredictOptions


def evaluate_command(
    config: Annotated[Path, typer.Option(help="Experiment YAML naming the data and its split.")],
    split: Annotated[str, typer.Option(help="Split to evaluate: train, val or test.")] = "val",
    out: Annotated[Path, typer.Option("--out", help="Folder for metrics.json, maps, plots and report.")] = Path(
        "evaluation"
    ),
    checkpoint: options.Checkpoints = None,
    model: options.ZooModels = None,
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
):
    """Per-class IoU, F1, precision and recall of the maps `landseg predict` writes with the same options.

    The maps are written to OUT/maps and scored against the split's masks; metrics.json records the options.
    """
    from landseg.config import load_config
    from landseg.evaluate import evaluate
    from landseg.predict.ensemble import load_ensemble
    from landseg.report import metrics_table

    chosen = PredictOptions(
        tile=tile,
        overlap=overlap,
        blend=blend,
        batch_size=batch_size,
        bands=options.parse_bands(bands),
        nodata=nodata,
        min_area=min_area,
        input_value_scale=input_scale_values,
        allow_input_mismatch=allow_input_mismatch,
        cloud_mask=cloud_mask,
    )
    chosen.check()
    experiment = load_config(config)
    models = options.model_references(checkpoint, model)
    ensemble = load_ensemble(models, engine=engine, tta=tta, device=device, precision=precision, tile=tile)
    result = evaluate(ensemble, experiment, split, out, chosen)
    Console().print(
        metrics_table(result.metrics, schema=result.schema, title=f"{split}: {result.metrics['images']} images")
    )
    console.print(f"metrics: {result.metrics_path}\nreport:  {result.report_path}")
    if result.quarantined:
        for problem in result.quarantined:
            console.print(f"[red]left out[/] {escape(str(problem))}", highlight=False, soft_wrap=True)
        console.print(f"[red]{len(result.quarantined)} images left out of the metrics[/]")
        raise typer.Exit(1)
