"""Which scenes a prediction run covers: files, folders and glob patterns, and what is already done.

Shared by the single-process run (``predict/run.py``) and the Dask run (``distributed/predict.py``), so
both find the same scenes and skip the same finished ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from landseg.errors import ConfigError, LandsegError
from landseg.io.paths import image_paths

if TYPE_CHECKING:
    from landseg.predict.engine import PredictOptions, SceneResult


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

    unique = image_paths(inputs, keep=wanted)
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
