"""``landseg predict`` and ``landseg export``: many inputs, one engine, resumable.

``run_predict`` is the whole command without the command line: it expands files, folders and glob
patterns, loads the models once, predicts every scene with ``engine.predict_scene`` and skips scenes
whose outputs are all there from an earlier run (``overwrite`` redoes them). A scene that fails is
reported and the others go on. ``predict_command`` and ``export_command`` are the typer commands.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional, Sequence

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from landseg.errors import ConfigError, DataError, LandsegError
from landseg.predict.blocks import DEFAULT_BLOCK_WIDTH

if TYPE_CHECKING:  # the engine imports PyTorch: only when a command runs, not for ``landseg --help``
    from landseg.predict.engine import PredictOptions, SceneResult

IMAGE_SUFFIXES = {".tif", ".tiff", ".jpg", ".jpeg", ".png", ".jp2", ".vrt", ".img"}


def find_inputs(inputs: Sequence[str | Path], out_dir: Path | None = None) -> list[Path]:
    """Files, folders (searched recursively for images) and glob patterns, in order, without repeats.

    Hidden files (our own partial outputs among them) and anything under ``out_dir`` are left out, so
    predicting a folder into a subfolder of itself finds the same scenes on every run.
    """
    out_dir = out_dir.resolve() if out_dir is not None else None

    def wanted(path: Path) -> bool:
        if path.name.startswith("."):
            return False
        return out_dir is None or out_dir not in path.resolve().parents

    paths: list[Path] = []
    for item in inputs:
        candidate = Path(item)
        if candidate.is_dir():
            found = sorted(p for p in candidate.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            found = [p for p in found if wanted(p)]
            if not found:
                raise DataError("folder holds no images (.tif, .jpg, .png, ...)", candidate)
            paths += found
        elif candidate.exists():
            paths.append(candidate)
        else:
            matches = [Path(p) for p in sorted(glob.glob(str(item), recursive=True))]
            matches = [p for p in matches if p.is_file() and wanted(p)]
            if not matches:
                raise DataError("no such file, and no file matches it as a pattern", item)
            paths += matches
    unique = list(dict.fromkeys(paths))
    by_stem: dict[str, Path] = {}
    for path in unique:
        if path.stem in by_stem:
            raise ConfigError(
                f"{by_stem[path.stem]} and {path} would write the same outputs ({path.stem}_*); predict them into "
                "different --out folders"
            )
        by_stem[path.stem] = path
    return unique


@dataclass
class PredictSummary:
    done: list[SceneResult] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[LandsegError] = field(default_factory=list)


def plan_inputs(inputs: Sequence[str | Path], out_dir: Path, options: PredictOptions, overwrite: bool,
                console: Console) -> tuple[list[Path], list[Path], PredictSummary]:
    """All inputs, those still to predict, and a summary that already lists the skipped ones."""
    from landseg.predict.engine import is_finished, output_paths

    paths = find_inputs(inputs, out_dir)
    summary = PredictSummary()
    todo = []
    for path in paths:
        if not overwrite and is_finished(output_paths(out_dir, path.stem, options)):
            summary.skipped.append(path)
            console.print(f"[dim]{path.name}: finished earlier, skipped (--overwrite to redo)[/]")
        else:
            todo.append(path)
    return paths, todo, summary


def run_predict(
    inputs: Sequence[str | Path],
    checkpoints: Sequence[str | Path],
    out_dir: str | Path,
    options: PredictOptions | None = None,
    engine: str = "auto",
    tta: str | None = None,
    precision: str = "fp32",
    device: str = "cpu",
    overwrite: bool = False,
    console: Console | None = None,
) -> PredictSummary:
    """Predict every input into ``out_dir``; a single input's failure is raised, several are collected."""
    from landseg.predict.engine import PredictOptions, predict_scene
    from landseg.predict.ensemble import load_ensemble

    options = options or PredictOptions()
    options.check()
    out_dir = Path(out_dir)
    console = console or Console(stderr=True)
    paths, todo, summary = plan_inputs(inputs, out_dir, options, overwrite, console)
    if not todo:
        return summary
    ensemble = load_ensemble(checkpoints, engine=engine, tta=tta, device=device, precision=precision, tile=options.tile)
    console.print("models: " + ", ".join(f"{m.path.name} ({m.engine})" for m in ensemble.members))
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("tiles"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        for path in todo:
            task = bar.add_task(path.name, total=None)
            try:
                result = predict_scene(
                    path, ensemble, out_dir, options,
                    on_start=lambda total, task=task: bar.update(task, total=total),
                    on_tiles=lambda n, task=task: bar.advance(task, n),
                )
            except LandsegError as exc:
                if len(paths) == 1:
                    raise
                summary.failed.append(exc)
                console.print(f"[red]failed[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
                continue
            finally:
                bar.remove_task(task)
            summary.done.append(result)
            outputs = ", ".join(p.name for k, p in result.paths.items() if k != "record")
            console.print(
                f"[green]{path.name}[/] {result.width}x{result.height} px, {result.tiles} tiles in "
                f"{result.seconds:.1f} s -> {out_dir}/ {outputs}"
            )
    return summary


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
