"""What ``landseg change`` writes: the matrix as CSV and JSON, the change COG, the change polygons.

Every file goes through ``atomic_output`` (the COG through ``maps.cog``'s scratch-then-COG path), so an
interrupted run leaves no half-written output under a final name.

The change COG holds one byte per pixel on BEFORE's grid (cropped to the overlap): ``from * K + to``
with K the number of classes, 255 for no-data. Its colour table paints each change in the colour of
the class it became and unchanged pixels light grey; the legend (code to "from → to") is in the tag
``landseg_change_legend`` and in ``change.json``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from landseg.classes import IGNORE_INDEX, ClassSchema, color_hex
from landseg.io.georef import Georeference
from landseg.io.write import atomic_output, write_rows_csv
from landseg.maps.cog import open_scratch
from landseg.maps.polygons import write_polygons

UNCHANGED_COLOR = (200, 200, 200, 255)
LEGEND_TAG = "landseg_change_legend"
ARROW = " → "


def change_legend(schema: ClassSchema) -> dict[int, str]:
    k = schema.num_classes
    return {i * k + j: f"{a}{ARROW}{b}" for i, a in enumerate(schema.names) for j, b in enumerate(schema.names)}


def change_colormap(schema: ClassSchema) -> dict[int, tuple[int, int, int, int]]:
    k = schema.num_classes
    table = {
        i * k + j: UNCHANGED_COLOR if i == j else (*schema.classes[j].color, 255) for i in range(k) for j in range(k)
    }
    table[IGNORE_INDEX] = (0, 0, 0, 0)
    return table


def open_change_scratch(path: Path, overlap, schema: ClassSchema, tags: dict):
    plain = overlap.crs is None and overlap.transform.is_identity
    georef = Georeference(overlap.crs, None if plain else overlap.transform)
    return open_scratch(
        path,
        overlap.height,
        overlap.width,
        1,
        georef,
        descriptions=["change: from * K + to"],
        colormap=change_colormap(schema),
        tags={**tags, LEGEND_TAG: json.dumps(change_legend(schema), ensure_ascii=False)},
    )


def write_change_polygons(change_raster: Path, destination: Path, schema: ClassSchema, min_pixels: int) -> Path:
    """Polygons of the changed pixels (unchanged and no-data left out) with from- and to-class."""
    k = schema.num_classes
    recode = np.arange(256, dtype=np.uint8)
    recode[[i * k + i for i in range(k)]] = IGNORE_INDEX
    legend = change_legend(schema)

    def fields(code: int) -> dict:
        return {
            "code": code,
            "from_class": schema.names[code // k],
            "to_class": schema.names[code % k],
            "change": legend[code],
            "color": color_hex(schema.classes[code % k].color),
        }

    return write_polygons(
        change_raster, destination, schema, values=lambda data: recode[data], fields=fields, min_pixels=min_pixels
    )


def _square(path: Path, names: list[str], matrix: np.ndarray, unit: str, fmt) -> Path:
    with atomic_output(path) as temporary, open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([f"before \\ after ({unit})", *names, "total before"])
        for name, row in zip(names, matrix, strict=False):
            writer.writerow([name, *(fmt(v) for v in row), fmt(row.sum())])
        writer.writerow(["total after", *(fmt(v) for v in matrix.sum(axis=0)), fmt(matrix.sum())])
    return path


def write_tables(out_dir: Path, summary: dict, facts: dict) -> dict[str, Path]:
    """``transitions_pixels.csv``, ``transitions_ha.csv`` (when the grid has areas), ``class_changes.csv``
    and ``change.json`` (everything, with ``facts`` about the inputs and the grid)."""
    names = summary["classes"]
    paths = {
        "pixels_csv": _square(out_dir / "transitions_pixels.csv", names, np.array(summary["pixels"]), "pixels", str)
    }
    if summary["hectares"] is not None:
        paths["hectares_csv"] = _square(
            out_dir / "transitions_ha.csv", names, np.array(summary["hectares"]), "ha", lambda v: f"{v:.4f}"
        )
    paths["classes_csv"] = out_dir / "class_changes.csv"
    rows = [{k: f"{v:.4f}" if isinstance(v, float) else v for k, v in row.items()} for row in summary["per_class"]]
    write_rows_csv(paths["classes_csv"], rows, list(summary["per_class"][0]))
    paths["json"] = out_dir / "change.json"
    with atomic_output(paths["json"]) as temporary:
        temporary.write_text(json.dumps({**facts, **summary}, indent=2, ensure_ascii=False), encoding="utf-8")
    return paths
