"""Every choice between the pixels of a scene and its class map that is not the model's: tiles, overlap,
blending, bands, no-data, the minimum mapping unit and which files to write.

``landseg predict``, ``landseg evaluate``, training validation, ``landseg serve`` and the Dask tasks
all hand the inference core one of these, so equal options mean equal maps. It is the one source of these
fields, their defaults and their checks: ``landseg change`` holds one for the images it predicts
(``ChangeOptions.prediction``), and the web app's request model takes its defaults from
``DEFAULT_OPTIONS`` and checks an upload's choices with ``check``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from landseg.errors import ConfigError
from landseg.predict.blocks import DEFAULT_BLOCK_WIDTH
from landseg.predict.choices import BLEND_KINDS, CLOUD_MASKS, BlendKind, CloudMask
from landseg.predict.tiling import tile_stride
from landseg.uncertainty import check_measure


@dataclass(frozen=True)
class PredictOptions:
    tile: int | None = None
    """Network tile side in pixels; default the checkpoint's."""
    overlap: float = 0.5
    blend: BlendKind = "hann"
    batch_size: int = 2
    """Tiles per forward pass. On CPU larger batches add memory (about 190 MB per 512 px tile for the
    default U-Net under ONNX Runtime) and no speed; GPUs want 8 or more."""
    block_width: int = DEFAULT_BLOCK_WIDTH
    bands: tuple[int, ...] | None = None
    """1-based raster bands in the model's order, overriding the card's."""
    nodata: float | None = None
    """Input no-data value, overriding the file's."""
    probabilities: bool = False
    confidence: bool = False
    uncertainty: str | None = None
    """Also write an uncertainty raster by this measure, ``entropy`` or ``margin`` (``landseg.uncertainty``)."""
    preview: bool = True
    areas: bool = True
    polygons: str | None = None
    """``gpkg`` or ``geojson``."""
    simplify: float = 0.0
    """Polygon simplification tolerance in pixels."""
    min_area: int = 0
    """Regions smaller than this many pixels take their surroundings' class; 0 keeps everything."""
    gdal_cache_mb: int = 64
    """GDAL's block cache: bounded so that memory stays flat in scene size."""
    input_value_scale: float = 1.0
    """Raw pixels are multiplied by this before the model's normalization (e.g. 255 / 10000 to give
    16-bit reflectance to a model trained on 8-bit imagery)."""
    allow_input_mismatch: bool = False
    """Predict even when the input's dtype or value range is not what the model was trained on."""
    cloud_mask: CloudMask = "auto"
    """Pixels under cloud or shadow become no-data (``predict.clouds``): ``auto``, ``model``, ``scl`` or ``none``."""
    cloud_output: bool = False
    """Also write the cloud and shadow mask (0 clear, 1 cloud, 2 shadow) as a COG."""

    def class_map_only(self) -> PredictOptions:
        """These options without the outputs beside the class map (probabilities, confidence, uncertainty,
        preview, areas, polygons), for ``evaluate`` and ``audit``, which read the map only; the map is the
        same either way."""
        return replace(
            self,
            probabilities=False,
            confidence=False,
            uncertainty=None,
            preview=False,
            areas=False,
            polygons=None,
            cloud_output=False,
        )

    def raster_layers(self, num_classes: int) -> dict[str, int]:
        """The uint8 raster outputs these options ask for and their band counts, in the order every writer
        of them (the scene's COGs, a Dask block file) stacks them."""
        layers = {"classes": 1}
        if self.probabilities:
            layers["probabilities"] = num_classes
        if self.confidence:
            layers["confidence"] = 1
        if self.uncertainty is not None:
            layers["uncertainty"] = 1
        return layers

    def check(self) -> None:
        """Refuse bad options before any scene is read."""
        # Imported here: the command line builds options without importing the vector stack.
        from landseg.maps.polygons import check_polygon_format

        tile_stride(1 if self.tile is None else self.tile, self.overlap)
        if self.blend not in BLEND_KINDS:
            raise ConfigError(f"unknown blend {self.blend!r}; choose one of {', '.join(BLEND_KINDS)}")
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be positive, got {self.batch_size}")
        check_polygon_format(self.polygons)
        if self.uncertainty is not None:
            check_measure(self.uncertainty)
        if self.min_area < 0:
            raise ConfigError(f"--min-area must not be negative, got {self.min_area}")
        if self.simplify < 0:
            raise ConfigError(f"--simplify must not be negative, got {self.simplify}")
        if self.cloud_mask not in CLOUD_MASKS:
            raise ConfigError(f"unknown --cloud-mask {self.cloud_mask!r}; choose one of {', '.join(CLOUD_MASKS)}")
        if self.cloud_output and self.cloud_mask == "none":
            raise ConfigError("--outputs cloud writes the cloud mask, which --cloud-mask none turns off")
        if not self.input_value_scale > 0:
            raise ConfigError(f"--input-scale-values must be positive, got {self.input_value_scale}")


DEFAULT_OPTIONS = PredictOptions()
