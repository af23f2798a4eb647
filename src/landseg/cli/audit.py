"""``landseg audit``: suspected label issues of a labelled split, from out-of-sample probabilities."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from landseg.cli import options
from landseg.cli.errors import console


def audit_command(
    config: Annotated[Path, typer.Option(help="Experiment YAML naming the data and its split.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the CSVs, GeoPackage, plot and gallery.")],
    checkpoint: Annotated[
        list[Path] | None,
        typer.Option(
            "--checkpoint", "-c", help="A trained model (repeat for an ensemble) that did not train on the split."
        ),
    ] = None,
    folds: Annotated[
        int | None,
        typer.Option(help="Train K models with the config's recipe, each predicting the images it did not see."),
    ] = None,
    minutes_per_fold: Annotated[float | None, typer.Option(help="Training time budget of each fold model.")] = None,
    split: Annotated[str, typer.Option(help="Split to audit: train, val or test.")] = "train",
    seed: Annotated[int, typer.Option(help="Seed of the fold assignment.")] = 0,
    min_region: Annotated[int, typer.Option(help="Smallest region of suspected issues reported, in pixels.")] = 16,
    gallery: Annotated[int, typer.Option(help="Worst images shown in gallery.html.")] = 12,
    tile: options.Tile = None,
    engine: options.Engine = "auto",
    device: options.Device = "cpu",
):
    """Find pixels and regions whose labels look wrong, with cleanlab, and rank images and regions.

    Writes OUT/images.csv and OUT/regions.csv (ranked), OUT/regions.gpkg (georeferenced data), OUT/classes.csv,
    OUT/given_vs_likely.png, OUT/gallery.html and OUT/audit.json. Train without the regions with
    data.exclude: OUT/regions.gpkg.
    """
    from landseg.audit import audit
    from landseg.config import load_config
    from landseg.predict.options import PredictOptions

    experiment = load_config(config)
    result = audit(
        experiment,
        out,
        split=split,
        checkpoints=checkpoint,
        folds=folds,
        minutes_per_fold=minutes_per_fold,
        seed=seed,
        min_region=min_region,
        gallery=gallery,
        options=PredictOptions(tile=tile),
        engine=engine,
        device=device,
    )
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    summary = result.summary
    share = summary["flagged_share"] or 0.0
    console.print(
        f"{summary['images']} images, {summary['flagged_pixels']} of {summary['labelled_pixels']} labelled "
        f"pixels flagged ({share:.2%}), {summary['regions']} regions of at least {min_region} px"
    )
    for row in result.images[:5]:
        console.print(
            f"  #{row['rank']} {escape(row['image'])}: label quality {row['label_quality']}, {row['regions']} regions",
            highlight=False,
        )
    gpkg = f"\nregions: {result.regions_gpkg}" if result.regions_gpkg else ""
    console.print(f"images:  {result.images_csv}\nregions: {result.regions_csv}{gpkg}\ngallery: {result.gallery}")
    for problem in result.quarantined:
        console.print(f"[red]left out[/] {escape(str(problem))}", highlight=False, soft_wrap=True)
