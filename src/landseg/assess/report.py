"""What ``landseg assess`` writes: accuracy.json, error_matrix.csv, areas.csv, two pictures and
report.html, each through ``atomic_output`` so an interrupted run leaves nothing half-written."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from landseg.assess.estimators import AccuracyEstimates
from landseg.assess.rasters import ClassRaster
from landseg.io.figures import save_figure
from landseg.io.write import atomic_output
from landseg.report.html import write_report
from landseg.report.plots import class_colors

_DEFAULT_COLOR = (0.35, 0.5, 0.7)


def write_outputs(
    out_dir: Path, maps: ClassRaster, estimates: AccuracyEstimates, summary: dict, pictures: bool
) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    names = summary["classes"]
    paths = {
        "accuracy": _write_json(out_dir / "accuracy.json", summary),
        "error_matrix": _write_matrix(out_dir / "error_matrix.csv", names, estimates.error_matrix, "{:.6f}"),
        "areas": _write_areas(out_dir / "areas.csv", summary),
    }
    figures: list[tuple[str, Path]] = []
    if pictures:
        colors = _colors(maps, names)
        figures = [
            (
                f"Class areas: counted on the map against estimated from the sample, with 95 % intervals ({summary['area_unit']})",
                plot_areas(summary, colors, out_dir / "areas.png"),
            ),
            (
                "User's and producer's accuracy with 95 % intervals",
                plot_accuracies(summary, out_dir / "accuracies.png"),
            ),
        ]
        for _, figure in figures:
            paths[figure.name] = figure
    sections = {"Overview": _overview(summary), "Classes": _class_table(summary), "Error matrix": _matrix_text(summary)}
    paths["report"] = write_report(out_dir, "Map accuracy and class areas", images=figures, sections=sections)
    return paths


def write_sample_only(
    out_dir: Path, maps: ClassRaster, map_values: np.ndarray, references: np.ndarray, facts: dict, why: str
) -> tuple[dict, dict[str, Path]]:
    """No design: the sample's own confusion matrix in counts, and why nothing more."""
    values = sorted(set(map_values.tolist()) | set(references.tolist()))
    position = {v: i for i, v in enumerate(values)}
    counts = np.zeros((len(values), len(values)), dtype=np.int64)
    np.add.at(counts, ([position[v] for v in map_values.tolist()], [position[v] for v in references.tolist()]), 1)
    names = [maps.name(v) for v in values]
    summary = {
        **facts,
        "method": None,
        "why_no_estimates": why,
        "classes": names,
        "sample_confusion_matrix": {"rows": "map class", "columns": "reference class", "counts": counts.tolist()},
        "sample_agreement": float(np.trace(counts) / counts.sum()),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "accuracy": _write_json(out_dir / "accuracy.json", summary),
        "error_matrix": _write_matrix(out_dir / "sample_confusion_matrix.csv", names, counts, "{:d}"),
    }
    text = (
        _points_text(summary)
        + f"\n\n{why}\n\nshare of points where map and reference agree: {summary['sample_agreement']:.3f} (of the sample, not of the map)"
    )
    paths["report"] = write_report(
        out_dir,
        "Sample confusion matrix (no design)",
        sections={"Why no estimates": text, "Counts": _counts_text(names, counts)},
    )
    return summary, paths


def _write_json(path: Path, data: dict) -> Path:
    with atomic_output(path) as temporary:
        temporary.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def _write_matrix(path: Path, names: list[str], matrix: np.ndarray, number: str) -> Path:
    with atomic_output(path) as temporary, temporary.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["map \\ reference", *names, "total"])
        for name, row in zip(names, matrix, strict=True):
            writer.writerow([name, *(number.format(v) for v in row.tolist()), number.format(row.sum().item())])
        writer.writerow(
            ["total", *(number.format(v) for v in matrix.sum(axis=0).tolist()), number.format(matrix.sum().item())]
        )
    return path


def _write_areas(path: Path, summary: dict) -> Path:
    unit = summary["area_unit"]
    header = [
        "class",
        "mapped_pixels",
        f"mapped_{unit}",
        f"estimated_{unit}",
        f"se_{unit}",
        f"ci95_low_{unit}",
        f"ci95_high_{unit}",
        "users_accuracy",
        "users_se",
        "producers_accuracy",
        "producers_se",
        "sample_points_mapped",
        "sample_points_reference",
    ]
    with atomic_output(path) as temporary, temporary.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row in summary["per_class"]:
            area = row[f"estimated_area_{unit}"]
            writer.writerow(
                [
                    row["class"],
                    row["mapped_pixels"],
                    row[f"mapped_area_{unit}"],
                    area["estimate"],
                    area["se"],
                    *area["ci95"],
                    row["users_accuracy"]["estimate"],
                    row["users_accuracy"]["se"],
                    row["producers_accuracy"]["estimate"],
                    row["producers_accuracy"]["se"],
                    row["sample_points_mapped"],
                    row["sample_points_reference"],
                ]
            )
    return path


def _colors(maps: ClassRaster, names: list[str]) -> list:
    if maps.schema is not None:
        return class_colors(maps.schema, names)
    return [_DEFAULT_COLOR] * len(names)


def _value(entry: dict) -> float:
    return np.nan if entry["estimate"] is None else entry["estimate"]


def _half(entry: dict) -> float:
    return 0.0 if entry["ci95"][0] is None else (entry["ci95"][1] - entry["ci95"][0]) / 2


def plot_areas(summary: dict, colors: list, path: Path) -> Path:
    unit = summary["area_unit"]
    rows = summary["per_class"]
    x = np.arange(len(rows))
    mapped = [row[f"mapped_area_{unit}"] for row in rows]
    estimated = [_value(row[f"estimated_area_{unit}"]) for row in rows]
    half = [_half(row[f"estimated_area_{unit}"]) for row in rows]
    fig = Figure(figsize=(max(6.0, 1.2 * len(rows) + 2), 4.4), layout="constrained")
    ax = fig.add_subplot()
    ax.bar(x - 0.2, mapped, 0.4, color=colors, edgecolor="black", linewidth=0.6, hatch="//", label="counted on the map")
    ax.bar(x + 0.2, estimated, 0.4, color=colors, edgecolor="black", linewidth=0.6, label="estimated from the sample")
    ax.errorbar(x + 0.2, estimated, yerr=half, fmt="none", ecolor="black", capsize=4, label="95 % interval")
    ax.set_xticks(
        x,
        labels=[row["class"] for row in rows],
        rotation=30 if len(rows) > 5 else 0,
        ha="right" if len(rows) > 5 else "center",
    )
    ax.set_ylabel(f"area ({unit})")
    ax.set_ylim(bottom=0)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(frameon=False)
    ax.set_title("Mapped against estimated class areas", fontsize=10)
    return save_figure(fig, path)


def plot_accuracies(summary: dict, path: Path) -> Path:
    rows = summary["per_class"]
    x = np.arange(len(rows))
    fig = Figure(figsize=(max(6.0, 1.2 * len(rows) + 2), 4.0), layout="constrained")
    ax = fig.add_subplot()
    for offset, key, label, color in (
        (-0.15, "users_accuracy", "user's (1 - commission)", "#2E86C1"),
        (0.15, "producers_accuracy", "producer's (1 - omission)", "#D35400"),
    ):
        values = [_value(row[key]) for row in rows]
        ax.errorbar(
            x + offset, values, yerr=[_half(row[key]) for row in rows], fmt="o", color=color, capsize=4, label=label
        )
    overall = summary["overall_accuracy"]
    ax.axhline(
        overall["estimate"], color="grey", linestyle="--", linewidth=1, label=f"overall {overall['estimate']:.3f}"
    )
    ax.set_xticks(
        x,
        labels=[row["class"] for row in rows],
        rotation=30 if len(rows) > 5 else 0,
        ha="right" if len(rows) > 5 else "center",
    )
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(frameon=False, fontsize=8, loc="lower left")
    ax.set_title("Accuracy per class (estimate and 95 % interval)", fontsize=10)
    return save_figure(fig, path)


def _points_text(summary: dict) -> str:
    lines = [
        f"map: {summary['map']}",
        f"points: {summary['points']} (field {summary['reference_field']!r}); {summary['points_read']} read, "
        f"{summary['points_used']} used, {summary['points_outside_map']} outside the map, {summary['points_on_nodata']} on no-data",
    ]
    if summary["points_reprojected"]:
        lines.append(f"points reprojected from {summary['points_crs']} onto the map's CRS")
    return "\n".join(lines)


def _interval(entry: dict, digits: int = 3) -> str:
    if entry["estimate"] is None:
        return "n/a"
    return f"{entry['estimate']:.{digits}f} ± {_half(entry):.{digits}f}"


def _overview(summary: dict) -> str:
    unit = summary["area_unit"]
    lines = [
        _points_text(summary),
        f"design: {summary['design']} ({summary['method']}, strata from {summary['strata_source']})",
        f"estimator: {summary['estimator']}",
        f"total area: {summary[f'total_area_{unit}']:,.2f} {unit} (areas by {summary['area_method'] or 'pixel count'})",
        f"overall accuracy: {_interval(summary['overall_accuracy'])} (95 % interval)",
    ]
    return "\n".join(lines)


def _class_table(summary: dict) -> str:
    unit = summary["area_unit"]
    width = max(12, *(len(r["class"]) + 2 for r in summary["per_class"]))
    headers = ("class", "user's", "producer's", f"mapped {unit}", f"estimated {unit}")
    lines = ["{:<{}}{:>16}{:>16}{:>16}{:>26}".format(headers[0], width, *headers[1:])]
    for row in summary["per_class"]:
        area = row[f"estimated_area_{unit}"]
        estimated = "n/a" if area["estimate"] is None else f"{area['estimate']:,.1f} ± {_half(area):,.1f}"
        lines.append(
            f"{row['class']:<{width}}{_interval(row['users_accuracy']):>16}{_interval(row['producers_accuracy']):>16}"
            f"{row[f'mapped_area_{unit}']:>16,.1f}{estimated:>26}"
        )
    return "\n".join(lines)


def _matrix_text(summary: dict) -> str:
    names = summary["classes"]
    matrix = np.array(summary["error_matrix"]["proportions"])
    counts = np.array(summary["error_matrix"]["sample_counts"])
    width = max(10, *(len(n) + 2 for n in names))
    lines = [
        "estimated area proportions (rows: map, columns: reference)",
        f"{'':<{width}}" + "".join(f"{n:>{width}}" for n in names),
    ]
    lines += [f"{n:<{width}}" + "".join(f"{v:>{width}.4f}" for v in row) for n, row in zip(names, matrix, strict=True)]
    lines += ["", "sample points", _counts_text(names, counts)]
    return "\n".join(lines)


def _counts_text(names: list[str], counts: np.ndarray) -> str:
    width = max(10, *(len(n) + 2 for n in names))
    corner = "map \\ ref"
    lines = [f"{corner:<{width}}" + "".join(f"{n:>{width}}" for n in names)]
    lines += [
        f"{n:<{width}}" + "".join(f"{v:>{width}d}" for v in row) for n, row in zip(names, counts.tolist(), strict=True)
    ]
    return "\n".join(lines)
