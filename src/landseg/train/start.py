"""Where a run's network starts, and what follows from it, behind one interface.

``FreshStart``: the network the config's model spec describes, freshly initialised (its encoder's
pretrained weights aside), on inputs read and normalized as the config says. ``ZooStart``
(``model.init: NAME``): a zoo model's network and weights, on inputs read and normalized as the zoo model
reads them (``landseg.train.from_zoo``). ``train()`` and the data module ask the start, never which it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import nn

from landseg.config import ExperimentConfig
from landseg.io.pixel_stats import PixelStats
from landseg.models import ModelSpec, build_model
from landseg.normalization import AnyNormalization, Normalization
from landseg.train import from_zoo
from landseg.zoo import ZooModel


class FreshStart:
    """A network built from ``config.model``, its inputs read and normalized as the config says."""

    def trained_config(self, config: ExperimentConfig) -> ExperimentConfig:
        """The config as it trains (and as the run's ``config.yaml`` records it)."""
        return config

    def bands(self, config: ExperimentConfig, count: int, descriptions: Sequence[str | None]) -> list[int]:
        """1-based bands of the training images, in model-input order."""
        return list(config.data.bands) if config.data.bands else list(range(1, count + 1))

    def normalization(self, stats: PixelStats, root: Path) -> AnyNormalization | None:
        """The normalization the start imposes, after checking the training pixels suit it; None: the data's."""
        return None

    def spec(self, config: ExperimentConfig, num_classes: int, in_channels: int) -> ModelSpec:
        return config.model.for_data(num_classes, in_channels)

    def network(self, spec: ModelSpec) -> nn.Module | None:
        """The network with its starting weights; None: ``SegmentationModule`` builds it from the card."""
        return None

    def card_inputs(self, inputs: dict) -> dict:
        """The card's input contract (bands, band names, normalization): ``inputs``, as the data gives it."""
        return inputs

    def begin(self, network: nn.Module | None, num_classes: int) -> tuple[dict | None, str | None]:
        """Put the starting weights into ``network``: the card's ``training["init"]`` and a message, or None."""
        return None, None


class ZooStart(FreshStart):
    """A zoo model's network and weights (its classification layer replaced for other classes), reading and
    normalizing inputs as the zoo model does; the card carries that input contract."""

    def __init__(self, entry: ZooModel):
        self.entry = entry

    def trained_config(self, config: ExperimentConfig) -> ExperimentConfig:
        return from_zoo.settled_config(config, self.entry)

    def bands(self, config: ExperimentConfig, count: int, descriptions: Sequence[str | None]) -> list[int]:
        return from_zoo.zoo_bands(self.entry, config, count, descriptions)

    def normalization(self, stats: PixelStats, root: Path) -> AnyNormalization | None:
        from_zoo.check_training_pixels(self.entry, stats, root)
        return Normalization.from_dict(self.entry.normalization)

    def spec(self, config: ExperimentConfig, num_classes: int, in_channels: int) -> ModelSpec:
        return self.entry.model_spec(num_classes)

    def network(self, spec: ModelSpec) -> nn.Module | None:
        return build_model(spec)

    def card_inputs(self, inputs: dict) -> dict:
        return from_zoo.card_fields(self.entry)

    def begin(self, network: nn.Module | None, num_classes: int) -> tuple[dict | None, str | None]:
        if network is None:
            raise ValueError("a zoo start needs the network its network() built")
        replaced = self.entry.start_training(network)
        return from_zoo.provenance(self.entry, replaced), from_zoo.start_message(self.entry, replaced, num_classes)


def model_start(config: ExperimentConfig) -> FreshStart:
    """The start ``config`` asks for; a ``ConfigError`` at once (before any image is read) where the config
    contradicts a zoo model it names."""
    entry = from_zoo.zoo_start(config)
    return FreshStart() if entry is None else ZooStart(entry)
