"""One YAML file describes a whole preparation: scenes, labels, schema, alignment, tiling, filters, split.

``landseg prepare all CONFIG`` reproduces a data set from it. Relative paths are resolved against the
config file's folder, as for experiment configs; the resolved config is saved in the output folder as
``prepare.yaml`` so ``split`` and ``stats`` can be rerun on an output folder alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ConfigDict, Field, ValidationError, model_validator

from landseg.config import Section, VectorRules, config_error, read_yaml_config

PREPARED_CONFIG_NAME = "prepare.yaml"

BandRef = int | str
"""A 1-based band index, or a band description such as ``B04`` or ``nir`` (case-insensitive)."""


class SceneConfig(Section):
    image: Path
    label: Path
    name: str | None = None
    """Prefix of this scene's chip names; default the image file's stem."""
    cloud_mask: Path | None = None
    """This scene's cloud (and shadow) mask raster, for ``filters.max_cloud_fraction``: on the image's grid,
    or georeferenced and then read onto that grid by nearest neighbour."""


class InputConfig(Section):
    """Scenes as an explicit list, or as image/label path templates under ``root`` (catalog style)."""

    scenes: list[SceneConfig] = Field(default_factory=list)
    root: Path | None = None
    images: str | None = None
    """Template of image paths under root, e.g. ``images/{date}_patchN_{id}.tif``."""
    labels: str | None = None
    """Template of label paths, filled with the fields captured from each image path."""
    cloud_masks: str | None = None
    """Template of cloud mask paths under root, filled like ``labels`` (seed 003's Ghana images each ship
    one), for ``filters.max_cloud_fraction``."""
    bands: list[BandRef] | None = None
    """Bands to keep, in output order; default all."""
    nodata: float | None = None
    """Image no-data value; default the file's own."""
    label_nodata: float | None = None
    """Label no-data value; default the file's own. No-data labels become ignore."""
    unknown_labels: Literal["error", "ignore"] = "error"
    vector: VectorRules | None = None
    """How labels in vector files (``.gpkg``, ``.geojson``, ``.shp``, ``.fgb``) become class pixels: they are
    rasterized onto their image's grid, window by window, into ``aligned/``."""

    @model_validator(mode="after")
    def _some_scenes(self) -> InputConfig:
        templated = [self.root is not None, self.images is not None, self.labels is not None]
        if any(templated) and not all(templated):
            raise ValueError("input.root, input.images and input.labels go together")
        if not self.scenes and not all(templated):
            raise ValueError("give input.scenes, or input.root with input.images and input.labels templates")
        if self.cloud_masks is not None and not all(templated):
            raise ValueError("input.cloud_masks is a template like input.labels: it needs input.root and input.images")
        return self


class AlignConfig(Section):
    resample: Literal["label", "image"] = "label"
    """Which side moves: ``label`` puts labels on the image grid (the usual case); ``image`` puts the
    image on the label grid (e.g. 400 px images with 200 px labels, keeping labels untouched)."""
    method: Literal["mode", "nearest"] = "mode"
    """Label resampling: majority of the covered label pixels, or the label pixel at the centre."""
    image_method: Literal["average", "bilinear", "cubic", "nearest"] = "average"
    """Image resampling when ``resample: image``."""
    grid: Literal["auto", "geo", "pixel"] = "auto"
    """``geo``: both rasters are georeferenced, match by coordinates (any CRS). ``pixel``: the two
    rasters cover the same extent, match by relative position (pre-chipped pairs without
    georeferencing). ``auto``: geo when both are georeferenced, pixel when neither is."""
    block: int = Field(512, ge=16)
    """Output window side in pixels; shrunk so a source window stays under ``max_source_pixels``."""
    max_source_pixels: int = Field(16_000_000, ge=65_536)
    threads: int = Field(1, ge=1)


class ScaleConfig(Section):
    """Scaling of chip values to float (``tiling.dtype: float32``) or to 0-255 (``uint8``)."""

    method: Literal["none", "fixed", "percentile", "meanstd"] = "none"
    min: float | list[float] | None = None
    max: float | list[float] | None = None
    """``fixed``: [min, max] (one value or one per band) maps to [0, 1]."""
    low: float = Field(2.0, ge=0, le=100)
    high: float = Field(98.0, ge=0, le=100)
    """``percentile``: the low and high percentiles of each band over all scenes map to [0, 1]."""

    @model_validator(mode="after")
    def _complete(self) -> ScaleConfig:
        if self.method == "fixed" and (self.min is None or self.max is None):
            raise ValueError("scale.method fixed needs min and max")
        if self.method == "percentile" and not self.low < self.high:
            raise ValueError(f"scale.low ({self.low}) must be below scale.high ({self.high})")
        return self


class TilingConfig(Section):
    size: int = Field(256, ge=8)
    stride: int | None = Field(None, ge=1)
    """Step between chips; default ``size`` (no overlap). The last row and column of chips sit flush
    with the scene edge, so chips cover the scene exactly."""
    overlap: float | None = Field(None, ge=0, lt=1)
    """Alternative to stride: fraction of a chip shared with its neighbour."""
    format: Literal["tif", "png"] = "tif"
    """``png`` only for 3-band uint8 chips (after band selection and scaling); no georeferencing."""
    dtype: Literal["source", "float32", "uint8"] = "source"
    scale: ScaleConfig = ScaleConfig()
    compress: Literal["deflate", "lzw", "zstd", "none"] = "deflate"
    index: Literal["csv", "parquet"] = "csv"

    @model_validator(mode="after")
    def _consistent(self) -> TilingConfig:
        if self.stride is not None and self.overlap is not None:
            raise ValueError("give tiling.stride or tiling.overlap, not both")
        if self.dtype == "source" and self.scale.method != "none":
            raise ValueError("tiling.scale needs tiling.dtype float32 or uint8")
        if self.dtype == "uint8" and self.scale.method in ("none", "meanstd"):
            raise ValueError("tiling.dtype uint8 needs scale.method fixed or percentile")
        return self

    @property
    def step(self) -> int:
        if self.stride is not None:
            return self.stride
        if self.overlap is not None:
            return max(1, round(self.size * (1 - self.overlap)))
        return self.size


class DominanceRule(Section):
    max_fraction: float = Field(gt=0, le=1)
    """Drop a chip where one class covers more than this share of its labelled pixels."""
    classes: list[str] | None = None
    """Only these classes count (e.g. ``[Water]`` for water-only chips); default every class."""


class TopKRule(Section):
    k: int = Field(ge=1)
    """The k most frequent classes over all candidate chips."""
    max_fraction: float = Field(gt=0, le=1)


class CloudRule(Section):
    fraction: float = Field(ge=0, le=1)
    """Drop a chip where cloud or shadow covers more than this share of its valid pixels."""
    values: list[int] = Field(default_factory=lambda: [1, 2], min_length=1)
    """Mask values that count as cloud or shadow: ``[1, 2]`` for the cloud model's masks (0 clear, 1 cloud,
    2 shadow, 255 no-data); ``[1]`` for binary cloud masks such as seed 003's Ghana masks."""
    source: Literal["mask", "model"] = "mask"
    """``mask``: each scene's ``cloud_mask`` (or the ``input.cloud_masks`` template); ``model``: masks the
    zoo's cloud model writes into ``out/cloud_masks`` before cutting (Sentinel-2 L1C or L2A images)."""


class FilterConfig(Section):
    drop_unlabelled: bool = True
    """Drop chips without a single labelled pixel."""
    min_valid_fraction: float = Field(0.0, ge=0, le=1)
    """Drop chips whose labelled, valid-image share is below this."""
    drop_blank_images: bool = True
    """Drop chips whose image is constant in every band (all black, say) while their label is not."""
    max_class_fraction: DominanceRule | None = None
    top_k: TopKRule | None = None
    max_cloud_fraction: CloudRule | None = None
    """Drop chips under cloud or shadow, read from a mask raster per scene or made by the cloud model."""


class OversampleConfig(Section):
    classes: list[str]
    min_fraction: float = Field(0.01, gt=0, le=1)
    """A training chip is repeated when one of ``classes`` covers at least this share of it."""
    factor: int = Field(2, ge=2)
    """How many times such a chip is listed in the training split file."""


class ChipSplitConfig(Section):
    method: Literal["ratio", "blocks"] = "ratio"
    """``ratio``: chips shuffled one by one; ``blocks``: whole spatial blocks go to one split."""
    ratios: dict[str, float] = Field(default_factory=lambda: {"train": 0.8, "val": 0.1, "test": 0.1})
    block_chips: int | None = Field(None, ge=1)
    """Blocks of N x N chip positions of a scene."""
    block_metres: float | None = Field(None, gt=0)
    """Blocks of this many map units (metres in projected CRSs), across scenes."""
    seed: int = 0
    guard: bool = True
    """Drop chips of a later split (order of ``ratios``) that overlap a chip of an earlier one."""
    oversample: OversampleConfig | None = None

    @model_validator(mode="after")
    def _valid(self) -> ChipSplitConfig:
        if abs(sum(self.ratios.values()) - 1.0) > 1e-6 or any(r < 0 for r in self.ratios.values()):
            raise ValueError(f"split.ratios must be non-negative and sum to 1, got {self.ratios}")
        if self.block_chips is not None and self.block_metres is not None:
            raise ValueError("give split.block_chips or split.block_metres, not both")
        if self.method == "blocks" and self.block_chips is None and self.block_metres is None:
            raise ValueError("split.method blocks needs block_chips or block_metres")
        return self


class StatsConfig(Section):
    split: str = "train"
    """Split whose chips give the band statistics (normalization must not see validation data)."""
    plot: bool = True


class PrepareConfig(Section):
    name: str = "prepared"
    description: str = ""
    out: Path
    schema_: str | dict = Field(alias="schema")
    input: InputConfig
    align: AlignConfig = AlignConfig()
    tiling: TilingConfig = TilingConfig()
    filters: FilterConfig = FilterConfig()
    split: ChipSplitConfig = ChipSplitConfig()
    stats: StatsConfig = StatsConfig()

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True)

    def to_yaml_dict(self) -> dict:
        return self.model_dump(mode="json", by_alias=True)


def parse_prepare_config(data: dict, source: str | Path | None = None, base: Path | None = None) -> PrepareConfig:
    """Validate ``data``; relative paths are taken relative to ``base`` (the config file's folder)."""
    try:
        config = PrepareConfig.model_validate(data)
    except ValidationError as exc:
        raise config_error(exc, source) from None
    if base is not None:
        _resolve_paths(config, base)
    return config


def load_prepare_config(path: str | Path, overrides: list[str] | None = None) -> PrepareConfig:
    """A preparation config file, or an output folder holding the ``prepare.yaml`` of an earlier run."""
    path = Path(path)
    if path.is_dir():
        path = path / PREPARED_CONFIG_NAME
    data = read_yaml_config(path, overrides, kind="preparation config")
    return parse_prepare_config(data, source=path, base=path.parent)


def save_prepare_config(config: PrepareConfig, folder: Path) -> Path:
    from landseg.io.write import atomic_output

    target = folder / PREPARED_CONFIG_NAME
    with atomic_output(target) as temporary:
        temporary.write_text(yaml.safe_dump(config.to_yaml_dict(), sort_keys=False))
    return target


def _resolve_paths(config: PrepareConfig, base: Path) -> None:
    def resolve(path: Path) -> Path:
        path = path.expanduser()
        return path if path.is_absolute() else (base / path).resolve()

    config.out = resolve(config.out)
    if config.input.root is not None:
        config.input.root = resolve(config.input.root)
    for scene in config.input.scenes:
        scene.image, scene.label = resolve(scene.image), resolve(scene.label)
        if scene.cloud_mask is not None:
            scene.cloud_mask = resolve(scene.cloud_mask)
    schema: Any = config.schema_
    if isinstance(schema, str) and schema.endswith((".yaml", ".yml")):
        config.schema_ = str(resolve(Path(schema)))
