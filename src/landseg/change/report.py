"""Pictures of a change and the page that puts them together.

A heatmap of the transition matrix (share of each BEFORE class, annotated with area or pixels), gains
and losses per class, the change map preview (decimated from the change COG's overviews) with a legend
of the largest changes, and, with confidences, changed area against the confidence threshold. Figures
are built on ``matplotlib.figure.Figure`` and saved atomically by ``io.figures.save_figure``; the page
is ``report.write_report``.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import rasterio
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from rasterio.enums import Resampling

from landseg.change.outputs import ARROW, change_colormap
from landseg.classes import ClassSchema
from landseg.io.figures import save_figure
from landseg.report.html import write_report
from landseg.report.overlay import PREVIEW_MAX_SIDE
from landseg.report.plots import class_colors

LEGEND_ENTRIES = 10


def _unit(summary: dict) -> tuple[np.ndarray, str]:
    if summary["hectares"] is not None:
        return np.array(summary["hectares"]), "ha"
    return np.array(summary["pixels"], dtype=np.float64), "px"


def _amount(value: float, unit: str) -> str:
    return f"{value:,.0f}" if unit == "px" or abs(value) >= 100 else f"{value:,.2f}"


def plot_transitions(summary: dict, schema: ClassSchema, path: Path) -> Path:
    values, unit = _unit(summary)
    names = summary["classes"]
    k = len(names)
    totals = values.sum(axis=1, keepdims=True)
    shares = np.divide(values, totals, out=np.full_like(values, np.nan), where=totals > 0)
    side = max(4.0, 0.9 * k + 2.0)
    fig = Figure(figsize=(side + 1.2, side))
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["Oranges"].with_extremes(bad="#EEEEEE")
    image = ax.imshow(np.ma.masked_invalid(shares), cmap=cmap, vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the BEFORE class")
    for i in range(k):
        for j in range(k):
            if not np.isnan(shares[i, j]):
                color = "white" if shares[i, j] > 0.6 else "black"
                ax.text(
                    j,
                    i,
                    f"{shares[i, j]:.2f}\n{_amount(values[i, j], unit)}",
                    ha="center",
                    va="center",
                    fontsize=8 if k <= 8 else 6,
                    color=color,
                )
    ax.set_xticks(range(k), labels=names, rotation=40, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(k), labels=names)
    ax.set_xlabel("AFTER class")
    ax.set_ylabel("BEFORE class")
    ax.set_title(
        f"Transitions ({unit}); {100 * summary['changed_share']:.2f}% of the compared area changed", fontsize=10
    )
    return save_figure(fig, path)


def plot_gains_losses(summary: dict, schema: ClassSchema, path: Path) -> Path:
    values, unit = _unit(summary)
    names = summary["classes"]
    stayed = np.diag(values)
    gains, losses = values.sum(axis=0) - stayed, values.sum(axis=1) - stayed
    x = np.arange(len(names))
    colors = class_colors(schema, names)
    fig = Figure(figsize=(max(6.0, 1.1 * len(names) + 2), 4.2), layout="constrained")
    ax = fig.add_subplot()
    ax.bar(x, gains, 0.6, color=colors, edgecolor="black", linewidth=0.6, label="gain")
    ax.bar(x, -losses, 0.6, color=colors, edgecolor="black", linewidth=0.6, hatch="//", label="loss")
    ax.scatter(x, gains - losses, color="black", marker="D", zorder=3, label="net")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(x, labels=names, rotation=30 if len(names) > 6 else 0, ha="right" if len(names) > 6 else "center")
    ax.set_ylabel(f"area ({unit})")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(
        handles=[
            Patch(facecolor="white", edgecolor="black", label="gain"),
            Patch(facecolor="white", edgecolor="black", hatch="//", label="loss"),
            ax.collections[0],
        ],
        labels=["gain", "loss", "net"],
        frameon=False,
    )
    ax.set_title("Gains and losses per class", fontsize=10)
    return save_figure(fig, path)


def plot_confidence_curve(summary: dict, path: Path, chosen: float | None) -> Path:
    rows = summary["changed_vs_confidence"]
    unit = "ha" if summary["hectares"] is not None else "pixels"
    p = [r["min_confidence"] for r in rows]
    changed = [r["changed_ha"] if unit == "ha" else r["changed_pixels"] for r in rows]
    fig = Figure(figsize=(5.5, 3.8), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(p, changed, marker="o", color="#C0392B")
    if chosen is not None:
        ax.axvline(chosen, color="black", linestyle="--", linewidth=1, label=f"--min-confidence {chosen:g}")
        ax.legend(frameon=False)
    ax.set_xlabel("minimum confidence on both dates")
    ax.set_ylabel(f"changed area ({unit})")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.set_title("Changed area vs confidence threshold", fontsize=10)
    return save_figure(fig, path)


def plot_change_map(change_cog: Path, summary: dict, schema: ClassSchema, path: Path) -> Path:
    """The change map, decimated to ``PREVIEW_MAX_SIDE``, beside a legend of its largest changes."""
    with rasterio.open(change_cog) as source:
        step = max(1, -(-max(source.height, source.width) // PREVIEW_MAX_SIDE))
        shape = (max(1, source.height // step), max(1, source.width // step))
        codes = source.read(1, out_shape=shape, resampling=Resampling.nearest)
    lut = np.zeros((256, 4), dtype=np.uint8)
    for code, rgba in change_colormap(schema).items():
        lut[code] = rgba
    values, unit = _unit(summary)
    k = len(summary["classes"])
    ranked = sorted(
        ((values[i, j], i, j) for i in range(k) for j in range(k) if i != j and values[i, j] > 0), reverse=True
    )
    handles = [
        Patch(
            facecolor=_rgb(lut[i * k + j]),
            edgecolor="black",
            label=f"{schema.names[i]}{ARROW}{schema.names[j]} {_amount(v, unit)} {unit}",
        )
        for v, i, j in ranked[:LEGEND_ENTRIES]
    ]
    handles.append(Patch(facecolor=_rgb(lut[0]), edgecolor="black", label="unchanged"))
    height, width = codes.shape
    map_width = min(max(width / 100, 4.0), 12.0)
    fig = Figure(figsize=(map_width + 3.4, max(map_width * height / width, 3.0)), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(lut[codes], interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        fontsize=8,
        frameon=False,
        title="largest changes" + (" (more in the tables)" if len(ranked) > LEGEND_ENTRIES else ""),
        title_fontsize=8,
    )
    return save_figure(fig, path, dpi=100)


def _rgb(rgba: np.ndarray) -> tuple[float, float, float]:
    """A colour table's 0-255 entry as the 0-1 RGB that matplotlib takes."""
    red, green, blue = (float(value) / 255 for value in rgba[:3])
    return red, green, blue


def matrix_text(summary: dict) -> str:
    values, unit = _unit(summary)
    names = summary["classes"]
    width = max(12, *(len(n) + 2 for n in names))
    corner = "before \\ after (" + unit + ")"
    lines = [f"{corner:<{width + 6}}" + "".join(f"{n:>{width}}" for n in names)]
    for name, row in zip(names, values, strict=False):
        lines.append(f"{name:<{width + 6}}" + "".join(f"{_amount(v, unit):>{width}}" for v in row))
    lines.append("")
    lines.append(f"{'class':<{width}}{'before':>12}{'after':>12}{'gain':>12}{'loss':>12}{'net':>12}")
    key = "ha" if unit == "ha" else "pixels"
    for row in summary["per_class"]:
        lines.append(
            f"{row['class']:<{width}}"
            + "".join(
                f"{_amount(row[f'{kind}_{key}'], unit):>12}" for kind in ("before", "after", "gain", "loss", "net")
            )
        )
    return "\n".join(lines)


def write_change_report(out_dir: Path, summary: dict, facts: dict, figures: list[tuple[str, Path]]) -> Path:
    excluded = summary["excluded"]
    unit_total = (
        f"{summary['compared_ha']:,.2f} ha"
        if summary["compared_ha"] is not None
        else f"{summary['compared_pixels']:,} px"
    )
    overview = [
        f"BEFORE: {facts['before']}",
        f"AFTER:  {facts['after']}" + (" (warped onto BEFORE's grid, nearest neighbour)" if facts["resampled"] else ""),
        f"schema: {facts['schema']}; grid: {facts['crs']}, {facts['overlap_width']} x {facts['overlap_height']} px "
        "overlap",
        f"compared: {summary['compared_pixels']:,} px ({unit_total}); changed: {summary['changed_pixels']:,} px "
        f"({100 * summary['changed_share']:.2f}%)",
        f"excluded as no-data: {excluded['either']:,} px of the overlap (BEFORE {excluded['before_nodata']:,}, "
        f"AFTER {excluded['after_nodata']:,}, including outside AFTER's footprint)",
    ]
    if facts.get("min_confidence") is not None:
        overview.append(
            f"confidence rule: both dates >= {facts['min_confidence']:g}; "
            f"{summary['uncertain_pixels']:,} px of change below it counted as unchanged"
        )
    sections = {"Overview": "\n".join(overview), "Transition matrix and class totals": matrix_text(summary)}
    return write_report(out_dir, "Land-cover change", images=figures, sections=sections)
