"""An HTML labelling sheet: a small chip of the imagery around each sample point, for people who label
without a GIS. The file is self-contained (chips as embedded PNGs) and lists each point's id, so the
labels written on it go back into the GeoPackage's ``reference`` field."""

from __future__ import annotations

import base64
import io
from html import escape
from pathlib import Path

import numpy as np
from PIL import Image
from pyproj import CRS, Transformer
from rasterio.windows import Window

from landseg.assess.points import SamplePoints
from landseg.assess.rasters import ClassRaster
from landseg.io.raster import open_raster
from landseg.io.write import atomic_output
from landseg.report.display import display_rgb

CHIP = 48
"""Chip side in image pixels."""
ZOOM = 4
RGB_NAMES = (("red", "b4", "b04"), ("green", "b3", "b03"), ("blue", "b2", "b02"))


def _rgb_bands(descriptions: tuple, count: int) -> list[int] | None:
    names = [(d or "").strip().lower() for d in descriptions]
    found = []
    for aliases in RGB_NAMES:
        match = next((i for i, name in enumerate(names) if name in aliases), None)
        if match is None:
            return None if count >= 3 else [0, 0, 0]
        found.append(match)
    return found


def _chip_png(rgb: np.ndarray) -> str:
    image = Image.fromarray(rgb).resize((rgb.shape[1] * ZOOM, rgb.shape[0] * ZOOM), Image.Resampling.NEAREST)
    pixels = np.asarray(image).copy()
    centre, half = pixels.shape[0] // 2, ZOOM
    box = (slice(centre - 2 * half, centre + 2 * half), slice(centre - 2 * half, centre + 2 * half))
    frame = np.zeros(pixels.shape[:2], dtype=bool)
    frame[box] = True
    frame[centre - 2 * half + 2 : centre + 2 * half - 2, centre - 2 * half + 2 : centre + 2 * half - 2] = False
    pixels[frame] = (255, 0, 255)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def write_labelling_sheet(path: Path, image: str | Path, points: SamplePoints, maps: ClassRaster) -> Path:
    """``path`` (HTML): one row per point, its chip of ``image`` centred on it (magenta box), a blank to fill.

    The map class is left out on purpose: reference labels must not lean on what the map says."""
    rows = []
    with open_raster(image) as source:
        x, y = points.x, points.y
        if source.crs is not None and maps.crs is not None and source.crs != maps.crs:
            to_image = Transformer.from_crs(
                CRS.from_wkt(maps.crs.to_wkt()), CRS.from_wkt(source.crs.to_wkt()), always_xy=True
            )
            x, y = to_image.transform(x, y)
        cols, image_rows = ~source.transform * (np.asarray(x), np.asarray(y))
        bands = _rgb_bands(source.descriptions, source.count)
        for i in range(len(points)):
            window = Window(int(np.floor(cols[i])) - CHIP // 2, int(np.floor(image_rows[i])) - CHIP // 2, CHIP, CHIP)
            data = source.read(window=window, boundless=True, fill_value=0)
            chip = _chip_png(display_rgb(data, bands))
            rows.append(
                f"<tr><td>{i + 1}</td>"
                f"<td>{points.x[i]:.2f}<br>{points.y[i]:.2f}</td>"
                f'<td><img src="data:image/png;base64,{chip}" alt="point {i + 1}"></td><td class="blank"></td></tr>'
            )
    document = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Labelling sheet</title><style>'
        "body{font-family:system-ui,sans-serif;margin:2rem}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.3rem .6rem;vertical-align:middle}td.blank{min-width:12rem}"
        "</style></head><body><h1>Labelling sheet</h1>"
        f"<p>{len(points)} points of {escape(maps.path.name)} on {escape(Path(image).name)}; the point is the pixel "
        "in the magenta box. Write the reference class seen there; label what is on the ground, not what the map says, "
        "then enter the labels in the <code>reference</code> field of the points file by id.</p>"
        "<table><thead><tr><th>id</th><th>x / y</th><th>imagery</th><th>reference class</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></body></html>"
    )
    with atomic_output(path) as temporary:
        temporary.write_text(document, encoding="utf-8")
    return path
