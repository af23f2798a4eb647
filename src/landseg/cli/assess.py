"""``landseg assess MAP POINTS --reference-field NAME``: options in, ``assess.run.assess_map`` called, a summary out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from landseg.cli.errors import console
from landseg.cli.sample import MapSchema


def assess_command(
    map_path: Annotated[Path, typer.Argument(metavar="MAP", help="Class map (or change map) that was sampled.")],
    points: Annotated[Path, typer.Argument(help="Labelled sample points (GeoPackage or any GDAL point layer).")],
    reference_field: Annotated[str, typer.Option(help="Field of POINTS that holds the reference class.")] = "reference",
    design: Annotated[
        Path | None,
        typer.Option(help="Sampling design JSON (default: POINTS.design.json beside the points, written by sample)."),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("assessment"),
    schema: MapSchema = None,
    pictures: Annotated[bool, typer.Option(help="Draw the figures.")] = True,
):
    """Accuracy and class areas with 95 % intervals from a labelled probability sample (docs/ASSESS.md).

    Writes accuracy.json, error_matrix.csv (estimated area proportions), areas.csv, areas.png,
    accuracies.png and report.html. Without a design only the sample's confusion matrix is written.
    """
    from landseg.assess.run import assess_map

    result = assess_map(map_path, points, reference_field, out, design_path=design, schema=schema, pictures=pictures)
    summary = result.summary
    dropped = ""
    if summary["points_outside_map"] or summary["points_on_nodata"]:
        dropped = (
            f"; [yellow]not used: {summary['points_outside_map']} outside the map, "
            f"{summary['points_on_nodata']} on no-data[/]"
        )
    if summary["points_reprojected"]:
        dropped += f"; reprojected from {summary['points_crs']}"
    if result.estimates is None:
        console.print(f"[yellow]no design:[/] {summary['why_no_estimates']}")
        console.print(
            f"{summary['points_used']} points{dropped}\n  -> {out}/ " + ", ".join(p.name for p in result.paths.values())
        )
        return
    overall = result.estimates.overall
    unit = summary["area_unit"]
    lines = [
        f"[green]assessed[/] with {summary['points_used']} points{dropped}",
        f"  overall accuracy {overall.value:.3f} ± {overall.half_width:.3f} (95 %)",
    ]
    for row in summary["per_class"]:
        area = row[f"estimated_area_{unit}"]
        if area["estimate"] is None:
            continue
        half = (area["ci95"][1] - area["ci95"][0]) / 2
        lines.append(
            f"  {row['class']}: mapped {row[f'mapped_area_{unit}']:,.1f} {unit}, estimated {area['estimate']:,.1f} ± {half:,.1f} {unit}"
        )
    lines.append(f"  -> {out}/ " + ", ".join(p.name for p in result.paths.values()))
    console.print("\n".join(lines), highlight=False)
