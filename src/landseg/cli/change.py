"""``landseg change BEFORE AFTER --out DIR``: options in, ``change.run.compare_maps`` called, a summary out."""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Annotated

import typer

from landseg.cli import options
from landseg.cli.errors import console


def change_command(
    before: Annotated[Path, typer.Argument(help="Class map (or image, with --checkpoint) of the first date.")],
    after: Annotated[Path, typer.Argument(help="Class map (or image, with --checkpoint) of the second date.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("change"),
    checkpoint: options.Checkpoints = None,
    schema: Annotated[
        str | None,
        typer.Option(
            help="Schema (name or YAML) of class maps that do not carry landseg's; their values are its codes."
        ),
    ] = None,
    after_schema: Annotated[str | None, typer.Option(help="AFTER's schema, when it differs from --schema.")] = None,
    class_map: Annotated[
        Path | None, typer.Option(help="YAML: BEFORE class name -> AFTER class name, for dates with different schemas.")
    ] = None,
    min_confidence: Annotated[
        float | None, typer.Option(help="Count a change only where both dates are at least this confident (0..1).")
    ] = None,
    before_confidence: Annotated[
        Path | None, typer.Option(help="Confidence raster of BEFORE (predict --confidence).")
    ] = None,
    after_confidence: Annotated[Path | None, typer.Option(help="Confidence raster of AFTER.")] = None,
    polygons: Annotated[str, typer.Option(help="Change polygons: gpkg, geojson or none.")] = "gpkg",
    min_polygon_pixels: Annotated[
        int,
        typer.Option(
            help="Smallest change polygon kept, in pixels (the map keeps every pixel; predict's --min-area "
            "is a minimum mapping unit that changes the map)."
        ),
    ] = 1,
    block: Annotated[int, typer.Option(help="Side of the square blocks streamed at once; bounds memory.")] = 2048,
    pictures: Annotated[bool, typer.Option(help="Draw the figures and report.html.")] = True,
    engine: options.Engine = "auto",
    device: options.Device = "cpu",
    cloud_mask: options.CloudMask = "auto",
    dask: Annotated[
        str | None,
        typer.Option(
            "--dask",
            help="Compare rows of blocks on the Dask scheduler at this "
            "address; the maps and --out on a file system every worker sees.",
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Compare on a local Dask cluster of N worker processes.")
    ] = None,
):
    """Which class became which, where, how much area and how sure: the change between two dates.

    Writes change.tif (from-to codes COG on BEFORE's grid), transitions_{pixels,ha}.csv,
    class_changes.csv, change.json, change polygons, pictures and report.html (docs/CHANGE.md).
    """
    from landseg.change.run import PREDICTION, ChangeOptions, compare_maps, predict_pair

    chosen = ChangeOptions(
        prediction=replace(PREDICTION, cloud_mask=cloud_mask),
        block=block,
        min_confidence=min_confidence,
        polygons=None if polygons.lower() == "none" else polygons.lower(),
        min_polygon_pixels=min_polygon_pixels,
        pictures=pictures,
    )
    chosen.check()
    if checkpoint:
        if before_confidence or after_confidence:
            from landseg.errors import ConfigError

            raise ConfigError(
                "with --checkpoint the confidences come from the predictions; drop "
                "--before-confidence/--after-confidence"
            )
        (before, before_confidence), (after, after_confidence) = predict_pair(
            [before, after],
            checkpoint,
            out / "predictions",
            engine=engine,
            device=device,
            console=console,
            options=chosen.prediction,
        )
    compare = partial(
        compare_maps,
        schema=schema,
        after_schema=after_schema,
        class_map=class_map,
        before_confidence=before_confidence,
        after_confidence=after_confidence,
        options=chosen,
        console=console,
    )
    if dask or workers:
        from landseg.distributed.cluster import dask_client

        with dask_client(dask, workers) as client:
            result = compare(before.resolve(), after.resolve(), out, executor=client)
    else:
        result = compare(before, after, out)
    summary = result.summary
    area = "" if summary["changed_ha"] is None else f" = {summary['changed_ha']:,.2f} ha"
    console.print(
        f"[green]compared[/] {summary['compared_pixels']:,} px; changed {summary['changed_pixels']:,} px{area} "
        f"({100 * summary['changed_share']:.2f}%); excluded as no-data {summary['excluded']['either']:,} px; "
        f"{result.seconds:.1f} s\n  -> {out}/ " + ", ".join(p.name for p in result.paths.values())
    )
