from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from landseg.models import ModelSpec, build_model
from landseg.models.unet import ClassicUNet


def double_conv_parameters(c_in: int, c_out: int) -> int:
    return 9 * c_in * c_out + 2 * c_out + 9 * c_out * c_out + 2 * c_out  # two bias-free convs, two BatchNorms


def expected_parameters(in_channels: int, num_classes: int, widths: list[int]) -> int:
    """Ronneberger's U-Net counted by hand: down double convs, 2x2 up-convs, up double convs, 1x1 head."""
    total = double_conv_parameters(in_channels, widths[0])
    for upper, lower in itertools.pairwise(widths):
        total += double_conv_parameters(upper, lower)  # going down
        total += 4 * lower * upper + upper  # transposed conv, with bias
        total += double_conv_parameters(2 * upper, upper)  # after concatenating the skip
    return total + widths[0] * num_classes + num_classes


@pytest.mark.parametrize("widths", [[16, 32, 64, 128, 256], [32, 64, 128, 256], [64, 128, 256, 512, 1024]])
def test_layers_are_those_of_the_seed_unets(widths):
    # Seed 004: Conv_Block (3, 16) ... bottleneck (128, 256), UpConv (256, 128) -> Conv_Block (256, 128).
    model = ClassicUNet(3, 6, widths)
    assert sum(p.numel() for p in model.parameters()) == expected_parameters(3, 6, widths)
    up_convs = [m for m in model.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [(m.in_channels, m.out_channels) for m in up_convs] == list(zip(widths[:0:-1], widths[-2::-1], strict=False))
    assert model.size_multiple == 2 ** (len(widths) - 1)


def test_dropout_is_spatial_and_only_in_training():
    model = build_model(ModelSpec("classic_unet", 2, widths=[4, 8], dropout=0.5, in_channels=1))
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout2d)] == [
        0.5
    ] * 6  # two per double conv: top, bottleneck, up
    image = torch.randn(2, 1, 9, 11)
    model.train()
    assert not torch.equal(model(image), model(image))
    model.eval()
    assert torch.equal(model(image), model(image))
