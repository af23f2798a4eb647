"""The worst images as one HTML page: image, label and prediction side by side, the suspected regions
outlined on each, numbered as in ``regions.csv``; built with the report package's colours and page."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from landseg.classes import ClassSchema
from landseg.io.figures import save_figure
from landseg.io.write import atomic_output
from landseg.report.display import display_rgb
from landseg.report.html import render_report
from landseg.report.overlay import blend_overlay, legend_patches

OUTLINE = "#ff00ff"
MAX_SIDE = 768
"""Panels are decimated to at most this many pixels a side."""


def render_issue_figure(
    image_rgb: np.ndarray,
    labels: np.ndarray,
    likely: np.ndarray,
    numbers: np.ndarray,
    schema: ClassSchema,
    path: Path,
    title: str,
) -> Path:
    """Image | label | prediction, each with the regions (``numbers`` > 0) outlined and numbered."""
    step = max(1, -(-max(labels.shape) // MAX_SIDE))
    image, labels, likely, numbers = (a[::step, ::step] for a in (image_rgb, labels, likely, numbers))
    panels = [
        ("image", image),
        ("label (given)", blend_overlay(image, labels, schema, alpha=0.85)),
        ("prediction (likely)", blend_overlay(image, likely, schema, alpha=0.85)),
    ]
    height, width = labels.shape
    fig = Figure(figsize=(3.8 * len(panels), 3.8 * height / width + 0.9), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    flagged = (numbers > 0).astype(np.float32)
    centres = _label_points(numbers)
    for ax, (name, picture) in zip(axes, panels, strict=False):
        ax.imshow(picture, interpolation="nearest")
        if flagged.any():
            ax.contour(flagged, levels=[0.5], colors=[OUTLINE], linewidths=1.2)
        for number, (row, col) in centres:
            ax.text(
                col,
                row,
                str(number),
                color="white",
                fontsize=7,
                ha="center",
                va="center",
                bbox={"facecolor": OUTLINE, "edgecolor": "none", "pad": 0.8, "alpha": 0.8},
            )
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    from matplotlib.patches import Patch

    handles = [*legend_patches(schema), Patch(facecolor="none", edgecolor=OUTLINE, label="suspected issue")]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 7), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def _label_points(numbers: np.ndarray, most: int = 30) -> list[tuple[int, tuple[float, float]]]:
    """A point inside each of the largest ``most`` regions, for its number."""
    from scipy import ndimage

    count = int(numbers.max()) if numbers.size else 0
    if not count:
        return []
    sizes = np.bincount(numbers.ravel(), minlength=count + 1)
    largest = [int(n) for n in np.argsort(sizes[1:])[::-1][:most] + 1]
    points = []
    for number, box in zip(range(1, count + 1), ndimage.find_objects(numbers), strict=False):
        if number not in largest or box is None:
            continue
        rows, cols = np.nonzero(numbers[box] == number)
        middle = len(rows) // 2
        points.append((number, (box[0].start + rows[middle], box[1].start + cols[middle])))
    return points


def display_image(data: np.ndarray, valid: np.ndarray | None, card_bands: Sequence[int] | None) -> np.ndarray:
    bands = [b - 1 for b in card_bands[:3]] if card_bands is not None and len(card_bands) >= 3 else None
    if bands is not None and max(bands) >= data.shape[0]:
        bands = None
    return display_rgb(data, bands, valid)


def write_gallery(path: Path, title: str, figures: Sequence[tuple[str, Path]], notes: dict[str, str]) -> Path:
    """One self-contained HTML page (figures embedded) at ``path``."""
    document = render_report(title, None, figures, notes)
    with atomic_output(path) as temporary:
        temporary.write_text(document, encoding="utf-8")
    return path
