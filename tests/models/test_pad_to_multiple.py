from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from landseg.models.padding import PadToMultiple, mirror_pad, padded_size


@pytest.mark.parametrize(
    "size, multiple, min_size, expected",
    [
        (67, 32, 1, 96),
        (64, 32, 1, 64),
        (1, 32, 1, 32),
        (67, 16, 128, 128),
        (130, 16, 128, 144),
        (93, 8, 8, 96),
    ],
)
def test_padded_size_is_the_next_multiple(size, multiple, min_size, expected):
    assert padded_size(size, multiple, min_size) == expected


@pytest.mark.parametrize("height, width", [(1, 1), (1, 4), (2, 3), (5, 4)])
@pytest.mark.parametrize("bottom, right", [(0, 0), (1, 3), (4, 0), (9, 11)])
def test_mirror_pad_reflects_like_numpy_even_beyond_the_image(height, width, bottom, right):
    image = np.random.default_rng(height * 10 + width).normal(size=(2, 3, height, width)).astype(np.float32)
    padded = mirror_pad(torch.from_numpy(image), bottom, right).numpy()
    # numpy mirrors again and again when asked for more than the side, and repeats a single pixel.
    expected = np.pad(image, ((0, 0), (0, 0), (0, bottom), (0, right)), mode="reflect")
    np.testing.assert_array_equal(padded, expected)


class NeedsMultipleOf8(nn.Module):
    """Position-sensitive stand-in for an encoder-decoder: refuses sides that 8 does not divide."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(2, 3, kernel_size=3, padding=1)
        self.seen: list[tuple[int, int]] = []

    def forward(self, x):
        self.seen.append(tuple(x.shape[-2:]))
        assert x.shape[-2] % 8 == 0 and x.shape[-1] % 8 == 0
        return self.conv(x) + torch.arange(x.shape[-1], dtype=x.dtype)


def test_wrapper_runs_the_net_on_the_mirrored_image_and_crops_back():
    net = NeedsMultipleOf8()
    model = PadToMultiple(net, multiple=8, min_size=16)
    image = torch.randn(1, 2, 13, 21)
    logits = model(image)
    assert net.seen == [(16, 24)]
    mirrored = torch.from_numpy(np.pad(image.numpy(), ((0, 0), (0, 0), (0, 3), (0, 3)), mode="reflect"))
    torch.testing.assert_close(logits, net(mirrored)[..., :13, :21], rtol=0, atol=0)


def test_wrapper_leaves_valid_sizes_alone():
    net = NeedsMultipleOf8()
    image = torch.randn(1, 2, 16, 24)
    torch.testing.assert_close(PadToMultiple(net, multiple=8)(image), net(image), rtol=0, atol=0)
    assert net.seen == [(16, 24), (16, 24)]
