"""Which scenes a prediction run covers: files, folders and glob patterns, and what is already done.

Shared by the single-process run (``predict/run.py``) and the Dask run (``distributed/predict.py``), so
both find the same scenes and skip the same finished ones.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from landseg.errors import ConfigError, DataError, LandsegError

if TYPE_CHECKING:
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
        if candidate.is_dir() and candidate.suffix.lower() == ".safe":  # a Sentinel-2 product is one scene
            paths.append(candidate)
        elif candidate.is_dir():
            found = _images_in(candidate)
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


def _images_in(folder: Path) -> list[Path]:
    """Image files under ``folder``; a Sentinel-2 ``.SAFE`` folder counts as one image, its band files as none."""
    products = sorted(p for p in folder.rglob("*.SAFE") if p.is_dir())
    found = [
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not any(product in p.parents for product in products)
    ]
    return sorted(found + products)


@dataclass
class PredictSummary:
    done: list[SceneResult] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[LandsegError] = field(default_factory=list)


def plan_inputs(
    inputs: Sequence[str | Path], out_dir: Path, options: PredictOptions, overwrite: bool, console: Console
) -> tuple[list[Path], list[Path], PredictSummary]:
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
