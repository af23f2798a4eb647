"""Figures, overlays, terminal tables and a self-contained HTML report for segmentation results."""

from landseg.report.html import write_report
from landseg.report.overlay import blend_overlay, legend_patches, render_comparison, save_colorized_png
from landseg.report.plots import (
    plot_class_distribution,
    plot_confusion_matrix,
    plot_per_class,
    plot_reliability,
    plot_training_curves,
)
from landseg.report.tables import metrics_table

__all__ = [
    "blend_overlay",
    "legend_patches",
    "metrics_table",
    "plot_class_distribution",
    "plot_confusion_matrix",
    "plot_per_class",
    "plot_reliability",
    "plot_training_curves",
    "render_comparison",
    "save_colorized_png",
    "write_report",
]
