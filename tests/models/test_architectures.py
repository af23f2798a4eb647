"""The contract every architecture landseg builds must keep, run by one class per architecture.

``ArchitectureContract`` holds the tests; each subclass names one small ``ModelSpec`` of its
architecture. A network must: map odd-sized inputs to logits of the same size, give every parameter a
finite gradient, come back from a landseg checkpoint (card and weights, safe loader) computing exactly
what it computed before, and export to ONNX computing what PyTorch computes. Adding an architecture to
``build_model`` without a subclass here fails ``test_every_architecture_has_a_contract``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from landseg.checkpoint import CARD_KEY, STATE_PREFIX, LoadedModel, ModelCard, load_checkpoint
from landseg.classes import get_schema
from landseg.models import ModelSpec, build_model, list_architectures
from landseg.normalization import Normalization
from landseg.predict.networks import OnnxNetwork
from landseg.predict.onnx import export_onnx

SCHEMA = get_schema("synthetic")
NUM_CLASSES = SCHEMA.num_classes
# Odd sides that no encoder stride divides: the padding wrapper must mirror and crop.
HEIGHT, WIDTH = 37, 71
ONNX_TILE = 48
SMALL_DECODER = {"decoder_channels": [32, 16, 16, 8, 8]}


class ArchitectureContract:
    spec: ModelSpec
    unused: tuple[str, ...] = ()
    """Prefixes of parameters the architecture builds but never uses in its forward pass."""

    @pytest.fixture(scope="class")
    @classmethod
    def network(cls) -> torch.nn.Module:
        torch.manual_seed(0)
        return build_model(cls.spec)

    def images(self, height: int = HEIGHT, width: int = WIDTH, batch: int = 2) -> torch.Tensor:
        return torch.randn(batch, self.spec.in_channels, height, width, generator=torch.Generator().manual_seed(1))

    def test_odd_sizes_give_logits_of_the_input_size(self, network):
        network.eval()
        with torch.no_grad():
            for height, width in ((HEIGHT, WIDTH), (WIDTH, HEIGHT), (1 + 64, 3)):
                logits = network(self.images(height, width, batch=1))
                assert logits.shape == (1, NUM_CLASSES, height, width)
                assert torch.isfinite(logits).all()

    def test_every_parameter_gets_a_finite_gradient(self, network):
        network.train()
        network.zero_grad()
        target = torch.randint(0, NUM_CLASSES, (2, HEIGHT, WIDTH), generator=torch.Generator().manual_seed(2))
        torch.nn.functional.cross_entropy(network(self.images()), target).backward()
        for name, parameter in network.named_parameters():
            if name.startswith(self.unused):
                assert parameter.grad is None, f"{name} is listed as unused but takes part"
                continue
            assert parameter.grad is not None, f"{name} gets no gradient"
            assert torch.isfinite(parameter.grad).all(), f"{name} has a non-finite gradient"
        network.eval()

    def test_a_landseg_checkpoint_brings_it_back_exactly(self, network, tmp_path):
        network.eval()
        with torch.no_grad():
            expected = network(self.images())
        path = save_checkpoint(tmp_path / "model.ckpt", self.spec, network)
        torch.manual_seed(123)  # a fresh network starts elsewhere: the loaded weights must replace it all
        loaded = load_checkpoint(path)
        assert loaded.card.model == self.spec.to_dict() | {"encoder_weights": None}
        with torch.no_grad():
            torch.testing.assert_close(loaded.network(self.images()), expected, rtol=0, atol=0)

    def test_onnx_export_computes_what_torch_computes(self, network, tmp_path):
        network.eval()
        onnx_path = export_onnx(
            LoadedModel(card_for(self.spec), network, tmp_path / "model.ckpt"), tmp_path / "model.onnx", tile=ONNX_TILE
        )
        images = self.images(ONNX_TILE, ONNX_TILE, batch=3)
        with torch.no_grad():
            expected = network(images).numpy()
        result = OnnxNetwork(onnx_path, threads=1)(images).numpy()
        np.testing.assert_allclose(result, expected, rtol=1e-3, atol=1e-3)
        assert (result.argmax(1) == expected.argmax(1)).mean() >= 0.999


def card_for(spec: ModelSpec) -> ModelCard:
    # Checkpoints store the spec without pretrained weights: loading never downloads or reads them.
    return ModelCard(
        model=spec.to_dict() | {"encoder_weights": None},
        schema=SCHEMA.to_dict(),
        normalization=Normalization.symmetric(spec.in_channels, 255.0).to_dict(),
        bands=list(range(1, spec.in_channels + 1)),
        tile_size=ONNX_TILE,
    )


def save_checkpoint(path: Path, spec: ModelSpec, network: torch.nn.Module) -> Path:
    """The layout ``landseg train`` writes: the card as a hyper-parameter, weights under ``model.``."""
    state = {STATE_PREFIX + key: value for key, value in network.state_dict().items()}
    torch.save({"hyper_parameters": {CARD_KEY: card_for(spec).to_dict()}, "state_dict": state}, path)
    return path


class TestClassicUnet(ArchitectureContract):
    spec = ModelSpec("classic_unet", NUM_CLASSES, widths=[8, 16, 32], dropout=0.1)


class TestUnet(ArchitectureContract):
    spec = ModelSpec("unet", NUM_CLASSES, encoder="resnet18", extra=SMALL_DECODER)


class TestUnetLite0Offline4Band(ArchitectureContract):
    """The default recipe's encoder with the ImageNet weights shipped offline, on a 4-band input."""

    spec = ModelSpec(
        "unet",
        NUM_CLASSES,
        encoder="tu-tf_efficientnet_lite0",
        encoder_weights="offline",
        in_channels=4,
        extra=SMALL_DECODER,
    )


class TestUnetPlusPlus(ArchitectureContract):
    spec = ModelSpec("unetplusplus", NUM_CLASSES, encoder="resnet18", extra={"decoder_channels": [16, 16, 8, 8, 8]})


class TestFpn4Band(ArchitectureContract):
    spec = ModelSpec(
        "fpn",
        NUM_CLASSES,
        encoder="resnet18",
        in_channels=4,
        extra={"decoder_pyramid_channels": 32, "decoder_segmentation_channels": 32},
    )


class TestDeepLabV3(ArchitectureContract):
    spec = ModelSpec("deeplabv3", NUM_CLASSES, encoder="resnet18", extra={"decoder_channels": 32})


class TestDeepLabV3Plus10Band(ArchitectureContract):
    spec = ModelSpec("deeplabv3plus", NUM_CLASSES, encoder="resnet18", in_channels=10, extra={"decoder_channels": 32})


class TestSegformer(ArchitectureContract):
    spec = ModelSpec("segformer", NUM_CLASSES, encoder="mit_b0", extra={"decoder_segmentation_channels": 32})


class TestPspNet(ArchitectureContract):
    spec = ModelSpec("pspnet", NUM_CLASSES, encoder="resnet18", extra={"psp_out_channels": 32})
    # smp's PSPNet reads the encoder to depth 3 but builds all of ResNet-18.
    unused = ("net.encoder.layer3.", "net.encoder.layer4.")


class TestLinkNet(ArchitectureContract):
    spec = ModelSpec("linknet", NUM_CLASSES, encoder="resnet18")


class TestMaNet(ArchitectureContract):
    spec = ModelSpec("manet", NUM_CLASSES, encoder="resnet18", extra={"decoder_channels": [32, 16, 16, 8, 8]})


class TestPan(ArchitectureContract):
    spec = ModelSpec("pan", NUM_CLASSES, encoder="resnet18", extra={"decoder_channels": 16})


class TestUperNet(ArchitectureContract):
    spec = ModelSpec("upernet", NUM_CLASSES, encoder="resnet18", extra={"decoder_channels": 32})


class TestDpt(ArchitectureContract):
    spec = ModelSpec(
        "dpt",
        NUM_CLASSES,
        encoder="tu-vit_tiny_patch16_224",
        in_channels=2,
        extra={
            "decoder_readout": "ignore",
            "decoder_intermediate_channels": [16, 16, 16, 16],
            "decoder_fusion_channels": 16,
        },
    )
    unused = ("net.encoder.model.norm.", "net.encoder.model.head.")  # DPT reads the ViT blocks before these


class TestDynamicWorld(ArchitectureContract):
    """Dynamic World's network, here with the synthetic schema's classes: what ``model.init: dynamic-world``
    fine-tunes (the zoo's weights are tested in tests/zoo)."""

    spec = ModelSpec("dynamic_world", NUM_CLASSES, in_channels=9)


def test_every_architecture_has_a_contract():
    covered = {cls.spec.arch for cls in ArchitectureContract.__subclasses__()}
    assert covered == set(list_architectures())
