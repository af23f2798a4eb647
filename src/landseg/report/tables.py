"""Metrics as a rich table for the terminal, and the number formats the reports share."""

from __future__ import annotations

import math
from collections.abc import Mapping

from rich.table import Table
from rich.text import Text

from landseg.classes import ClassSchema, color_hex

MISSING = "–"
"""Shown for a score that is undefined (NaN / ``None``), e.g. precision of a class never predicted."""


def format_score(value: float | None) -> str:
    """A 0..1 score as a percentage with two decimals, the way segmentation results are quoted."""
    if value is None or math.isnan(value):
        return MISSING
    return f"{100 * value:.2f}"


def support_shares(metrics: Mapping) -> dict[str, float | None]:
    """Each class's share of the labelled pixels."""
    supports = {name: metrics["per_class"][name]["support"] for name in metrics["class_names"]}
    total = sum(supports.values())
    return {name: (count / total if total else None) for name, count in supports.items()}


def metrics_table(metrics: Mapping, schema: ClassSchema | None = None, title: str | None = None) -> Table:
    """Per-class IoU, F1, precision, recall (in %) and support share, then mean and summary rows.

    With ``schema`` each class name gets a swatch in its display colour.
    """
    colors = {} if schema is None else {c.name: color_hex(c.color) for c in schema.classes}
    table = Table(title=title, title_justify="left", show_lines=False)
    table.add_column("class")
    for header in ("IoU %", "F1 %", "precision %", "recall %", "support %"):
        table.add_column(header, justify="right")
    shares = support_shares(metrics)
    for name in metrics["class_names"]:
        scores = metrics["per_class"][name]
        label = Text()
        if name in colors:
            label.append("■ ", style=colors[name])
        label.append(name)
        table.add_row(
            label,
            format_score(scores["iou"]),
            format_score(scores["f1"]),
            format_score(scores["precision"]),
            format_score(scores["recall"]),
            format_score(shares[name]),
            style="dim" if scores["support"] == 0 else None,
        )
    table.add_section()
    table.add_row(
        Text("mean (mIoU, mean F1)", style="bold"),
        Text(format_score(metrics["miou"]), style="bold"),
        Text(format_score(metrics["mean_f1"]), style="bold"),
        "",
        "",
        "",
    )
    table.add_row("pixel accuracy", format_score(metrics["pixel_accuracy"]), "", "", "", "")
    table.add_row("frequency-weighted IoU", format_score(metrics["fw_iou"]), "", "", "", "")
    return table
