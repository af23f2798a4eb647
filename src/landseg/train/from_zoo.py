"""Fine-tuning a zoo model (``model.init: NAME``): what the init implies, and what contradicts it.

A run that starts from a zoo model trains the zoo model's network from its weights (its classification
layer replaced, freshly initialised, when the schema has another number of classes:
``ZooModel.start_training``) on inputs read as the zoo model reads them: its bands, in its order, and its
normalization instead of statistics of the training images. The checkpoint's card carries that input
contract, so ``landseg predict -c FINETUNED.ckpt`` reads a scene exactly as ``landseg predict --model NAME``.

A config that names ``model.init`` leaves the network and the normalization to it: an architecture,
encoder or normalization of its own is a one-line ``ConfigError`` rather than a setting silently ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from landseg.config import ExperimentConfig, NormalizationConfig
from landseg.errors import ConfigError, DataError
from landseg.io.pixel_stats import PixelStats
from landseg.io.sentinel2 import canonical_band
from landseg.zoo import ZooModel, get_zoo_model

# Model settings a zoo model brings itself, and the values that agree with it (what a run writes back).
_OWN_NETWORK: dict[str, tuple] = {
    "encoder": (None,),
    "encoder_weights": (None,),
    "widths": (None,),
    "dropout": (0,),
    "extra": ({},),
}
_OWN_NORMALIZATION = ("mode", "mean", "std", "stats_file")
"""``data.normalization`` keys a zoo model decides; ``max_value`` only scales photometric augmentation."""


def zoo_start(config: ExperimentConfig) -> ZooModel | None:
    """The zoo model ``model.init`` names, once the rest of the config is found to agree with it; None without."""
    if config.model.init is None:
        return None
    entry = get_zoo_model(config.model.init)
    model, given = config.model, config.model.model_fields_set
    if "arch" in given and str(model.arch).strip().lower() != entry.arch:
        raise ConfigError(
            f"model.init {entry.name} fine-tunes its own network ({entry.arch}), so model.arch {model.arch!r} "
            "contradicts it: remove model.arch"
        )
    for key, agreeing in _OWN_NETWORK.items():
        value = getattr(model, key)
        if key in given and value not in agreeing:
            raise ConfigError(
                f"model.init {entry.name} brings its own network, which takes no model.{key} (got {value!r}): "
                f"remove model.{key}"
            )
    normalization = config.data.normalization
    for key in _OWN_NORMALIZATION:
        if getattr(normalization, key) != NormalizationConfig.model_fields[key].default:
            raise ConfigError(
                f"model.init {entry.name} normalizes inputs as {entry.name} does (kind "
                f"{entry.normalization.get('kind', 'mean_std')!r}), so data.normalization.{key} contradicts it: "
                f"remove data.normalization.{key}"
            )
    return entry


def settled_config(config: ExperimentConfig, entry: ZooModel) -> ExperimentConfig:
    """``config`` with the network the init implies, so the run's ``config.yaml`` says what was trained (and
    trains again as it is); ``config`` itself is left as it was."""
    network = {"arch": entry.arch, "encoder": None, "encoder_weights": None}
    return config.model_copy(update={"model": config.model.model_copy(update=network)})


def _band_name(description: str | None) -> str | None:
    return canonical_band(description) if description else None


def zoo_bands(entry: ZooModel, config: ExperimentConfig, count: int, descriptions: Sequence[str | None]) -> list[int]:
    """1-based bands of the training images that hold the zoo model's bands, in its order.

    ``data.bands`` if given (it must list as many bands, and, where the images name their bands, these);
    else the bands named like the zoo model's; else its indices in the sensor's full stack when the images
    have that many bands; else all bands when the images have exactly as many as it reads.
    """
    names = list(entry.band_names)
    listed = f"{len(names)} bands ({', '.join(names)})"
    if config.data.bands is not None:
        chosen = [int(b) for b in config.data.bands]
        if len(chosen) != len(names):
            raise ConfigError(
                f"data.bands lists {len(chosen)} band{'s' if len(chosen) != 1 else ''}, but model.init "
                f"{entry.name} reads {listed}: list the indices of those bands in that order"
            )
        named = [_band_name(descriptions[b - 1]) if 1 <= b <= count else None for b in chosen]
        if all(named) and named != [_band_name(n) for n in names]:
            raise ConfigError(
                f"data.bands picks bands named {', '.join(map(str, named))}, but model.init {entry.name} reads "
                f"{', '.join(names)} in that order"
            )
        return chosen
    by_name = {_band_name(d): i + 1 for i, d in enumerate(descriptions) if _band_name(d)}
    found = [by_name.get(_band_name(n)) for n in names]
    if all(index is not None for index in found):
        return [int(index) for index in found]  # type: ignore[arg-type]
    if count == max(entry.bands):
        return list(entry.bands)
    if count == len(names):
        return list(range(1, count + 1))
    raise ConfigError(
        f"the training images have {count} band{'s' if count != 1 else ''}, but model.init {entry.name} reads "
        f"{listed}: describe the bands by those names, or set data.bands to their indices in that order"
    )


def check_training_pixels(entry: ZooModel, stats: PixelStats, root: Path) -> None:
    """Refuse training images in other units than the zoo model's (e.g. 0-1 reflectance for digital numbers):
    its normalization would squash them into nearly constant inputs."""
    problem = entry.input_problem(None, max(stats.high), stats.dtype)
    if problem:
        raise DataError(f"model.init {entry.name}: the training images {problem.replace('has ', 'have ', 1)}", root)


def card_fields(entry: ZooModel) -> dict:
    """What the fine-tuned model's card takes from the zoo model: how it reads and normalizes its inputs."""
    return {
        "normalization": dict(entry.normalization),
        "bands": list(entry.bands),
        "band_names": list(entry.band_names),
    }


def provenance(entry: ZooModel, replaced: list[str]) -> dict:
    """The card's ``training["init"]``: where the starting weights come from, and what was replaced."""
    return {
        "zoo_model": entry.name,
        "replaced_layers": list(replaced),
        "licence": entry.licence,
        "citation": entry.citation,
        "source": entry.source,
    }


def start_message(entry: ZooModel, replaced: list[str], num_classes: int) -> str:
    own = len(entry.classes)
    if not replaced:
        return f"model.init {entry.name}: every layer starts from its weights ({num_classes} classes, as its own)"
    return (
        f"model.init {entry.name}: every layer starts from its weights except {', '.join(replaced)}, replaced "
        f"(freshly initialised) for {num_classes} classes instead of its {own}"
    )
