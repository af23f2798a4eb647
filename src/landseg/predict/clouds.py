"""Clouds and their shadows, found in a scene and left out of its class map (``--cloud-mask``).

Where the mask comes from:

- ``scl``: the scene classification band of a Sentinel-2 L2A product (``io.sentinel2`` adds it to the
  stack as band ``SCL``): classes 3 (cloud shadow) and 8, 9, 10 (cloud of medium and high probability,
  thin cirrus) are masked; snow is land cover and stays;
- ``model``: ukis-csmask's cloud and shadow network (the zoo's ``cloud-shadow`` models), run through the
  one inference core like any model: its own bands and tiles, 10 m tiles resampled to the 30 m it was
  trained on inside each tile, streamed block by block;
- ``auto`` (the default): the SCL band where the input has one, else the model where the input is
  Sentinel-2 (a product, a stack whose bands are named B2 ... B12, or an ensemble that reads Sentinel-2),
  else nothing;
- ``none``.

The mask is streamed into its own scratch raster (0 clear, 1 cloud, 2 shadow, 255 no-data) before the
scene's outputs are finished; then every pixel under cloud or shadow becomes no-data in the class map and
the layers beside it, so areas, polygons and change leave it out. ``CloudTally`` counts it for the run
record, and ``--outputs cloud`` keeps the mask as a COG.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from rasterio.windows import Window

from landseg.classes import ClassSchema
from landseg.errors import ConfigError, DataError
from landseg.io.georef import Georeference
from landseg.io.raster import open_raster
from landseg.io.sentinel2 import LEVEL_TAG, SCL_BAND, canonical_band
from landseg.maps.cog import NODATA_BYTE, copy_to_cog, open_scratch, scratch_path, write_window
from landseg.predict.choices import CLOUD_MASKS
from landseg.predict.ensemble import Ensemble, load_ensemble
from landseg.predict.options import PredictOptions
from landseg.zoo import get_zoo_model
from landseg.zoo.registry import CLOUD, CLOUD_CLEAR, CLOUD_SHADOW, CLOUD_SHADOW_BANDS

SCL_CLOUD = (8, 9, 10)
SCL_SHADOW = (3,)
SCL_NODATA = 0
STRIP_ROWS = 256
"""Rows of the scene read at once when the mask comes from the SCL band, or is applied to the outputs."""


@dataclass(frozen=True)
class CloudSource:
    """Where a scene's mask comes from: its SCL band (1-based index) or a zoo cloud model."""

    method: str
    scl_band: int | None = None
    model: str | None = None

    def describe(self) -> str:
        return "the product's scene classification (SCL)" if self.method == "scl" else f"the {self.model} model"


@dataclass(frozen=True)
class CloudTally:
    """Pixels of a scene's valid area by mask class."""

    clear: int = 0
    cloud: int = 0
    shadow: int = 0

    def __add__(self, other: CloudTally) -> CloudTally:
        return CloudTally(self.clear + other.clear, self.cloud + other.cloud, self.shadow + other.shadow)

    @classmethod
    def of(cls, classes: np.ndarray) -> CloudTally:
        counts = np.bincount(classes.ravel(), minlength=256)
        return cls(int(counts[CLOUD_CLEAR]), int(counts[CLOUD]), int(counts[CLOUD_SHADOW]))

    @property
    def valid(self) -> int:
        return self.clear + self.cloud + self.shadow

    @property
    def masked_fraction(self) -> float:
        return (self.cloud + self.shadow) / self.valid if self.valid else 0.0

    def to_dict(self, source: CloudSource) -> dict:
        share = (lambda n: round(n / self.valid, 6)) if self.valid else (lambda n: 0.0)
        return {
            "method": source.method,
            "model": source.model,
            "clear_pixels": self.clear,
            "cloud_pixels": self.cloud,
            "shadow_pixels": self.shadow,
            "cloud_fraction": share(self.cloud),
            "shadow_fraction": share(self.shadow),
            "masked_fraction": share(self.cloud + self.shadow),
        }

    def sentence(self) -> str:
        return f"{100 * self.masked_fraction:.1f} % of the scene under cloud or shadow"


# -- which mask a scene gets -----------------------------------------------------------------------------
def choose_cloud_source(dataset, ensemble: Ensemble, choice: str, source: str | Path) -> CloudSource | None:
    """The mask ``choice`` gives this input (``auto`` decides here), or None for none."""
    if choice not in CLOUD_MASKS:
        raise ConfigError(f"unknown --cloud-mask {choice!r}; choose one of {', '.join(CLOUD_MASKS)}")
    if choice == "none":
        return None
    descriptions = [str(d or "") for d in dataset.descriptions]
    scl = next((i + 1 for i, d in enumerate(descriptions) if d.strip().upper() == SCL_BAND), None)
    if choice == "scl" or (choice == "auto" and scl is not None):
        if scl is None:
            raise DataError(
                "has no SCL band (the scene classification of Sentinel-2 L2A products): use --cloud-mask model "
                "for the cloud model, or --cloud-mask none",
                source,
            )
        return CloudSource("scl", scl_band=scl)
    level = _level(dataset)
    if choice == "auto" and not _is_sentinel2(level, descriptions, ensemble):
        return None
    if choice == "auto" and not _cloud_model_installed():
        warnings.warn(
            f"{source}: no cloud mask, because the cloud model is not installed (pip install ukis-csmask)",
            CloudMaskWarning,
            stacklevel=2,
        )
        return None
    return CloudSource("model", model=cloud_model_for(level, descriptions, dataset.count, source))


class CloudMaskWarning(UserWarning):
    """An input that ``--cloud-mask auto`` would mask was predicted without a mask."""


def _level(dataset) -> str | None:
    return (dataset.tags() if hasattr(dataset, "tags") else {}).get(LEVEL_TAG)


def _is_sentinel2(level: str | None, descriptions: Sequence[str], ensemble: Ensemble) -> bool:
    named = {canonical_band(d) for d in descriptions} - {None}
    reads_sentinel2 = any(
        get_zoo_model(m.card.model["zoo"]).sensor.startswith("Sentinel-2")
        for m in ensemble.members
        if m.card.model.get("zoo")
    )
    return level is not None or len(named) >= 4 or reads_sentinel2


def _cloud_model_installed() -> bool:
    return get_zoo_model("cloud-shadow").size_bytes is not None


def cloud_model_for(level: str | None, descriptions: Sequence[str], count: int, source: str | Path) -> str:
    """The zoo cloud model for this input: its product level (L2A or else L1C), and six bands where the
    input has the two SWIR bands, four (blue, green, red, nir) where it has only those."""
    suffix = "-l2a" if level == "L2A" else ""
    named = {canonical_band(d) for d in descriptions} - {None}
    wanted = [name for name, _ in CLOUD_SHADOW_BANDS]
    if named:
        if set(wanted) <= named:
            return "cloud-shadow" + suffix
        if set(wanted[:4]) <= named:
            return "cloud-shadow-4b" + suffix
        missing = sorted(set(wanted[:4]) - named)
        raise DataError(
            f"lacks band{'s' if len(missing) > 1 else ''} {', '.join(missing)} that the cloud model reads (blue, "
            f"green, red and nir: B2, B3, B4, B8; B11 and B12 improve it): add them, or use --cloud-mask none",
            source,
        )
    if count >= max(index for _, index in CLOUD_SHADOW_BANDS):
        return "cloud-shadow" + suffix  # the 13-band stack B1 ... B12 in the sensor's order
    raise DataError(
        f"has {count} unnamed band{'s' if count != 1 else ''}: the cloud model reads blue, green, red, nir, "
        "swir16 and swir22 (B2, B3, B4, B8, B11, B12) and finds them by name (band descriptions B2 ...) or in "
        "the 13-band Sentinel-2 stack; name the bands, or use --cloud-mask none",
        source,
    )


# -- the mask, streamed ----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=2)
def cloud_ensemble(model: str) -> Ensemble:
    return load_ensemble([f"zoo:{model}"])


def cloud_options(options: PredictOptions) -> PredictOptions:
    """The land-cover run's reading choices (no-data, value scale, block width), the cloud model's own tiles."""
    return replace(
        PredictOptions(),
        batch_size=options.batch_size,
        block_width=options.block_width,
        nodata=options.nodata,
        input_value_scale=options.input_value_scale,
        allow_input_mismatch=options.allow_input_mismatch,
        gdal_cache_mb=options.gdal_cache_mb,
    )


def stream_cloud_classes(
    dataset, cloud: CloudSource, options: PredictOptions, source: str | Path
) -> Iterator[tuple[tuple[int, int], tuple[int, int], np.ndarray]]:
    """``(rows, cols, classes)`` pieces of the scene's mask: 0 clear, 1 cloud, 2 shadow, 255 no-data."""
    if cloud.method == "scl":
        yield from _scl_classes(dataset, int(cloud.scl_band or 0))
        return
    from landseg.predict.core import lay_out, stream

    ensemble = cloud_ensemble(str(cloud.model))
    chosen = cloud_options(options)
    layout = lay_out(dataset, ensemble, chosen, source)
    for chunk in stream(dataset, ensemble, layout, chosen):
        yield chunk.rows, chunk.cols, chunk.classes(NODATA_BYTE)


def _scl_classes(dataset, band: int) -> Iterator[tuple[tuple[int, int], tuple[int, int], np.ndarray]]:
    for top in range(0, dataset.height, STRIP_ROWS):
        bottom = min(top + STRIP_ROWS, dataset.height)
        scl = dataset.read(band, window=Window(0, top, dataset.width, bottom - top))
        yield (top, bottom), (0, dataset.width), scl_classes(scl)


def scl_classes(scl: np.ndarray) -> np.ndarray:
    """Scene classification codes to mask classes: 0 clear, 1 cloud, 2 shadow, 255 where SCL has no data."""
    classes = np.full(scl.shape, CLOUD_CLEAR, dtype=np.uint8)
    classes[np.isin(scl, SCL_CLOUD)] = CLOUD
    classes[np.isin(scl, SCL_SHADOW)] = CLOUD_SHADOW
    classes[scl == SCL_NODATA] = NODATA_BYTE
    return classes


def mask_layers(mask, layers: Sequence) -> None:
    """Set every band of the open rasters ``layers`` to no-data where the open mask raster says cloud or
    shadow, strip by strip."""
    for top in range(0, mask.height, STRIP_ROWS):
        window = Window(0, top, mask.width, min(STRIP_ROWS, mask.height - top))
        classes = mask.read(1, window=window)
        covered = (classes == CLOUD) | (classes == CLOUD_SHADOW)
        if not covered.any():
            continue
        for layer in layers:
            pixels = layer.read(window=window)
            pixels[:, covered] = NODATA_BYTE
            layer.write(pixels, window=window)


def write_cloud_masks(images: Sequence[Path], out_dir: Path, choice: str = "model") -> dict[Path, Path]:
    """Each image's mask (0 clear, 1 cloud, 2 shadow, 255 no-data) as a COG ``out_dir/<stem>_cloud.tif`` on the
    image's grid; returns image -> mask. ``landseg prepare`` drops cloudy training chips with them
    (``filters.max_cloud_fraction.source: model``); ``choice`` as ``--cloud-mask`` (``scl``, ``auto``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    masks: dict[Path, Path] = {}
    for image in dict.fromkeys(Path(i) for i in images):
        name = f"{image.stem}_cloud.tif"  # images of one stem in two folders: the second gets its number
        target = out_dir / (name if out_dir / name not in masks.values() else f"{image.stem}_{len(masks)}_cloud.tif")
        with open_raster(image) as dataset:
            # The cloud model's own ensemble stands in for the land-cover one that ``auto`` would consult.
            cloud = choose_cloud_source(dataset, cloud_ensemble("cloud-shadow"), choice, image)
            if cloud is None:
                raise DataError("gets no cloud mask: it is no Sentinel-2 image (bands B2 ... B12)", image)
            scratch = scratch_path(target, "cloud")
            try:
                georef = Georeference.of(dataset)
                shape = (dataset.height, dataset.width)
                with open_scratch(scratch, *shape, 1, georef, ["cloud mask"], cloud_colormap()) as mask:
                    for rows, cols, classes in stream_cloud_classes(dataset, cloud, PredictOptions(), image):
                        write_window(mask, classes, rows, cols)
                masks[image] = copy_to_cog(scratch, target, "MODE")
            finally:
                scratch.unlink(missing_ok=True)
    return masks


def cloud_colormap() -> dict[int, tuple[int, int, int, int]]:
    """The mask's colours, those of the cloud model's classes (no-data transparent)."""
    return ClassSchema.from_dict(get_zoo_model("cloud-shadow").schema_dict()).colormap()
