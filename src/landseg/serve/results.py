"""One job from checked upload to the files and table the page shows.

``predict_job`` is what the job queue runs: the prediction runner (``engine.run_prediction``) writes
the downloads, then the overlay is drawn on the preview's grid and the area table is read back from the
engine's own CSV, so the table on the page and the CSV a user downloads can never disagree.
"""

from __future__ import annotations

import csv
from pathlib import Path

from landseg.checkpoint import LoadedModel
from landseg.classes import ClassSchema, color_hex
from landseg.predict.networks import Member
from landseg.serve.engine import PredictionRunner, ProgressCallback
from landseg.serve.jobs import Job
from landseg.serve.views import write_overlay

# kind: (button label, download name suffix, media type)
DOWNLOADS: dict[str, tuple[str, str, str]] = {
    "classes_tif": ("GeoTIFF (COG)", "_classes.tif", "image/tiff"),
    "classes_png": ("Class map PNG", "_classes.png", "image/png"),
    "color_png": ("Map with legend PNG", "_map.png", "image/png"),
    "polygons_geojson": ("Polygons GeoJSON", "_polygons.geojson", "application/geo+json"),
    "areas_csv": ("Areas CSV", "_areas.csv", "text/csv"),
}
VIEWS: dict[str, str] = {"preview": "image/jpeg", "overlay": "image/png"}


def predict_job(
    job: Job,
    report: ProgressCallback,
    model: LoadedModel | Member,
    runner: PredictionRunner,
    preview_max_side: int,
) -> dict:
    """Predict the job's input with ``runner``; returns the job's files by kind and its area table."""
    schema = model.card.class_schema()
    outputs = runner(model, job.files["input"], job.directory / "outputs", job.options, report)
    overlay = write_overlay(outputs["classes_png"], schema, job.directory / "overlay.png", preview_max_side)
    job.files.update(outputs, overlay=overlay)
    return {"areas": read_areas(outputs["areas_csv"], schema)}


def read_areas(path: Path, schema: ClassSchema) -> list[dict]:
    """The engine's area CSV as table rows, each with its class's index and display colour."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    by_name = {c.name: (i, color_hex(c.color)) for i, c in enumerate(schema.classes)}
    table = []
    for row in rows:
        index, color = by_name[row["class"]]
        table.append(
            {
                "index": index,
                "name": row["class"],
                "color": color,
                "pixels": int(row["pixels"]),
                "share": float(row["share"]),
                "area_m2": float(row["area_m2"]) if row["area_m2"] else None,
                "area_ha": float(row["area_ha"]) if row["area_ha"] else None,
            }
        )
    return table


def download_name(job: Job, kind: str) -> str:
    return f"{job.filename}{DOWNLOADS[kind][1]}"
