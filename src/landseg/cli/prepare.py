"""``landseg prepare``: align, rasterize, tile, split, stats, all. Thin wrappers that parse, call and print.

Mounted on the main app (``cli/main.py``) as ``landseg prepare``.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from landseg.cli.errors import friendly_errors
from landseg.errors import ConfigError

if TYPE_CHECKING:
    from landseg.classes import UnknownPolicy

prepare_app = typer.Typer(
    help="Raw scenes to a clean, documented training set: align or rasterize labels, cut chips, filter, split, stats.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True)
out_console = Console()

ConfigArg = Annotated[Path, typer.Argument(help="Preparation YAML, or an output folder of an earlier run.")]
SetOption = Annotated[list[str] | None, typer.Option("--set", help="Override a config value: dotted.key=value.")]
OverwriteOption = Annotated[bool, typer.Option("--overwrite", help="Replace chips of an earlier run in the output.")]
DaskOption = Annotated[
    str | None,
    typer.Option(
        "--dask",
        help="Run on the Dask scheduler at this address (tcp://host:8786); files must be on a shared file system.",
    ),
]
WorkersOption = Annotated[int | None, typer.Option("--workers", help="Run on a local Dask cluster of N processes.")]


@prepare_app.command("align")
@friendly_errors
def align_command(
    image: Annotated[Path, typer.Argument(help="Image raster whose grid the labels go onto.")],
    label: Annotated[Path, typer.Argument(help="Label raster of class codes.")],
    out: Annotated[Path, typer.Option("--out", help="Output GeoTIFF.")],
    schema: Annotated[str, typer.Option(help="Class schema: built-in name or YAML file.")],
    method: Annotated[str, typer.Option(help="Label resampling: mode (majority) or nearest.")] = "mode",
    resample: Annotated[str, typer.Option(help="Which side moves: label (onto the image grid) or image.")] = "label",
    image_method: Annotated[str, typer.Option(help="Image resampling with --resample image.")] = "average",
    grid: Annotated[str, typer.Option(help="auto, geo (by coordinates) or pixel (same extent).")] = "auto",
    label_nodata: Annotated[float | None, typer.Option(help="Label no-data value (default: the file's).")] = None,
    unknown_labels: Annotated[str, typer.Option(help="Codes the schema lacks: error or ignore.")] = "error",
    block: Annotated[int, typer.Option(help="Output window side in pixels.")] = 512,
    threads: Annotated[int, typer.Option(help="GDAL warp threads.")] = 1,
):
    """Put a label raster on an image's grid (or the image on the label's), window by window."""
    import time

    import rasterio

    from landseg.classes import get_schema
    from landseg.data.prepare.align import align_labels, resample_image
    from landseg.data.prepare.config import AlignConfig
    from landseg.data.prepare.execution import GDAL_CACHE_MB

    options = _validated(
        AlignConfig,
        method=method,
        resample=resample,
        image_method=image_method,
        grid=grid,
        block=block,
        threads=threads,
    )
    unknown = _unknown_policy(unknown_labels)
    started = time.perf_counter()
    env = rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB)
    with env:
        if options.resample == "label":
            result = align_labels(
                image,
                label,
                out,
                get_schema(schema),
                method=options.method,
                label_nodata=label_nodata,
                unknown=unknown,
                grid=options.grid,
                block=options.block,
                max_source_pixels=options.max_source_pixels,
                threads=options.threads,
            )
        else:
            result = resample_image(
                image,
                label,
                out,
                method=options.image_method,
                grid=options.grid,
                block=options.block,
                max_source_pixels=options.max_source_pixels,
                threads=options.threads,
            )
    seconds = time.perf_counter() - started
    console.print(
        f"[green]aligned[/] {result.path}: {result.windows} windows, "
        f"{result.source_bytes / 2**20:,.1f} MB read in {seconds:.1f} s"
    )


@prepare_app.command("rasterize")
@friendly_errors
def rasterize_command(
    image: Annotated[Path, typer.Argument(help="Image raster whose grid the labels go onto.")],
    vectors: Annotated[list[Path], typer.Argument(help="Vector label files (GeoPackage, GeoJSON, Shapefile, ...).")],
    out: Annotated[Path, typer.Option("--out", help="Output GeoTIFF of class indices (255 = no label).")],
    schema: Annotated[str, typer.Option(help="Class schema: built-in name or YAML file.")],
    attribute: Annotated[str, typer.Option(help="Attribute holding each feature's class name or code.")],
    layer: Annotated[str | None, typer.Option(help="Layer to read (files with one layer need none).")] = None,
    value: Annotated[
        list[str] | None, typer.Option("--value", help="Map an attribute value to a class: VALUE=CLASS (repeatable).")
    ] = None,
    background: Annotated[str | None, typer.Option(help="Class of pixels no feature covers.")] = None,
    buffer: Annotated[float, typer.Option(help="Buffer in pixels around points and lines.")] = 0.0,
    priority: Annotated[str | None, typer.Option(help="Numeric attribute deciding overlaps (higher on top).")] = None,
    unknown_labels: Annotated[str, typer.Option(help="Values the schema lacks: error or ignore.")] = "error",
    block: Annotated[int, typer.Option(help="Output window side in pixels.")] = 512,
):
    """Burn vector labels onto an image's grid as a class-index GeoTIFF, window by window."""
    from landseg.classes import get_schema
    from landseg.config import VectorRules
    from landseg.data.vector_labels import vector_labels_for, write_label_raster

    values = dict(_assignment(v) for v in value or [])
    rules = _validated(
        VectorRules,
        attribute=attribute,
        layer=layer,
        values=values or None,
        background=background,
        buffer=buffer,
        priority=priority,
    )
    unknown = _unknown_policy(unknown_labels)
    labels = vector_labels_for([v.resolve() for v in vectors], rules, get_schema(schema), unknown)
    result = write_label_raster(image, labels, [v.resolve() for v in vectors], out, block=max(16, block))
    console.print(
        f"[green]rasterized[/] {result.path}: {result.features} features, {result.labelled_pixels:,} labelled "
        f"pixels, {result.windows} windows"
    )


def _assignment(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise ConfigError(f"--value expects VALUE=CLASS, got {text!r}")
    key, target = text.split("=", 1)
    return key.strip(), target.strip()


@prepare_app.command("tile")
@friendly_errors
def tile_command(
    config: ConfigArg,
    set_: SetOption = None,
    overwrite: OverwriteOption = False,
    dask: DaskOption = None,
    workers: WorkersOption = None,
):
    """Align where needed, cut chips, filter them; write chips, chips.csv and filters.json."""
    from landseg.data.prepare.run import tile

    _, result = _cut("tile", tile, config, set_, overwrite, dask, workers)
    print_filter_report(result.report.to_dict())
    console.print(f"index: {result.index}\nreport: {result.report_path}")
    exit_if_quarantined(result.report.to_dict(), result.report_path)


@prepare_app.command("split")
@friendly_errors
def split_command(config: ConfigArg, set_: SetOption = None):
    """Split the kept chips (seeded ratios or spatial blocks); write splits/<name>.txt."""
    from landseg.data.prepare.config import load_prepare_config
    from landseg.data.prepare.run import split

    prepared = load_prepare_config(config, set_ or [])
    print_split(split(prepared).to_dict())
    console.print(f"split files: {prepared.out / 'splits'}")


@prepare_app.command("stats")
@friendly_errors
def stats_command(config: ConfigArg, set_: SetOption = None, dask: DaskOption = None, workers: WorkersOption = None):
    """Band mean/std of a split's chips and class frequencies by stage; stats.json and a bar plot."""
    from landseg.data.prepare.config import load_prepare_config
    from landseg.data.prepare.run import stats

    prepared = load_prepare_config(config, set_ or [])
    with _executor("stats", dask, workers) as executor:
        payload = stats(prepared, executor=executor)
    print_stats(payload, prepared.out)


@prepare_app.command("all")
@friendly_errors
def all_command(
    config: ConfigArg,
    set_: SetOption = None,
    overwrite: OverwriteOption = False,
    dask: DaskOption = None,
    workers: WorkersOption = None,
):
    """Every stage: align, tile and filter, split, stats; reproduces a data set from one config."""
    from landseg.data.prepare.run import prepare_all

    prepared, summary = _cut("all", prepare_all, config, set_, overwrite, dask, workers)
    result = summary["tile"]
    print_filter_report(result.report.to_dict())
    print_split(summary["split"].to_dict())
    print_stats(summary["stats"], prepared.out)
    exit_if_quarantined(result.report.to_dict(), result.report_path)


def _cut(name: str, stage, config: Path, overrides, overwrite: bool, address: str | None, workers: int | None):
    """The loaded config and what ``stage`` (one that cuts chips) returns, run with a progress bar."""
    from landseg.data.prepare.config import load_prepare_config

    prepared = load_prepare_config(config, overrides or [])
    with _executor(name, address, workers) as executor, _progress(prepared) as progress:
        return prepared, stage(
            prepared, overwrite=overwrite, progress=progress, executor=executor, cloud_masker=_model_cloud_masks
        )


def _model_cloud_masks(images: Sequence[Path], out_dir: Path) -> dict[Path, Path]:
    """The cloud model's masks, for ``filters.max_cloud_fraction.source: model`` (``tile`` calls this only
    then, so other preparations never load PyTorch and the model)."""
    from landseg.predict.clouds import write_cloud_masks

    console.print(f"[dim]cloud masks of {len(images)} images by the cloud model, into {out_dir}[/]")
    return write_cloud_masks(images, out_dir)


@contextmanager
def _executor(stage: str, address: str | None, workers: int | None):
    """None (this process) or a Dask cluster's executor; Dask is imported only when asked for."""
    if not (address or workers):
        yield None
        return
    from landseg.distributed.prepare import dask_executor

    console.print(f"[dim]{stage} on Dask: {address or f'{workers} local workers'}[/]")
    with dask_executor(address, workers) as executor:
        yield executor


def _unknown_policy(text: str) -> UnknownPolicy:
    """``--unknown-labels`` as the policy the readers take."""
    if text not in ("error", "ignore"):
        raise ConfigError(f"--unknown-labels must be error or ignore, not {text!r}")
    return "error" if text == "error" else "ignore"


def _validated(model, **values):
    try:
        return model(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"--{'-'.join(str(p) for p in first['loc'])}: {first['msg']}") from None


class _progress:
    """A rich progress bar over the chips ``tile`` visits, as a ``(kind, n)`` callback."""

    def __init__(self, config):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from landseg.data.prepare.run import count_chips

        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self.task = self.bar.add_task("cutting chips", total=count_chips(config))

    def __enter__(self):
        self.bar.start()
        return lambda kind, n: self.bar.advance(self.task, n) if kind == "chips" else None

    def __exit__(self, *exc):
        self.bar.stop()


def print_filter_report(report: dict) -> None:
    table = Table(title=f"{report['candidates']} candidate chips, {report['kept']} kept")
    table.add_column("rule")
    table.add_column("chips", justify="right")
    table.add_column("examples")
    for rule, entry in report["dropped"].items():
        table.add_row(rule, str(entry["count"]), ", ".join(entry["chips"][:3]))
    quarantined = report["quarantined"]
    table.add_row(
        "[red]quarantined[/]",
        str(quarantined["count"]),
        "; ".join(f"{q['source']}: {q['error']}" for q in quarantined["items"][:2]),
    )
    out_console.print(table)


def exit_if_quarantined(report: dict, report_path: Path, shown: int = 10) -> None:
    """One line per quarantined file and per scene that lost every chip; exit code 1 after quarantine,
    once every stage has run on the other scenes."""
    from rich.markup import escape

    for scene in report["scenes_without_chips"]:
        reasons = ", ".join(f"{rule}: {count}" for rule, count in scene["chips"].items())
        console.print(
            f"[yellow]no chips kept[/] {escape(scene['image'])}: none of its chips passed ({reasons})",
            highlight=False,
            soft_wrap=True,
        )
    items = report["quarantined"]["items"]
    for item in items[:shown]:
        where = f" (chip {item['chip']}, {item['window']})" if item["chip"] else ""
        console.print(
            f"[red]quarantined[/] {escape(item['source'])}: {escape(item['error'])}{escape(where)}",
            highlight=False,
            soft_wrap=True,
        )
    if items:
        more = f"; {len(items) - shown} more in the report" if len(items) > shown else ""
        console.print(
            f"[red]{len(items)} files or windows quarantined{more}:[/] {report_path}", highlight=False, soft_wrap=True
        )
        raise typer.Exit(1)


def print_split(summary: dict) -> None:
    table = Table(title="splits")
    for column in ("split", "chips", "listed", "blocks", "dropped by overlap guard"):
        table.add_column(column, justify="right" if column != "split" else "left")
    for name, chips in summary["chips"].items():
        guard = summary["guard_dropped"].get(name, {"count": 0})["count"]
        table.add_row(name, str(chips), str(summary["listed"][name]), str(summary["blocks"].get(name, "")), str(guard))
    out_console.print(table)


def print_stats(payload: dict, out: Path) -> None:
    bands = payload["bands"]
    table = Table(title=f"bands over {payload['chips']['count']} chips ({payload['chips']['split']})")
    for column in ("band", "mean", "std", "min", "max"):
        table.add_column(column, justify="right" if column != "band" else "left")
    for i, name in enumerate(bands["names"]):
        table.add_row(
            name, f"{bands['mean'][i]:.4f}", f"{bands['std'][i]:.4f}", f"{bands['min'][i]:g}", f"{bands['max'][i]:g}"
        )
    out_console.print(table)
    snippet = yaml.safe_dump(
        {"data": {"normalization": payload["normalization"]}}, default_flow_style=None, sort_keys=False
    )
    out_console.print("Paste into the training config:\n" + snippet, highlight=False)
    console.print(f"stats: {out / 'stats.json'}")
