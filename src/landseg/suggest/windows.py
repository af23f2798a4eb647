"""Windows of a mapped scene scored by their mean uncertainty, and a diverse choice among them.

A scene is cut into a grid of ``size`` x ``size`` windows from its top-left corner (the last row and
column of windows are cut short at the scene's edge). A window's score is the mean uncertainty of its
mapped pixels; a window whose mapped pixels cover less than ``min_valid`` of a full window (no-data,
a scene's ragged edge) is not offered. The rasters are read a row of windows at a time, so memory is a
strip of ``size`` rows whatever the scene's size.

The choice is greedy by score with a spacing rule: a window is skipped when an already chosen window of
the same scene lies fewer than ``spacing`` windows away (Chebyshev distance on the window grid). So one
large uncertain area (a cloud, an unfamiliar district) gives one suggestion per ``spacing`` windows, not
``budget`` neighbours, and the rest of the budget goes to other places.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.windows import Window as RasterWindow

from landseg.io.georef import open_without_grid_warning
from landseg.maps.cog import NODATA_BYTE, PROBABILITY_STEPS


@dataclass(frozen=True)
class Candidate:
    scene: Path
    row: int
    """Window grid position (row, col) in windows; pixel offsets are ``row * size``, ``col * size``."""
    col: int
    row_off: int
    col_off: int
    height: int
    width: int
    score: float
    """Mean uncertainty of the window's mapped pixels, in [0, 1]."""
    valid_fraction: float
    class_pixels: tuple[int, ...]
    """Mapped pixels of each class in the window."""


def score_windows(
    scene: Path, uncertainty: Path, classes: Path, size: int, num_classes: int, min_valid: float = 0.5
) -> list[Candidate]:
    """Every window of ``scene``'s grid with enough mapped pixels, scored from its written uncertainty and
    class rasters (``predict_scene`` outputs, uint8 steps, no-data 255)."""
    candidates = []
    with open_without_grid_warning(uncertainty) as unsure_file, open_without_grid_warning(classes) as class_file:
        height, width = unsure_file.height, unsure_file.width
        full = min(size, height) * min(size, width)
        column_window = np.arange(width) // size
        columns = int(column_window[-1]) + 1
        for row, top in enumerate(range(0, height, size)):
            rows = min(size, height - top)
            strip = RasterWindow(0, top, width, rows)
            unsure, labels = unsure_file.read(1, window=strip), class_file.read(1, window=strip)
            mapped = unsure != NODATA_BYTE
            ids = np.broadcast_to(column_window, unsure.shape)[mapped]
            counts = np.bincount(ids, minlength=columns)
            sums = np.bincount(ids, weights=unsure[mapped].astype(np.float64), minlength=columns)
            per_class = np.bincount(
                ids * num_classes + np.minimum(labels[mapped], num_classes - 1), minlength=columns * num_classes
            ).reshape(columns, num_classes)
            for col in range(columns):
                if counts[col] == 0 or counts[col] < min_valid * full:
                    continue
                candidates.append(
                    Candidate(
                        scene=scene,
                        row=row,
                        col=col,
                        row_off=top,
                        col_off=col * size,
                        height=rows,
                        width=min(size, width - col * size),
                        score=float(sums[col] / counts[col] / PROBABILITY_STEPS),
                        valid_fraction=float(counts[col] / full),
                        class_pixels=tuple(int(n) for n in per_class[col]),
                    )
                )
    return candidates


def choose_diverse(candidates: list[Candidate], budget: int, spacing: int = 2) -> list[Candidate]:
    """Up to ``budget`` candidates, most uncertain first, none closer than ``spacing`` windows to an
    earlier choice in the same scene (``spacing`` 1: neighbours allowed, no rule)."""
    if budget < 1:
        raise ValueError(f"budget must be at least 1, got {budget}")
    if spacing < 1:
        raise ValueError(f"spacing must be at least 1 window, got {spacing}")
    ranked = sorted(candidates, key=lambda c: (-c.score, str(c.scene), c.row, c.col))
    chosen: list[Candidate] = []
    taken: dict[Path, list[tuple[int, int]]] = {}
    for candidate in ranked:
        places = taken.setdefault(candidate.scene, [])
        if any(max(abs(candidate.row - r), abs(candidate.col - c)) < spacing for r, c in places):
            continue
        chosen.append(candidate)
        places.append((candidate.row, candidate.col))
        if len(chosen) == budget:
            break
    return chosen
