"""The one function that turns a model spec (``landseg.models.spec.ModelSpec``) into a network.

Every architecture of segmentation-models-pytorch (smp) is available with any smp encoder or timm encoder
(``tu-<timm name>``), plus landseg's own: the classic U-Net and Dynamic World's network (``dynamic_world``,
which ``model.init: dynamic-world`` fine-tunes from the zoo's weights).
"""

from __future__ import annotations

import warnings
from typing import Any

import segmentation_models_pytorch as smp
from torch import nn

from landseg.errors import ConfigError
from landseg.models.dynamic_world import DynamicWorldNet
from landseg.models.padding import PadToMultiple
from landseg.models.spec import CLASSIC_UNET, DYNAMIC_WORLD, OFFLINE, ModelSpec, check_encoder
from landseg.models.unet import RONNEBERGER_WIDTHS, ClassicUNet
from landseg.models.weights import load_offline_encoder, offline_encoders

_ARCH_DEFAULTS: dict[str, dict[str, Any]] = {
    # ViT encoders are built for one image size unless told to interpolate their position embeddings.
    "dpt": {"dynamic_img_size": True},
}


def build_model(spec: ModelSpec) -> nn.Module:
    """The network ``spec`` describes: logits ``(N, num_classes, H, W)`` for ``(N, in_channels, H, W)``, any H, W."""
    if spec.num_classes is None:
        raise ConfigError("model num_classes is not set: a config's spec gets it from the schema (ModelSpec.for_data)")
    if spec.arch == CLASSIC_UNET:
        unet = ClassicUNet(spec.in_channels, spec.num_classes, spec.widths or RONNEBERGER_WIDTHS, spec.dropout)
        return PadToMultiple(unet, unet.size_multiple)
    if spec.arch == DYNAMIC_WORLD:
        # Any side of 2 or more works (both resizes take their sizes from the input): no padding wrapper,
        # so the weights keep the names of the zoo's file.
        return DynamicWorldNet(spec.in_channels, spec.num_classes)
    net = _build_smp(spec)
    multiple, min_size = _size_rule(spec.arch, net)
    return PadToMultiple(net, multiple, min_size)


def _build_smp(spec: ModelSpec) -> nn.Module:
    encoder = check_encoder(spec.arch, spec.encoder)
    weights: str | bool | None = spec.encoder_weights
    if weights == OFFLINE:
        weights = None
    elif weights is not None and encoder.startswith("tu-"):
        # timm picks the pretrained weights from the name ("tu-convnext_tiny.fb_in22k"); smp wants True.
        weights = True
    kwargs = {**_ARCH_DEFAULTS.get(spec.arch, {}), **spec.extra}
    try:
        with warnings.catch_warnings():
            # smp warns that its own timm- encoders are deprecated; the spec chose them knowingly.
            warnings.simplefilter("ignore", DeprecationWarning)
            net = smp.create_model(
                arch=spec.arch,
                encoder_name=spec.encoder,
                encoder_weights=weights,
                in_channels=spec.in_channels,
                classes=spec.num_classes,
                **kwargs,
            )
    except (TypeError, ValueError, KeyError, AssertionError) as exc:
        raise ConfigError(f"cannot build {spec.arch} with encoder {spec.encoder!r}: {exc}") from None
    except OSError as exc:
        if spec.encoder_weights is None:
            raise
        raise ConfigError(
            f"cannot fetch {spec.encoder_weights!r} weights for {spec.encoder!r} ({exc}); without internet use "
            f"encoder_weights 'offline' with {' or '.join(offline_encoders(installed_only=False))}, or None"
        ) from None
    if spec.encoder_weights == OFFLINE:
        load_offline_encoder(net.encoder, encoder)
    return net


def _size_rule(arch: str, net: nn.Module) -> tuple[int, int]:
    """``(multiple, min_size)`` for the input sides of an smp network."""
    stride = int(net.encoder.output_stride)  # type: ignore[union-attr, arg-type]  # every smp model has one
    if arch == "pan":
        # The feature pyramid attention block halves the deepest features three more times.
        return stride, 8 * stride
    if arch == "dpt":
        # DPT resamples the patch grid to half its resolution for its coarsest fusion stage.
        return 2 * stride, 2 * stride
    return stride, stride
