"""Figures for evaluation and training: confusion matrix, per-class scores, reliability, training curves,
class shares.

Figures are built on ``matplotlib.figure.Figure`` directly (rendered by Agg), not through pyplot, so
nothing depends on the global backend, no window can open and no figure lingers in pyplot's registry.
Every writer saves a PNG atomically and returns its path.
"""

from __future__ import annotations

import csv
import math
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.artist import Artist
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from landseg.classes import ClassSchema
from landseg.errors import DataError
from landseg.io.figures import save_figure
from landseg.metrics import ConfusionMatrix

PathLike = str | os.PathLike
SCORE_NAMES = ("iou", "f1", "precision", "recall")
SCORE_LABELS = {"iou": "IoU", "f1": "F1", "precision": "Precision", "recall": "Recall"}
CURVE_COLUMNS = ("train_loss", "val_loss", "val_miou", "lr")
_MISSING_COLOR = (0.6, 0.6, 0.6)


def class_colors(schema: ClassSchema, names: Sequence[str]) -> list[tuple[float, float, float]]:
    """Matplotlib colours for ``names`` from the schema (grey for a name the schema does not know)."""
    by_name = dict(zip(schema.names, schema.plot_colors(), strict=True))
    return [by_name.get(name, _MISSING_COLOR) for name in names]


def _text_color(rgb: Sequence[float]) -> str:
    """Black or white, whichever reads better on ``rgb`` (relative luminance)."""
    r, g, b = rgb[:3]
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.5 else "white"


def plot_confusion_matrix(
    cm: ConfusionMatrix,
    schema: ClassSchema,
    path: PathLike,
    *,
    title: str | None = None,
    axes: tuple[str, str] = ("true class", "predicted class"),
    scores: bool = True,
) -> Path:
    """Row-normalized confusion matrix (share of each true class), annotated with share and pixel count.

    ``axes`` names the rows and the columns; ``scores`` False leaves mIoU and accuracy out of the title
    (a matrix of other pairs than truth and prediction, such as ``landseg audit``'s given and likely class)."""
    if cm.num_classes != schema.num_classes:
        raise ValueError(
            f"{cm.num_classes}-class confusion matrix for schema {schema.name!r} with {schema.num_classes} classes"
        )
    k = cm.num_classes
    shares = cm.normalized("true")
    counts = cm.matrix
    side = max(4.0, 0.9 * k + 2.0)
    fig = Figure(figsize=(side + 1.2, side))
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["Blues"].with_extremes(bad="#EEEEEE")
    image = ax.imshow(np.ma.masked_invalid(shares), cmap=cmap, vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label=f"share of {axes[0]}")
    if k <= 20:
        font = 9 if k <= 8 else 7
        for i in range(k):
            for j in range(k):
                share = shares[i, j]
                text = "–" if math.isnan(share) else f"{share:.2f}\n{counts[i, j]:,}"
                color = "black" if math.isnan(share) else _text_color(cmap(share))
                ax.text(j, i, text, ha="center", va="center", fontsize=font, color=color)
    ax.set_xticks(range(k), labels=schema.names, rotation=40, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(k), labels=schema.names)
    tick_colors = schema.plot_colors() * 2
    for label, tick_color in zip(ax.get_xticklabels() + ax.get_yticklabels(), tick_colors, strict=False):
        label.set_bbox({"facecolor": tick_color, "edgecolor": "none", "alpha": 0.35, "pad": 1.5})
    ax.set_xlabel(axes[1])
    ax.set_ylabel(axes[0])
    summary = f"{cm.total:,} px"
    if scores:
        summary = f"mIoU {cm.miou:.3f} · pixel accuracy {cm.pixel_accuracy:.3f} · {summary}"
    ax.set_title(f"{title}\n{summary}" if title else summary, fontsize=10)
    return save_figure(fig, path)


def plot_per_class(metrics: Mapping, schema: ClassSchema, path: PathLike, *, title: str | None = None) -> Path:
    """Grouped bars of IoU, F1, precision and recall per class in the class colour (hatch = score).

    Scores that are undefined (``None``/NaN, e.g. precision of a class never predicted) are marked
    "n/a" instead of drawn as zero.
    """
    names = list(metrics["class_names"])
    colors = class_colors(schema, names)
    hatches = {"iou": "", "f1": "//", "precision": "..", "recall": "xx"}
    width = 0.2
    fig = Figure(figsize=(max(6.0, 1.3 * len(names) + 2), 4.5), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(names))
    for s, score in enumerate(SCORE_NAMES):
        offset = (s - (len(SCORE_NAMES) - 1) / 2) * width
        for i, name in enumerate(names):
            value = metrics["per_class"][name][score]
            if value is None or math.isnan(value):
                ax.text(x[i] + offset, 0.02, "n/a", rotation=90, ha="center", va="bottom", fontsize=7)
                continue
            ax.bar(x[i] + offset, value, width, color=colors[i], edgecolor="black", linewidth=0.6, hatch=hatches[score])
    ax.set_xticks(x, labels=names, rotation=30 if len(names) > 6 else 0, ha="right" if len(names) > 6 else "center")
    ax.set_ylim(0, 1.05)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylabel("score")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    handles: list[Artist] = [
        Patch(facecolor="white", edgecolor="black", hatch=hatches[score], label=SCORE_LABELS[score])
        for score in SCORE_NAMES
    ]
    if metrics.get("miou") is not None:
        ax.axhline(metrics["miou"], color="black", linestyle="--", linewidth=1)
        handles.append(Line2D([], [], color="black", linestyle="--", linewidth=1, label=f"mIoU {metrics['miou']:.3f}"))
    fig.legend(handles=handles, ncols=len(handles), loc="outside lower center", frameon=False)
    ax.set_title(title or "Per-class scores", fontsize=10)
    return save_figure(fig, path)


def plot_reliability(calibration: Mapping, path: PathLike, *, title: str | None = None) -> Path:
    """Reliability diagram of ``landseg.calibration.CalibrationTally.to_dict()``: each bin's accuracy
    against its mean top-label probability (on the diagonal when calibrated), its share of pixels below."""
    rows = [row for row in calibration["reliability"] if row["pixels"]]
    fig = Figure(figsize=(5.0, 6.0), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    width = rows[0]["upper"] - rows[0]["lower"] if rows else 1.0
    centres = [(row["lower"] + row["upper"]) / 2 for row in rows]
    top.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="calibrated")
    top.bar(
        centres,
        [row["accuracy"] for row in rows],
        width * 0.9,
        color="#4C72B0",
        edgecolor="black",
        linewidth=0.5,
        label="accuracy",
    )
    top.plot(
        [row["mean_probability"] for row in rows],
        [row["accuracy"] for row in rows],
        "o",
        color="#C44E52",
        markersize=4,
        label="mean probability",
    )
    top.set_xlim(0, 1)
    top.set_ylim(0, 1.02)
    top.set_ylabel("accuracy of the map's class")
    top.legend(loc="upper left", frameon=False, fontsize=8)
    top.set_title(
        title or f"ECE {calibration['ece']:.3f}, Brier {calibration['brier']:.3f} ({calibration['pixels']:,} pixels)",
        fontsize=10,
    )
    total = sum(row["pixels"] for row in rows) or 1
    bottom.bar(centres, [row["pixels"] / total for row in rows], width * 0.9, color="#999999")
    bottom.set_xlabel("probability of the map's class")
    bottom.set_ylabel("share of pixels")
    return save_figure(fig, path)


def _read_curves(csv_path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-column (epochs, values), skipping empty cells and averaging repeats within an epoch
    (Lightning's CSVLogger writes train and validation values on separate rows)."""
    try:
        with csv_path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise DataError(f"cannot read training log: {exc.strerror}", csv_path) from None
    series: dict[str, dict[float, list[float]]] = {name: defaultdict(list) for name in CURVE_COLUMNS}
    for row_number, row in enumerate(rows):
        epoch_text = (row.get("epoch") or "").strip()
        epoch = float(epoch_text) if epoch_text else float(row_number)
        for name in CURVE_COLUMNS:
            text = (row.get(name) or "").strip()
            if not text:
                continue
            try:
                value = float(text)
            except ValueError:
                raise DataError(f"row {row_number + 2}: {name} is {text!r}, not a number", csv_path) from None
            if math.isfinite(value):
                series[name][epoch].append(value)
    return {
        name: (np.array(sorted(by_epoch)), np.array([np.mean(by_epoch[e]) for e in sorted(by_epoch)]))
        for name, by_epoch in series.items()
        if by_epoch
    }


def plot_training_curves(csv_path: PathLike, path: PathLike, *, title: str | None = None) -> Path:
    """Loss, validation mIoU and learning rate per epoch from a CSV log.

    Reads the columns ``epoch, train_loss, val_loss, val_miou, lr`` where present (others are
    ignored) and draws one panel per group that has data.
    """
    csv_path = Path(csv_path)
    curves = _read_curves(csv_path)
    panels = [
        group for group in (("train_loss", "val_loss"), ("val_miou",), ("lr",)) if any(name in curves for name in group)
    ]
    if not panels:
        raise DataError(f"training log has none of the columns {', '.join(CURVE_COLUMNS)} with values", csv_path)
    fig = Figure(figsize=(4.2 * len(panels), 3.6), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    styles = {
        "train_loss": ("train loss", "tab:blue"),
        "val_loss": ("validation loss", "tab:orange"),
        "val_miou": ("validation mIoU", "tab:green"),
        "lr": ("learning rate", "tab:purple"),
    }
    first = min(float(epochs[0]) for epochs, _ in curves.values())
    last = max(float(epochs[-1]) for epochs, _ in curves.values())
    for ax, group in zip(axes, panels, strict=False):
        for name in group:
            if name not in curves:
                continue
            epochs, values = curves[name]
            label, color = styles[name]
            ax.plot(epochs, values, marker="o" if len(epochs) <= 30 else None, markersize=3, color=color, label=label)
            if name == "val_miou":
                best = int(np.argmax(values))
                ax.scatter([epochs[best]], [values[best]], s=80, facecolors="none", edgecolors="black", zorder=3)
                ax.set_title(f"validation mIoU (best {values[best]:.3f}, epoch {epochs[best]:g})", fontsize=10)
        if group == ("lr",) and np.all(curves["lr"][1] > 0) and curves["lr"][1].max() / curves["lr"][1].min() > 20:
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        if last - first < 4:  # MaxNLocator falls back to fractional ticks on a range this short
            ax.set_xticks(np.arange(math.ceil(first), math.floor(last) + 1))
            ax.set_xlim(first - 0.5, last + 0.5)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if group != ("val_miou",):
            ax.set_title("loss" if "train_loss" in group else "learning rate", fontsize=10)
        ax.grid(alpha=0.3)
        if len(group) > 1:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def plot_class_distribution(
    counts: Sequence[int] | np.ndarray | Mapping[str, int],
    schema: ClassSchema,
    path: PathLike,
    *,
    title: str | None = None,
) -> Path:
    """Horizontal bars of pixels per class (class colours), labelled with counts and shares.

    ``counts`` is one number per schema class, in schema order, or a mapping from class name to count.
    """
    if isinstance(counts, Mapping):
        unknown = set(counts) - set(schema.names)
        if unknown:
            raise ValueError(f"class counts name classes not in schema {schema.name!r}: {sorted(unknown)}")
        values = np.array([counts.get(name, 0) for name in schema.names], dtype=np.float64)
    else:
        values = np.asarray(counts, dtype=np.float64).reshape(-1)
        if values.size != schema.num_classes:
            raise ValueError(f"{values.size} class counts for schema {schema.name!r} with {schema.num_classes} classes")
    if (values < 0).any():
        raise ValueError("class counts must not be negative")
    total = values.sum()
    fig = Figure(figsize=(7.0, max(2.5, 0.45 * schema.num_classes + 1.2)))
    ax = fig.add_subplot()
    y = np.arange(schema.num_classes)
    ax.barh(y, values, color=schema.plot_colors(), edgecolor="black", linewidth=0.6)
    ax.set_yticks(y, labels=schema.names)
    ax.invert_yaxis()
    peak = values.max() if total > 0 else 1.0
    ax.set_xlim(0, peak * 1.3)
    for i, value in enumerate(values):
        share = value / total if total > 0 else 0.0
        ax.text(value + peak * 0.01, i, f"{value:,.0f} ({share:.1%})", va="center", fontsize=8)
    ax.set_xlabel("pixels")
    ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 5))
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    ax.set_title(title or f"Class distribution ({total:,.0f} labelled pixels)", fontsize=10)
    return save_figure(fig, path)
