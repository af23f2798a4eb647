"""``landseg sample MAP --out points.gpkg``: options in, ``assess.sample.draw_sample`` called, a summary out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from landseg.cli.errors import console
from landseg.errors import ConfigError

MapSchema = Annotated[
    str | None,
    typer.Option(help="Schema (name or YAML) of a map that carries no landseg schema; values are codes."),
]
"""``--schema`` of ``landseg sample`` and ``landseg assess``."""


def _expected_users(items: list[str] | None) -> dict[str, float]:
    found = {}
    for item in items or []:
        name, _, value = item.rpartition("=")
        try:
            found[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"--expected-ua takes CLASS=ACCURACY (e.g. forest=0.9), got {item!r}") from None
        if not name.strip():
            raise ConfigError(f"--expected-ua takes CLASS=ACCURACY (e.g. forest=0.9), got {item!r}")
    return found


def _breaks(text: str) -> list[float]:
    try:
        return [float(value) for value in text.split(",")]
    except ValueError:
        raise ConfigError(f"--strata-breaks takes numbers separated by commas (e.g. 0.2,0.5), got {text!r}") from None


def sample_command(
    map_path: Annotated[Path, typer.Argument(metavar="MAP", help="Class map to sample (one band of integer classes).")],
    out: Annotated[
        Path, typer.Option("--out", help="Points GeoPackage; its .csv and .design.json go beside it.")
    ] = Path("points.gpkg"),
    method: Annotated[str, typer.Option(help="stratified, simple (random) or systematic.")] = "stratified",
    strata: Annotated[
        Path | None, typer.Option(help="Stratify by this raster's values (same grid) instead of the map's classes.")
    ] = None,
    strata_breaks: Annotated[
        str | None,
        typer.Option(
            help="Cut a continuous --strata raster (e.g. predict --uncertainty) into strata at these values, "
            "e.g. 0.2,0.5; the strata raster is written beside OUT."
        ),
    ] = None,
    size: Annotated[int | None, typer.Option(help="Total sample points (default 500, or from --target-se).")] = None,
    allocation: Annotated[
        str, typer.Option(help="Points per stratum: olofsson (a minimum per rare stratum), proportional or equal.")
    ] = "olofsson",
    min_per_stratum: Annotated[int, typer.Option(help="The olofsson allocation's points per rare stratum.")] = 50,
    target_se: Annotated[
        float | None,
        typer.Option(help="Sample size for this standard error of overall accuracy (Olofsson et al. 2014, eq. 13)."),
    ] = None,
    expected_ua: Annotated[
        list[str] | None,
        typer.Option(help="Anticipated user's accuracy of a stratum for --target-se: NAME=0.9 (repeat)."),
    ] = None,
    default_ua: Annotated[float, typer.Option(help="Anticipated user's accuracy of the strata not named.")] = 0.8,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed draws the same points.")] = 0,
    schema: MapSchema = None,
    image: Annotated[
        Path | None, typer.Option(help="Imagery for an HTML labelling sheet with a chip around each point.")
    ] = None,
):
    """Draw a probability sample of a map for reference labelling (docs/ASSESS.md).

    Writes OUT (GeoPackage of pixel centres with stratum, map class and an empty 'reference' field), the
    same as CSV, and OUT.design.json (strata, their pixels and areas, sample sizes, inclusion
    probabilities), which `landseg assess` needs.
    """
    from landseg.assess.sample import SampleOptions, draw_sample

    options = SampleOptions(
        method=method.lower(),
        size=size,
        allocation=allocation.lower(),
        minimum=min_per_stratum,
        target_se=target_se,
        expected_users=_expected_users(expected_ua),
        default_user=default_ua,
        seed=seed,
    )
    if strata_breaks is not None:
        from landseg.maps.bins import write_binned

        if strata is None:
            raise ConfigError("--strata-breaks cuts the --strata raster into strata: give --strata too")
        breaks = _breaks(strata_breaks)
        strata = write_binned(strata, breaks, out.with_name(f"{out.stem}.strata.tif"))
    result = draw_sample(map_path, out, options, strata_path=strata, schema=schema, image=image)
    strata_text = ", ".join(f"{s.name or s.value} {s.sample_size}" for s in result.design.strata)
    console.print(
        f"[green]drew[/] {len(result.points):,} points ({result.design.method}; {strata_text}) in {result.seconds:.1f} s\n"
        "  -> " + ", ".join(str(p) for p in result.paths.values())
    )
