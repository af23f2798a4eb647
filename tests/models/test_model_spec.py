from __future__ import annotations

import json
from pathlib import Path

import pytest
import segmentation_models_pytorch as smp
import torch

from landseg.errors import ConfigError
from landseg.models import ModelSpec, build_model, list_architectures


def test_architectures_are_all_of_smp_the_classic_unet_and_dynamic_world():
    expected = {
        "unet",
        "unetplusplus",
        "fpn",
        "deeplabv3",
        "deeplabv3plus",
        "segformer",
        "pspnet",
        "linknet",
        "manet",
        "pan",
        "upernet",
        "dpt",
        "classic_unet",
        "dynamic_world",
    }
    assert set(list_architectures()) == expected
    assert set(smp.MODEL_ARCHITECTURES_MAPPING) <= set(list_architectures())


@pytest.mark.parametrize(
    "spec",
    [
        ModelSpec("classic_unet", 7, widths=(16, 32, 64, 128, 256), dropout=0.2, in_channels=4),
        ModelSpec(
            "deeplabv3plus",
            3,
            encoder="tu-tf_efficientnet_lite0",
            encoder_weights="offline",
            extra={"decoder_atrous_rates": (6, 12, 18), "encoder_output_stride": 16},
        ),
        ModelSpec("segformer", 2, encoder="mit_b0", encoder_weights="imagenet", in_channels=10),
    ],
    ids=["classic_unet", "deeplabv3plus", "segformer"],
)
def test_spec_survives_a_json_round_trip(spec: ModelSpec):
    stored = json.dumps(spec.to_dict())
    assert ModelSpec.from_dict(json.loads(stored)) == spec


def test_spec_normalizes_what_json_would_change():
    spec = ModelSpec("UNet", 3, extra={"decoder_channels": (32, 16, 16, 8, 8)})
    assert spec.arch == "unet"
    assert spec.extra == {"decoder_channels": [32, 16, 16, 8, 8]}


def test_classic_unet_has_no_encoder_to_fill():
    # Config files name an encoder by default; the classic U-Net must not trip over it.
    spec = ModelSpec("classic_unet", 3, encoder="tu-tf_efficientnet_lite0", encoder_weights="offline")
    assert (spec.encoder, spec.encoder_weights, spec.widths) == (None, None, None)
    assert spec.to_dict()["encoder"] is None


def test_dynamic_world_is_its_fixed_network_with_any_head():
    spec = ModelSpec("dynamic_world", 3, encoder="tu-tf_efficientnet_lite0", encoder_weights="offline", in_channels=9)
    assert (spec.encoder, spec.encoder_weights) == (None, None)
    network = build_model(spec)
    assert network.head.out_channels == 3 and network.stem.conv.in_channels == 9
    with pytest.raises(ConfigError, match="takes no widths"):
        ModelSpec("dynamic_world", 3, widths=[8, 16])
    with pytest.raises(ConfigError, match="takes no extra"):
        ModelSpec("dynamic_world", 3, extra={"decoder_channels": [8]})


@pytest.mark.parametrize(
    "settings, message",
    [
        (
            {"arch": "unet", "num_classes": 3, "encoders": "resnet18"},
            "unknown key 'encoders'; did you mean 'encoder'?",
        ),
        ({"arch": "unet"}, "lack num_classes"),
        ({"arch": "uper_net", "num_classes": 3}, "did you mean 'upernet'"),
        ({"arch": "unet", "num_classes": 3, "encoder": "resnet-18"}, "did you mean 'resnet18'"),
        (
            {"arch": "fpn", "num_classes": 3, "encoder": "tu-tf_efficientnet_lite_0"},
            "did you mean 'tu-tf_efficientnet_lite0'",
        ),
        ({"arch": "unet", "num_classes": 3, "encoder": None}, "needs an encoder"),
        ({"arch": "unet", "num_classes": 0}, "model.num_classes: must be a positive integer"),
        ({"arch": "unet", "num_classes": True}, "model.num_classes: must be a positive integer"),
        ({"arch": "unet", "num_classes": 3, "in_channels": 2.5}, "model.in_channels: must be a positive integer"),
        ({"arch": "classic_unet", "num_classes": 3, "dropout": 1.0}, "model.dropout: must be in"),
        ({"arch": "classic_unet", "num_classes": 3, "widths": [64]}, "two or more positive integers"),
        ({"arch": "classic_unet", "num_classes": 3, "extra": {"depth": 3}}, "not extra arguments"),
        ({"arch": "unet", "num_classes": 3, "widths": [8, 16]}, "classic_unet only"),
        ({"arch": "fpn", "num_classes": 3, "dropout": 0.2}, "classic_unet only"),
        ({"arch": "unet", "num_classes": 3, "extra": {"activation": "softmax"}}, "raw logits"),
        ({"arch": "unet", "num_classes": 3, "extra": {"classes": 4}}, "set 'num_classes'"),
        (
            {
                "arch": "unet",
                "num_classes": 3,
                "encoder": "resnet18",
                "encoder_weights": None,
                "extra": {"decoder_channel": [8]},
            },
            "did you mean 'decoder_channels'",
        ),
        ({"arch": "dpt", "num_classes": 3, "encoder": "resnet18"}, "timm ViT encoder"),
    ],
)
def test_bad_settings_are_config_errors_that_say_what_to_write(settings, message):
    with pytest.raises(ConfigError) as error:
        ModelSpec.from_dict(settings)
    assert message in str(error.value)


def test_constructor_errors_from_smp_become_config_errors():
    # FPN's GroupNorm needs segmentation channels divisible by 32: only smp knows.
    spec = ModelSpec("fpn", 3, encoder="resnet18", encoder_weights=None, extra={"decoder_segmentation_channels": 20})
    with pytest.raises(ConfigError, match="cannot build fpn with encoder 'resnet18'"):
        build_model(spec)


def test_timm_encoders_take_timm_arguments():
    spec = ModelSpec("unet", 3, encoder="tu-tf_efficientnet_lite0", extra={"drop_path_rate": 0.1})
    model = build_model(spec)
    assert model.net.encoder.model.blocks[1][0].drop_path.drop_prob > 0


def test_left_out_weights_follow_the_encoder():
    # Offline weights by default where landseg has them; a named encoder without them starts from random
    # weights instead of failing for weights nobody asked for. Named weights are kept either way.
    assert ModelSpec("unet", 3, encoder="tu-tf_efficientnet_lite1").encoder_weights == "offline"
    assert ModelSpec("fpn", 3, encoder="resnet18").encoder_weights is None
    assert ModelSpec("fpn", 3, encoder="resnet18", encoder_weights="imagenet").encoder_weights == "imagenet"
    with pytest.raises(ConfigError, match="'resnet18' has no offline weights"):
        ModelSpec("fpn", 3, encoder="resnet18", encoder_weights="offline")


def test_the_default_spec_is_the_documented_model():
    # README: U-Net with the EfficientNet-Lite0 encoder and its offline ImageNet weights; the demo trains the same.
    from landseg.demo import demo_config

    spec = ModelSpec(num_classes=3)
    assert (spec.arch, spec.encoder, spec.encoder_weights) == ("unet", "tu-tf_efficientnet_lite0", "offline")
    demo = ModelSpec(**demo_config(Path("data"), seed=0, minutes=1)["model"])
    assert (demo.arch, demo.encoder, demo.encoder_weights) == (spec.arch, spec.encoder, spec.encoder_weights)


def test_checkpoints_of_older_versions_rebuild_their_network():
    # What a frozen dataclass's asdict() stored in every card before the spec became a pydantic model.
    stored = {
        "arch": "classic_unet",
        "num_classes": 4,
        "encoder": None,
        "encoder_weights": None,
        "in_channels": 2,
        "widths": [4, 8],
        "dropout": 0.0,
        "extra": {},
    }
    spec = ModelSpec.from_dict(stored)
    assert spec.to_dict() == stored
    network = build_model(spec)
    assert network(torch.zeros(1, 2, 20, 20)).shape == (1, 4, 20, 20)


def test_a_config_spec_without_classes_cannot_be_built_until_the_data_fills_it():
    spec = ModelSpec(arch="classic_unet", widths=[4, 8])
    with pytest.raises(ConfigError, match="num_classes is not set"):
        build_model(spec)
    assert build_model(spec.for_data(num_classes=3, in_channels=5))(torch.zeros(1, 5, 8, 8)).shape == (1, 3, 8, 8)
    assert spec.num_classes is None  # for_data returns a new spec
