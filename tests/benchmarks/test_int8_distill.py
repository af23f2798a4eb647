"""The simulated int8 of ``benchmarks/int8_distill.py``: batch norms folded without changing the network's
output or its modules, ONNX Runtime's 7-bit weight grid, the first and last convolutions left alone."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import int8_distill

smp = pytest.importorskip("segmentation_models_pytorch")


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    net = smp.Unet("tu-tf_efficientnet_lite0", encoder_weights=None, classes=3).eval()
    with torch.no_grad():  # batch norms with statistics of their own, as a trained network has
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return net


def test_folding_batch_norms_keeps_the_output_and_the_modules(network):
    import copy

    folded = copy.deepcopy(network)
    example = torch.randn(2, 3, 64, 64)
    convolutions, pairs = int8_distill.convolutions_in_call_order(folded, example[:1])
    norms = [m for m in network.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(pairs) == len(norms) and len(convolutions) == len(norms) + 1  # the head has no batch norm
    int8_distill.fold_batch_norms(pairs)
    with torch.no_grad():
        assert torch.allclose(folded(example), network(example), atol=1e-4)
    assert all(torch.all(norm.running_var == 1 - norm.eps) for _, norm in pairs)
    assert folded.state_dict().keys() == network.state_dict().keys()


def test_the_student_leaves_weights_on_onnx_runtimes_grid_but_the_first_and_last(network):
    tiles = np.random.default_rng(0).normal(size=(4, 3, 64, 64)).astype(np.float32)
    student, fitting = int8_distill.distill(network, tiles, tiles[:2], 0.005, 1e-4, 32, 2)
    assert fitting["steps"] >= 1
    convolutions = [m for m in student.modules() if isinstance(m, torch.nn.Conv2d)]
    assert not any(hasattr(m, "parametrizations") for m in convolutions)

    def off_grid(conv) -> float:
        weight = conv.weight.detach()
        scale = weight.abs().amax(dim=(1, 2, 3), keepdim=True) / int8_distill.WEIGHT_LEVELS
        return float(((weight / scale) - (weight / scale).round()).abs().max())

    assert off_grid(convolutions[0]) > 0.01 and off_grid(convolutions[-1]) > 0.01
    assert max(off_grid(conv) for conv in convolutions[1:-1]) < 1e-3
    assert student.state_dict().keys() == network.state_dict().keys()
    assert all(not m._forward_pre_hooks for m in convolutions)
