import numpy as np
import pytest
import torch

from landseg.errors import CheckpointError, ConfigError
from landseg.predict.sliding import predict_probabilities
from landseg.predict.tiling import tile_windows
from landseg.predict.tta import tta_transforms

BANDS, CLASSES = 3, 4


def conv_net(kernel_size: int, seed: int = 0, symmetry: str | None = None) -> torch.nn.Module:
    """A single convolution: translation-equivariant; ``symmetry`` makes it flip- or D4-equivariant."""
    torch.manual_seed(seed)
    net = torch.nn.Conv2d(BANDS, CLASSES, kernel_size, padding=kernel_size // 2)
    with torch.no_grad():
        weight = net.weight
        if symmetry in ("flips", "d4"):
            weight.copy_((weight + weight.flip(-1) + weight.flip(-2) + weight.flip(-2, -1)) / 4)
        if symmetry == "d4":
            weight.copy_((weight + weight.transpose(-2, -1)) / 2)
        weight.mul_(3.0)  # sharper softmax, so a wrong blend shows
    return net.eval()


def full_image_probabilities(net: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(net(torch.from_numpy(image)[None]), dim=1)[0].numpy()


@pytest.fixture
def image() -> np.ndarray:
    return np.random.default_rng(42).normal(size=(BANDS, 45, 38)).astype(np.float32)


def seen_with_full_context(height: int, width: int, tile: int, overlap: float, margin: int) -> np.ndarray:
    """Pixels that no tile sees within ``margin`` of a tile edge lying inside the image."""
    ok = np.ones((height, width), dtype=bool)
    for row, col in tile_windows(height, width, tile, overlap):
        inner = np.zeros((height, width), dtype=bool)
        top = row + (margin if row > 0 else 0)
        left = col + (margin if col > 0 else 0)
        bottom = row + tile - (margin if row + tile < height else 0)
        right = col + tile - (margin if col + tile < width else 0)
        inner[top:bottom, left:right] = True
        covered = np.zeros_like(ok)
        covered[row : row + tile, col : col + tile] = True
        ok &= ~covered | inner
    return ok


@pytest.mark.parametrize("blend", ["uniform", "hann", "gaussian"])
@pytest.mark.parametrize("overlap", [0.0, 0.5, 0.75])
def test_sliding_window_equals_full_forward_away_from_tile_seams(image, blend, overlap):
    net = conv_net(3)
    tile = 16
    result = predict_probabilities(net, image, CLASSES, tile=tile, overlap=overlap, blend=blend, batch_size=3)
    expected = full_image_probabilities(net, image)
    interior = seen_with_full_context(*image.shape[1:], tile, overlap, margin=1)
    assert interior.mean() > 0.3
    np.testing.assert_allclose(result[:, interior], expected[:, interior], atol=1e-5)
    # Where a tile's zero padding replaced real neighbours the blend differs: the test can see seams.
    assert not np.allclose(result, expected, atol=1e-3)


@pytest.mark.parametrize("shape", [(45, 38), (5, 9), (1, 1), (16, 3)])
def test_pointwise_network_is_reproduced_everywhere_including_padded_small_images(shape):
    net = conv_net(1)
    image = np.random.default_rng(1).normal(size=(BANDS, *shape)).astype(np.float32)
    result = predict_probabilities(net, image, CLASSES, tile=16, overlap=0.5)
    assert result.shape == (CLASSES, *shape) and result.dtype == np.float32
    np.testing.assert_allclose(result, full_image_probabilities(net, image), atol=1e-5)
    np.testing.assert_allclose(result.sum(axis=0), 1.0, atol=1e-5)


def test_batch_size_does_not_change_the_result(image):
    net = conv_net(3)
    one = predict_probabilities(net, image, CLASSES, tile=16, batch_size=1)
    many = predict_probabilities(net, image, CLASSES, tile=16, batch_size=7)
    np.testing.assert_allclose(one, many, atol=1e-6)


@pytest.mark.parametrize("mode", ["flips", "d4"])
def test_tta_is_a_no_op_for_an_equivariant_network(image, mode):
    net = conv_net(3, seed=3, symmetry=mode)
    plain = predict_probabilities(net, image, CLASSES, tile=16, tta=None)
    augmented = predict_probabilities(net, image, CLASSES, tile=16, tta=mode)
    np.testing.assert_allclose(augmented, plain, atol=1e-5)


@pytest.mark.parametrize("mode, count", [("flips", 4), ("d4", 8)])
def test_tta_averages_softmax_over_transformed_inputs(mode, count):
    net = conv_net(3, seed=5)
    square = np.random.default_rng(2).normal(size=(BANDS, 16, 16)).astype(np.float32)
    # Brute force: every transform of the square image, forward, transformed back by hand.
    x = torch.from_numpy(square)
    views = [(x, lambda p: p)]
    views += [(x.flip(dims), lambda p, dims=dims: p.flip(dims)) for dims in [(-1,), (-2,), (-2, -1)]]
    if mode == "d4":
        views = [(x.rot90(k, (-2, -1)), lambda p, k=k: p.rot90(-k, (-2, -1))) for k in range(4)]
        transposed = x.transpose(-2, -1)
        views += [
            (transposed.rot90(k, (-2, -1)), lambda p, k=k: p.rot90(-k, (-2, -1)).transpose(-2, -1)) for k in range(4)
        ]
    assert len(views) == count
    with torch.no_grad():
        expected = sum(undo(torch.softmax(net(view[None]), dim=1)[0]) for view, undo in views) / count
    result = predict_probabilities(net, square, CLASSES, tile=16, tta=mode)
    np.testing.assert_allclose(result, expected.numpy(), atol=1e-5)
    assert not np.allclose(result, predict_probabilities(net, square, CLASSES, tile=16), atol=1e-3)


@pytest.mark.parametrize("mode", [None, "flips", "d4"])
def test_every_tta_inverse_undoes_its_transform(mode):
    x = torch.arange(2 * 5 * 5, dtype=torch.float32).reshape(1, 2, 5, 5)
    transforms = tta_transforms(mode)
    outputs = {tuple(forward(x).flatten().tolist()) for forward, _ in transforms}
    assert len(outputs) == len(transforms)  # all distinct
    for forward, inverse in transforms:
        torch.testing.assert_close(inverse(forward(x)), x)


def test_unknown_tta_and_bad_options_are_refused(image):
    net = conv_net(1)
    with pytest.raises(ConfigError, match="d4"):
        predict_probabilities(net, image, CLASSES, tile=16, tta="rotations")
    with pytest.raises(ConfigError, match="overlap"):
        predict_probabilities(net, image, CLASSES, tile=16, overlap=1.0)
    with pytest.raises(ConfigError, match="batch size"):
        predict_probabilities(net, image, CLASSES, tile=16, batch_size=0)


def test_network_with_the_wrong_class_count_is_reported(image):
    with pytest.raises(CheckpointError, match="5 classes"):
        predict_probabilities(conv_net(1), image, 5, tile=16)


def test_coarse_logits_are_upsampled_to_the_tile():
    class Coarse(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.avg_pool2d(x, 4)

    image = np.random.default_rng(3).normal(size=(CLASSES, 32, 32)).astype(np.float32)
    result = predict_probabilities(Coarse(), image, CLASSES, tile=16)
    assert result.shape == (CLASSES, 32, 32)
    np.testing.assert_allclose(result.sum(axis=0), 1.0, atol=1e-5)


def test_progress_bar_runs(image, capsys):
    result = predict_probabilities(conv_net(1), image, CLASSES, tile=16, progress=True)
    assert result.shape == (CLASSES, *image.shape[1:])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(image):
    net = conv_net(3)
    on_cpu = predict_probabilities(net, image, CLASSES, tile=16, tta="d4")
    on_gpu = predict_probabilities(net.to("cuda"), image, CLASSES, tile=16, tta="d4", device="cuda")
    np.testing.assert_allclose(on_gpu, on_cpu, atol=1e-4)
