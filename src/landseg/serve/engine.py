"""The one call the web app makes to turn an uploaded image into land-cover outputs.

``run_prediction`` is the seam between the server and the prediction engine: the job queue calls
nothing else. It runs the same streaming engine as ``landseg predict`` (``predict.engine.predict_scene``:
blending, minimum mapping unit, COG, preview, areas), so an upload and the command give the same map.
What the web app adds is its own: a paletted PNG class map for the browser's overlay and polygons in
WGS 84, the CRS web maps and RFC 7946 GeoJSON expect.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from landseg.checkpoint import LoadedModel
from landseg.errors import ConfigError
from landseg.io.georef import Georeference, open_without_grid_warning
from landseg.io.write import write_index_png
from landseg.maps.polygons import write_polygons
from landseg.predict.choices import CloudMask, Engine, TTAMode
from landseg.predict.engine import gdal_environment, predict_scene
from landseg.predict.ensemble import Ensemble, Member, TorchNetwork, load_ensemble
from landseg.predict.options import DEFAULT_OPTIONS, PredictOptions

ProgressCallback = Callable[[float, str], None]
"""Called with the fraction done (0..1) and a short stage name; it may raise to cancel the job."""

OUTPUT_STEM = "result"
# Share of the progress bar each phase fills; the network dominates the run time.
READ_SHARE, PREDICT_SHARE = 0.05, 0.80


MAX_OVERLAP = 0.9
"""An upload's tile count grows as 1 / (1 - overlap)²: at 0.9 already 100 times that without overlap."""
MAX_MIN_AREA = 1_000_000


class JobOptions(BaseModel):
    """What a user may choose per upload: ``landseg predict``'s ``--tta``, ``--overlap``, ``--min-area`` and
    ``--cloud-mask``.

    Their defaults and checks are ``PredictOptions``' (an upload is refused exactly where the command
    would refuse the flag, the field named); the server only adds upper bounds that keep the work of one
    upload bounded. The model card and ``PredictOptions``' defaults fix everything else."""

    model_config = ConfigDict(extra="forbid")

    tta: Literal["none", TTAMode] = Field(
        "none", description="Test-time augmentation: none, the 4 flips, or all 8 flips and rotations (8x slower)."
    )
    overlap: float = Field(
        DEFAULT_OPTIONS.overlap,
        le=MAX_OVERLAP,
        description=f"Overlap of neighbouring sliding-window tiles (0-{MAX_OVERLAP}).",
    )
    min_area: int = Field(
        DEFAULT_OPTIONS.min_area,
        le=MAX_MIN_AREA,
        description="Patches of one class smaller than this many pixels are merged into their surroundings "
        "(0 keeps every pixel's own prediction).",
    )

    cloud_mask: CloudMask = Field(
        DEFAULT_OPTIONS.cloud_mask,
        description="Clouds and shadows become no-data: auto (an L2A product's SCL band, else the cloud model "
        "for Sentinel-2), model, scl or none.",
    )

    @field_validator("overlap")
    @classmethod
    def _overlap_as_predict_checks_it(cls, overlap: float) -> float:
        return checked(replace(DEFAULT_OPTIONS, overlap=overlap)).overlap

    @field_validator("min_area")
    @classmethod
    def _min_area_as_predict_checks_it(cls, min_area: int) -> int:
        return checked(replace(DEFAULT_OPTIONS, min_area=min_area)).min_area

    def predict_options(self) -> PredictOptions:
        """The streaming engine's options for this upload: COG, preview and areas, no extra rasters."""
        return replace(DEFAULT_OPTIONS, overlap=self.overlap, min_area=self.min_area, cloud_mask=self.cloud_mask)

    def ensemble_tta(self) -> TTAMode | None:
        return None if self.tta == "none" else self.tta


def checked(options: PredictOptions) -> PredictOptions:
    """``options`` once ``PredictOptions.check`` passes; its refusal as the ``ValueError`` pydantic reports."""
    try:
        options.check()
    except ConfigError as exc:
        raise ValueError(exc.problem) from None
    return options


PredictionRunner = Callable[[LoadedModel | Member, Path, Path, JobOptions, ProgressCallback], dict[str, Path]]
"""What the job queue calls to predict an upload (``run_prediction``; tests hand ``create_app`` others)."""


def load_served_member(reference: str, engine: Engine = "auto") -> Member:
    """The model the server predicts with, chosen as ``landseg predict`` chooses: ``auto`` runs ONNX
    Runtime on the CPU (exported once, cached), so an upload and the command run the same network."""
    return load_ensemble([reference], engine=engine).members[0]


def served_member(model: LoadedModel | Member) -> Member:
    """A member of the core's ensembles; an in-memory ``LoadedModel`` (tests, notebooks) runs in torch."""
    if isinstance(model, Member):
        return model
    return Member(model.card, TorchNetwork(model.network), model.path)


def ensemble_for(model: LoadedModel | Member, tta: TTAMode | None) -> Ensemble:
    """The server's already-loaded model as a one-member ensemble of the streaming engine."""
    return Ensemble([served_member(model)], tta=tta)


def run_prediction(
    model: LoadedModel | Member,
    input_path: str | Path,
    out_dir: str | Path,
    options: JobOptions,
    on_progress: ProgressCallback | None = None,
) -> dict[str, Path]:
    """Predict ``input_path`` and write every downloadable output into ``out_dir``.

    Returns paths by kind: ``classes_png``, ``color_png``, ``areas_csv``, ``polygons_geojson`` and,
    for georeferenced inputs, ``classes_tif`` (a COG on the input's grid).
    """
    report = on_progress or (lambda fraction, stage: None)
    out_dir = Path(out_dir)
    report(0.0, "reading image")
    total_tiles, done_tiles = 1, 0

    def on_start(tiles: int) -> None:
        nonlocal total_tiles
        total_tiles = max(tiles, 1)
        report(READ_SHARE, "predicting")

    def on_tiles(tiles: int) -> None:
        nonlocal done_tiles
        done_tiles += tiles
        if done_tiles < total_tiles:
            report(READ_SHARE + PREDICT_SHARE * done_tiles / total_tiles, "predicting")
        else:  # the engine now blends the last block and writes the COG, preview and areas
            report(READ_SHARE + PREDICT_SHARE, "writing class map")

    engine_options = options.predict_options()
    scene = predict_scene(
        input_path,
        ensemble_for(model, options.ensemble_tta()),
        out_dir,
        engine_options,
        stem=OUTPUT_STEM,
        on_start=on_start,
        on_tiles=on_tiles,
    )
    classes_tif = scene.paths["classes"]
    schema = model.card.class_schema()
    outputs: dict[str, Path] = {"color_png": scene.paths["color"], "areas_csv": scene.paths["areas"]}
    report(0.90, "tracing polygons")
    with gdal_environment(engine_options):
        # GeoJSON is written as RFC 7946: WGS 84 longitude and latitude, as web maps expect.
        outputs["polygons_geojson"] = write_polygons(classes_tif, out_dir / f"{OUTPUT_STEM}_polygons.geojson", schema)
        with open_without_grid_warning(classes_tif) as written:
            # A grid, GCPs or RPCs: the COG places the map on Earth, which the PNG cannot.
            georeferenced = Georeference.of(written).georeferenced
            # Uploads are bounded in size (settings.max_pixels), so the class map fits in memory here.
            index: np.ndarray = written.read(1)
    outputs["classes_png"] = write_index_png(out_dir / f"{OUTPUT_STEM}_classes.png", index, schema)
    if georeferenced:
        outputs["classes_tif"] = classes_tif
    else:  # a GeoTIFF without a grid adds nothing to the PNG for a plain photo
        classes_tif.unlink()
    report(1.0, "done")
    return outputs
