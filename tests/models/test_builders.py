"""The contract every network landseg builds must keep, checked on one spec per kind of model."""

from __future__ import annotations

import io
import json

import pytest
import torch

from landseg.models import ModelSpec, build_model, list_architectures

NUM_CLASSES = 5
# Odd sides that no encoder stride divides: the padding wrapper must mirror and crop.
HEIGHT, WIDTH = 37, 71

SPECS = {
    "classic_unet": ModelSpec("classic_unet", NUM_CLASSES, widths=[8, 16, 32], dropout=0.1),
    "unet-resnet18": ModelSpec("unet", NUM_CLASSES, encoder="resnet18", extra={"decoder_channels": [32, 16, 16, 8, 8]}),
    "fpn-4band": ModelSpec(
        "fpn", NUM_CLASSES, encoder="resnet18", in_channels=4,
        extra={"decoder_pyramid_channels": 32, "decoder_segmentation_channels": 32},
    ),
    "deeplabv3plus-10band": ModelSpec("deeplabv3plus", NUM_CLASSES, encoder="resnet18", in_channels=10, extra={"decoder_channels": 32}),
    "segformer-mit_b0": ModelSpec("segformer", NUM_CLASSES, encoder="mit_b0", extra={"decoder_segmentation_channels": 32}),
    "unet-lite0-offline-4band": ModelSpec(
        "unet", NUM_CLASSES, encoder="tu-tf_efficientnet_lite0", encoder_weights="offline", in_channels=4,
        extra={"decoder_channels": [32, 16, 16, 8, 8]},
    ),
}


@pytest.mark.parametrize("spec", SPECS.values(), ids=SPECS.keys())
def test_model_builder_contract(spec: ModelSpec):
    torch.manual_seed(0)
    model = build_model(spec)
    images = torch.randn(2, spec.in_channels, HEIGHT, WIDTH)

    # Training step: logits of the input size, and a finite gradient for every parameter.
    model.train()
    logits = model(images)
    assert logits.shape == (2, NUM_CLASSES, HEIGHT, WIDTH)
    target = torch.randint(0, NUM_CLASSES, (2, HEIGHT, WIDTH))
    torch.nn.functional.cross_entropy(logits, target).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, f"{name} gets no gradient"
        assert torch.isfinite(parameter.grad).all(), f"{name} has a non-finite gradient"

    model.eval()
    with torch.no_grad():
        expected = model(images)
    assert torch.isfinite(expected).all()

    # Checkpoint round trip as prediction does it: spec through JSON, weights through torch.save,
    # into a network built without pretrained weights and with a different random init.
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    stored_spec = json.loads(json.dumps(spec.to_dict()))
    torch.manual_seed(1)
    rebuilt = build_model(ModelSpec.from_dict({**stored_spec, "encoder_weights": None})).eval()
    with torch.no_grad():
        assert not torch.allclose(rebuilt(images), expected), "a fresh network should differ before loading"
        rebuilt.load_state_dict(torch.load(buffer, weights_only=True))
        torch.testing.assert_close(rebuilt(images), expected, rtol=0, atol=0)

    # Export for deployment: the exported program computes what the eager network computes.
    exported = torch.export.export(model, (images,))
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(images), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", list_architectures())
def test_every_architecture_maps_any_size_to_logits(arch: str):
    encoder = {"classic_unet": None, "segformer": "mit_b0", "dpt": "tu-vit_tiny_patch16_224"}.get(arch, "resnet18")
    extra = {"decoder_readout": "ignore", "decoder_intermediate_channels": [16, 16, 16, 16], "decoder_fusion_channels": 16} if arch == "dpt" else {}
    spec = ModelSpec(arch, 3, encoder=encoder, in_channels=2, widths=[4, 8] if arch == "classic_unet" else None, extra=extra)
    model = build_model(spec).eval()
    with torch.no_grad():
        logits = model(torch.randn(1, 2, 19, 45))
    assert logits.shape == (1, 3, 19, 45)
    assert torch.isfinite(logits).all()
