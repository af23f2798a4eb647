"""The suggestions as files: a ranked CSV, a GeoPackage of window boxes for QGIS and an HTML gallery."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from rasterio.windows import Window as RasterWindow

from landseg.classes import ClassSchema
from landseg.io.figures import save_figure
from landseg.io.georef import open_without_grid_warning
from landseg.io.vector import Feature, first_crs, write_polygon_layer
from landseg.maps.cog import NODATA_BYTE, PROBABILITY_STEPS
from landseg.report import write_report
from landseg.report.display import display_rgb
from landseg.report.overlay import blend_overlay, legend_patches
from landseg.suggest.windows import Candidate

LAYER = "suggestions"


def suggestion_rows(chosen: Sequence[Candidate], schema: ClassSchema, grids: dict) -> list[dict]:
    """One row per suggestion, best first: where it is (pixels and map coordinates), its score and the
    classes the model mapped there. ``grids`` maps a scene to its ``(transform, crs)``."""
    rows = []
    for rank, c in enumerate(chosen, start=1):
        transform, crs = grids[c.scene]
        left, top = transform * (c.col_off, c.row_off)
        right, bottom = transform * (c.col_off + c.width, c.row_off + c.height)
        mapped = max(sum(c.class_pixels), 1)
        dominant = int(np.argmax(c.class_pixels))
        rows.append(
            {
                "rank": rank,
                "scene": str(c.scene),
                "col_off": c.col_off,
                "row_off": c.row_off,
                "width": c.width,
                "height": c.height,
                "uncertainty": round(c.score, 6),
                "mapped_fraction": round(c.valid_fraction, 6),
                "dominant_class": schema.names[dominant],
                **{f"share_{name}": round(n / mapped, 6) for name, n in zip(schema.names, c.class_pixels, strict=True)},
                "left": min(left, right),
                "bottom": min(top, bottom),
                "right": max(left, right),
                "top": max(top, bottom),
                "crs": "" if crs is None else crs.to_string(),
            }
        )
    return rows


def write_boxes(path: Path, rows: Sequence[dict], grids: dict) -> Path | None:
    """The windows as polygons in the first georeferenced scene's CRS (others reprojected); None when no
    scene has a CRS (plain photos: the CSV's pixel offsets say where)."""
    import shapely

    target = first_crs(crs for _, crs in grids.values())
    if target is None:
        return None
    features = [
        Feature(shapely.box(row["left"], row["bottom"], row["right"], row["top"]), grids[Path(row["scene"])][1], row)
        for row in rows
    ]
    fields = [f for f in rows[0] if f not in ("left", "bottom", "right", "top", "crs")] if rows else []
    return write_polygon_layer(path, features, fields, LAYER, target)


def window_figure(
    candidate: Candidate, rank: int, maps: dict[str, Path], card_bands: Sequence[int], schema: ClassSchema, path: Path
) -> Path:
    """Image | prediction | uncertainty of one suggested window."""
    window = RasterWindow(candidate.col_off, candidate.row_off, candidate.width, candidate.height)
    with open_without_grid_warning(candidate.scene) as source:
        bands = list(card_bands[:3]) if len(card_bands) >= 3 else [card_bands[0]] * 3
        image = display_rgb(source.read(bands, window=window), [0, 1, 2])
    with open_without_grid_warning(maps["classes"]) as written:
        classes = written.read(1, window=window)
    with open_without_grid_warning(maps["uncertainty"]) as written:
        stored = written.read(1, window=window)
    unsure = np.ma.masked_equal(stored, NODATA_BYTE).astype(np.float32) / PROBABILITY_STEPS
    figure = Figure(figsize=(11.4, 4.6), layout="constrained")
    axes = figure.subplots(1, 3)
    axes[0].imshow(image)
    axes[1].imshow(blend_overlay(image, classes, schema, alpha=0.85), interpolation="nearest")
    shown = axes[2].imshow(unsure, cmap="magma", vmin=0, vmax=1, interpolation="nearest")
    figure.colorbar(shown, ax=axes[2], shrink=0.8, label="uncertainty")
    for ax, title in zip(axes, ("image", "prediction", "uncertainty"), strict=True):
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    figure.legend(handles=legend_patches(schema), loc="outside lower center", ncols=min(schema.num_classes, 7))
    figure.suptitle(
        f"#{rank}: {candidate.scene.name}, rows {candidate.row_off}-{candidate.row_off + candidate.height}, "
        f"columns {candidate.col_off}-{candidate.col_off + candidate.width}, mean uncertainty {candidate.score:.3f}",
        fontsize=10,
    )
    return save_figure(figure, path)


def write_gallery(out_dir: Path, figures: Sequence[tuple[str, Path]], notes: dict[str, str]) -> Path:
    """``out_dir/report.html``: every suggested window's figure, best first."""
    return write_report(out_dir, "Windows to label next", None, figures, notes)
