"""The names a user picks from to run a model: engine, precision, test-time augmentation, tile blending.

Plain ``Literal`` types and their values, importable without torch or SciPy: the command line's Typer
options offer exactly these choices (and list them in ``--help``), the web API's request model and the
plain records sent to Dask workers use them, and the inference code checks against the same values.
"""

from __future__ import annotations

from typing import Literal, get_args

Engine = Literal["auto", "torch", "onnxruntime"]
"""``auto``: ONNX Runtime for fp32 on CPU where it is installed, PyTorch otherwise."""
ENGINES: tuple[str, ...] = get_args(Engine)

Precision = Literal["auto", "fp32", "bf16", "int8"]
"""``auto``: a model's int8 version where its measured guard passes (``predict.quantize``), fp32 otherwise;
``int8`` runs an int8 version whatever its guard says, and refuses a model that has none; ``bf16`` is
PyTorch's autocast."""
PRECISIONS: tuple[str, ...] = get_args(Precision)

TTAMode = Literal["flips", "d4"]
"""The four flips, or all eight flips and rotations of D4; ``None`` where a mode is optional runs none."""
TTA_MODES: tuple[str, ...] = get_args(TTAMode)

BlendKind = Literal["uniform", "hann", "gaussian"]
"""Weights of overlapping tiles where their predictions are averaged."""
BLEND_KINDS: tuple[str, ...] = get_args(BlendKind)

CloudMask = Literal["auto", "model", "scl", "none"]
"""Where a scene's cloud and shadow mask comes from (``predict.clouds``): ``auto`` takes a Sentinel-2 L2A
product's SCL band, else the cloud model for Sentinel-2 inputs, else nothing."""
CLOUD_MASKS: tuple[str, ...] = get_args(CloudMask)
