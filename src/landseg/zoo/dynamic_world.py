"""Dynamic World's published weights (Brown et al. 2022), loaded into its network architecture.

The architecture is ``landseg.models.dynamic_world`` (so that a network fine-tuned from these weights is an
ordinary landseg checkpoint, rebuilt by ``build_model``); here are the weights: ``load_dynamic_world``
gives the zoo model's network, exactly the SavedModel's (``tools/convert_dynamic_world.py`` converts its
variables), and ``start_from_dynamic_world`` puts them into a network to fine-tune, whose classification
layer is kept when it predicts Dynamic World's 9 classes and left as built (freshly initialised) otherwise.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from landseg.errors import CheckpointError
from landseg.models.dynamic_world import (
    BN_EPSILON,
    HEAD,
    IN_BANDS,
    L2_EPSILON,
    NUM_CLASSES,
    ConvNormMish,
    DynamicWorldNet,
    ResidualBlock,
    SeparableUnit,
)

__all__ = [
    "BN_EPSILON",
    "IN_BANDS",
    "L2_EPSILON",
    "NUM_CLASSES",
    "ConvNormMish",
    "DynamicWorldNet",
    "ResidualBlock",
    "SeparableUnit",
    "load_dynamic_world",
    "start_from_dynamic_world",
]


def load_dynamic_world(path: str | Path) -> DynamicWorldNet:
    """The network with its converted weights from a safetensors file, in eval mode."""
    path = Path(path)
    net = DynamicWorldNet()
    _load_state(net, _read_weights(path), path)
    return net.eval()


def start_from_dynamic_world(network: nn.Module, path: str | Path) -> list[str]:
    """Dynamic World's weights from ``path`` put into ``network`` (a ``DynamicWorldNet`` of any number of
    classes, as ``build_model`` makes it), to fine-tune; the names of the layers left as built.

    Every layer is Dynamic World's except ``head`` when ``network`` predicts another number of classes
    than its 9: that layer keeps its fresh initialisation and is named in the result. Nothing else may
    differ; a network of another architecture or band count is a ``CheckpointError``.
    """
    path = Path(path)
    state = _read_weights(path)
    own = network.state_dict()
    unknown = [key for key in state if key not in own]
    if unknown:
        raise CheckpointError(f"the network to fine-tune is no Dynamic World network (it lacks {unknown[:3]})", path)
    replaced = sorted({key.rsplit(".", 1)[0] for key, tensor in state.items() if own[key].shape != tensor.shape})
    if set(replaced) - {HEAD}:
        raise CheckpointError(
            f"only Dynamic World's {HEAD} may change shape when fine-tuning, not {[r for r in replaced if r != HEAD]} "
            f"(the network reads {own['stem.conv.weight'].shape[1]} bands, Dynamic World {IN_BANDS})",
            path,
        )
    kept = {key: tensor for key, tensor in state.items() if key.rsplit(".", 1)[0] not in replaced}
    with torch.no_grad():
        _load_state(network, kept, path, leave=tuple(f"{layer}." for layer in replaced))
    return replaced


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not path.is_file():
        raise CheckpointError("Dynamic World weights are missing (run tools/convert_dynamic_world.py)", path)
    return load_file(str(path))


def _load_state(net: nn.Module, state: dict[str, torch.Tensor], path: Path, leave: tuple[str, ...] = ()) -> None:
    # BatchNorm's step counter only matters for training with momentum=None; the file stays float32-only.
    try:
        result = net.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # a tensor of the wrong shape
        raise CheckpointError(f"weights do not fit the Dynamic World network ({str(exc)[:200]})", path) from None
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked") and not k.startswith(leave)]
    if missing or result.unexpected_keys:
        raise CheckpointError(
            f"weights do not fit the Dynamic World network (missing {missing[:5]}, "
            f"unexpected {result.unexpected_keys[:5]})",
            path,
        )
