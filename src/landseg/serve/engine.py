"""The one call the web app makes to turn an uploaded image into land-cover outputs.

``run_prediction`` is the seam between the server and the prediction engine: the job queue calls
nothing else, so moving to the streaming engine (COG, min-area and polygons of its own) changes only
this module. Until then it drives the in-memory ``Predictor`` and ``write_prediction`` exactly as
``landseg predict`` does, and adds what that engine does not write yet: a Cloud-Optimized GeoTIFF,
a paletted PNG class map, a minimum-area filter and GeoJSON polygons.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import rasterio
import rasterio.features
import rasterio.shutil
import rasterio.warp
import torch
from pydantic import BaseModel, ConfigDict, Field

from landseg.checkpoint import LoadedModel
from landseg.classes import IGNORE_INDEX, ClassSchema, color_hex
from landseg.io.raster import RasterImage, read_image
from landseg.io.write import atomic_output, write_index_png
from landseg.predict import Prediction, Predictor, write_prediction
from landseg.predict.tiling import tile_windows
from landseg.predict.tta import tta_transforms

ProgressCallback = Callable[[float, str], None]
"""Called with the fraction done (0..1) and a short stage name; it may raise to cancel the job."""

OUTPUT_STEM = "result"
GEOJSON_CRS = "EPSG:4326"
# Share of the progress bar each phase fills; the network dominates the run time.
READ_SHARE, PREDICT_SHARE = 0.05, 0.80


class PredictionOptions(BaseModel):
    """What a user may choose per upload; the model card fixes everything else."""

    model_config = ConfigDict(extra="forbid")

    tta: Literal["none", "flips", "d4"] = Field(
        "none", description="Test-time augmentation: none, the 4 flips, or all 8 flips and rotations (8x slower)."
    )
    overlap: float = Field(0.5, ge=0.0, le=0.9, description="Overlap of neighbouring sliding-window tiles (0-0.9).")
    min_area: int = Field(
        0,
        ge=0,
        le=1_000_000,
        description="Patches of one class smaller than this many pixels are merged into their largest "
        "neighbour (0 keeps every pixel's own prediction).",
    )


class ProgressNetwork(torch.nn.Module):
    """The trained network, reporting how many tiles have gone through it.

    The in-memory engine has no progress hook of its own; wrapping the network gives the job queue
    tile-level progress without touching ``predict/``.
    """

    def __init__(self, network: torch.nn.Module, on_tiles: Callable[[int], None]):
        super().__init__()
        self.network = network
        self.on_tiles = on_tiles

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        logits = self.network(batch)
        self.on_tiles(batch.shape[0])
        return logits


def forward_passes(predictor: Predictor, height: int, width: int) -> int:
    """Tiles the network will see for an image of this size, counting every TTA copy."""
    scale = predictor.card.input_scale
    scaled = (max(1, round(height * scale)), max(1, round(width * scale)))
    # The engine pads images smaller than a tile up to one tile.
    padded = (max(scaled[0], predictor.tile), max(scaled[1], predictor.tile))
    tiles = len(tile_windows(*padded, predictor.tile, predictor.overlap))
    return tiles * len(tta_transforms(predictor.tta))


def run_prediction(
    model: LoadedModel,
    input_path: str | Path,
    out_dir: str | Path,
    options: PredictionOptions,
    on_progress: ProgressCallback | None = None,
) -> dict[str, Path]:
    """Predict ``input_path`` and write every downloadable output into ``out_dir``.

    Returns paths by kind: ``classes_png``, ``color_png``, ``areas_csv``, ``polygons_geojson`` and,
    for georeferenced inputs, ``classes_tif`` (a COG on the input's grid).
    """
    report = on_progress or (lambda fraction, stage: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report(0.0, "reading image")
    image = read_image(input_path)

    done_tiles = 0
    total_tiles = 1

    def count_tiles(tiles: int) -> None:
        nonlocal done_tiles
        done_tiles += tiles
        report(READ_SHARE + PREDICT_SHARE * min(1.0, done_tiles / total_tiles), "predicting")

    counted = LoadedModel(card=model.card, network=ProgressNetwork(model.network, count_tiles), path=model.path)
    predictor = Predictor(
        counted, overlap=options.overlap, tta=None if options.tta == "none" else options.tta
    )
    total_tiles = forward_passes(predictor, *image.shape)
    report(READ_SHARE, "predicting")
    prediction = predictor.predict_image(image)
    schema = predictor.schema
    if options.min_area > 1:
        report(READ_SHARE + PREDICT_SHARE, "merging small patches")
        prediction = Prediction(merge_small_patches(prediction.index, options.min_area), prediction.confidence)

    report(READ_SHARE + PREDICT_SHARE, "writing class map")
    written = write_prediction(prediction, image, schema, out_dir, OUTPUT_STEM)
    outputs: dict[str, Path] = {"color_png": written["color"], "areas_csv": written["areas"]}
    if image.georeferenced:
        outputs["classes_tif"] = write_cog(written["classes"], out_dir / f"{OUTPUT_STEM}_classes_cog.tif")
        written["classes"].unlink()
        outputs["classes_png"] = write_index_png(out_dir / f"{OUTPUT_STEM}_classes.png", prediction.index, schema)
    else:
        outputs["classes_png"] = written["classes"]
    report(0.95, "tracing polygons")
    outputs["polygons_geojson"] = write_polygons(
        out_dir / f"{OUTPUT_STEM}_polygons.geojson", prediction.index, schema, image
    )
    report(1.0, "done")
    return outputs


def merge_small_patches(index: np.ndarray, min_area: int) -> np.ndarray:
    """Connected patches (4-neighbour) under ``min_area`` pixels take their largest neighbour's class.

    No-data pixels neither move nor absorb anything.
    """
    labelled = index != IGNORE_INDEX
    sieved = rasterio.features.sieve(index, size=min_area, mask=labelled, connectivity=4)
    return np.where(labelled, sieved, IGNORE_INDEX).astype(np.uint8)


def write_cog(geotiff: Path, path: Path) -> Path:
    """A Cloud-Optimized copy of a class-map GeoTIFF; overviews pick classes, never average them."""
    with atomic_output(path) as temporary:
        rasterio.shutil.copy(
            geotiff, temporary, driver="COG", compress="DEFLATE", overview_resampling="NEAREST"
        )
    return path


def write_polygons(path: Path, index: np.ndarray, schema: ClassSchema, image: RasterImage) -> Path:
    """One GeoJSON feature per connected patch of a class (4-neighbour), no-data left out.

    Georeferenced images give WGS 84 longitude/latitude as RFC 7946 requires; plain photos give
    pixel (column, row) coordinates, said so in the collection's ``coordinates_in`` member.
    """
    colors = [color_hex(c.color) for c in schema.classes]
    patches = list(
        rasterio.features.shapes(index, mask=index != IGNORE_INDEX, connectivity=4, transform=image.transform)
    )
    geometries = [geometry for geometry, _ in patches]
    if image.georeferenced and geometries:
        geometries = rasterio.warp.transform_geom(image.crs, GEOJSON_CRS, geometries)
    features = []
    for geometry, (_, value) in zip(geometries, patches):
        class_index = int(value)
        properties = {"class": schema.names[class_index], "class_index": class_index, "color": colors[class_index]}
        features.append({"type": "Feature", "properties": properties, "geometry": geometry})
    collection = {
        "type": "FeatureCollection",
        "coordinates_in": "EPSG:4326 longitude, latitude" if image.georeferenced else "pixel column, row",
        "features": features,
    }
    with atomic_output(path) as temporary:
        temporary.write_text(json.dumps(collection, separators=(",", ":")), encoding="utf-8")
    return path
