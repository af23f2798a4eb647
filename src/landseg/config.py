"""Typed experiment configuration: one YAML file describes data, model and training.

Every section rejects keys it does not know and suggests the closest one, so a typo fails loudly
instead of silently training with a default. Relative paths in a config file are resolved against the
file's own folder, so ``landseg train configs/x.yaml`` works from any working directory.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from landseg.errors import ConfigError


class Section(BaseModel):
    """A config block that refuses unknown keys with a did-you-mean hint."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @model_validator(mode="before")
    @classmethod
    def _check_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            known = set(cls.model_fields) | {f.alias for f in cls.model_fields.values() if f.alias}
            for key in data:
                if key not in known:
                    close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.5)
                    hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(sorted(known))}"
                    raise ValueError(f"unknown key {key!r}{hint}")
        return data


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
    def _one_kind(self) -> "SplitConfig":
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

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ModelConfig(Section):
    arch: str = "unet"
    encoder: str | None = "tu-tf_efficientnet_lite0"
    encoder_weights: str | None = "offline"
    widths: list[int] | None = None
    dropout: float = 0.0
    extra: dict = {}


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


class LossConfig(Section):
    name: Literal["ce"] = "ce"
    label_smoothing: float = 0.0


class AugmentConfig(Section):
    flips: bool = True
    rotate90: bool = True


class TrainConfig(Section):
    crop_size: int = 256
    batch_size: int = 8
    epochs: int = 30
    steps_per_epoch: int = 50
    max_minutes: float | None = None
    optimizer: OptimizerConfig = OptimizerConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    loss: LossConfig = LossConfig()
    augment: AugmentConfig = AugmentConfig()
    num_workers: int = 0
    seed: int = 0
    deterministic: bool = False
    precision: str = "32-true"
    accelerator: str = "auto"
    devices: int | str = 1
    val_every: int = 1
    """Validate every N epochs on whole validation images (sliding windows at native resolution)."""
    val_tile: int = 512
    val_overlap: float = 0.25


class ExperimentConfig(Section):
    name: str = "experiment"
    description: str = ""
    data: DataConfig
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()

    def to_yaml_dict(self) -> dict:
        return self.model_dump(mode="json", by_alias=True)


def set_dotted(data: dict, assignment: str) -> None:
    """Apply ``a.b.c=value`` (value parsed as YAML) to a nested dict."""
    if "=" not in assignment:
        raise ConfigError(f"--set expects key=value, got {assignment!r}")
    key, raw = assignment.split("=", 1)
    value = yaml.safe_load(raw)
    node = data
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: {part!r} is not a section")
    node[parts[-1]] = value


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read config ({exc.strerror})", path) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML ({str(exc).splitlines()[0]})", path) from None
    if not isinstance(data, dict):
        raise ConfigError("config must be a YAML mapping", path)
    for assignment in overrides or []:
        set_dotted(data, assignment)
    config = parse_config(data, source=path)
    root = config.data.root.expanduser()
    if not root.is_absolute():
        config.data.root = (path.parent / root).resolve()
    return config


def parse_config(data: dict, source: str | Path | None = None) -> ExperimentConfig:
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
        raise ConfigError(f"{where}: {message}{more}" if where else f"{message}{more}", source) from None
