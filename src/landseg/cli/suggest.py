"""``landseg suggest``: the windows of unlabelled scenes a model is least sure of, to label next."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from landseg.cli import options
from landseg.cli.errors import console
from landseg.cli.options import DEFAULTS


def suggest_command(
    inputs: Annotated[list[str], typer.Argument(help="Unlabelled image files, folders or glob patterns.")],
    checkpoint: options.Checkpoints = None,
    model: options.ZooModels = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for the suggestions and the maps behind them.")] = Path(
        "suggestions"
    ),
    budget: Annotated[int, typer.Option(help="How many windows to suggest.")] = 20,
    size: Annotated[int, typer.Option(help="Window side in image pixels.")] = 512,
    measure: Annotated[str, typer.Option(help="Uncertainty: entropy or margin.")] = "entropy",
    spacing: Annotated[
        int, typer.Option(help="Suggestions within one image are at least this many windows apart (1: no rule).")
    ] = 2,
    min_valid: Annotated[float, typer.Option(help="Skip windows mapped on less than this share of their area.")] = 0.5,
    tile: options.Tile = DEFAULTS.tile,
    overlap: options.Overlap = DEFAULTS.overlap,
    tta: options.TTA = None,
    engine: options.Engine = "auto",
    bands: options.Bands = None,
    nodata: options.Nodata = None,
    input_scale_values: options.InputScaleValues = DEFAULTS.input_value_scale,
    allow_input_mismatch: options.AllowInputMismatch = False,
):
    """Rank windows of unlabelled imagery by the model's uncertainty, spread over the images.

    Writes OUT/suggestions.gpkg (window boxes for QGIS), OUT/suggestions.csv (ranked), OUT/report.html
    (image, prediction and uncertainty of each window) and the uncertainty maps in OUT/maps.
    """
    from landseg.predict.ensemble import load_ensemble
    from landseg.predict.inputs import find_inputs
    from landseg.predict.options import PredictOptions
    from landseg.suggest.run import SuggestOptions, suggest

    chosen = SuggestOptions(budget=budget, size=size, measure=measure, spacing=spacing, min_valid=min_valid)
    chosen.check()
    prediction = PredictOptions(
        tile=tile,
        overlap=overlap,
        bands=options.parse_bands(bands),
        nodata=nodata,
        input_value_scale=input_scale_values,
        allow_input_mismatch=allow_input_mismatch,
    )
    prediction.check()
    scenes = find_inputs(inputs, out)
    ensemble = load_ensemble(options.model_references(checkpoint, model), engine=engine, tta=tta, tile=tile)
    result = suggest(scenes, ensemble, out, chosen, prediction)
    console.print(
        f"[green]{len(result.chosen)}[/] of {result.candidates} windows suggested: {result.csv}, "
        f"{result.boxes or '(no georeferenced scene: no GeoPackage)'}, {result.report}"
    )
