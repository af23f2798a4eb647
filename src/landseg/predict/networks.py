"""The networks that prediction runs, behind one interface: a normalized ``(B, C, h, w)`` float32 batch
in, ``(B, K, h', w')`` logits out, whether PyTorch or ONNX Runtime computes them.

Which engine runs is chosen here. ``engine="auto"`` (the default) runs checkpoints with ONNX Runtime
on CPU when it is installed: on the benchmark machine it was 3-4x faster than PyTorch for the default
U-Net with identical class maps (BENCHMARKS.md, section 3), and falls back to PyTorch otherwise, or for a
network the exporter cannot handle. ``TorchNetwork`` uses channels-last memory (oneDNN's preferred
convolution layout); bfloat16 autocast is opt-in (``precision="bf16"``): faster on CPUs with native bf16,
but it changed 0.6-0.7 % of the pixels of Dubai models (99.42 % and 99.27 % argmax agreement with fp32,
``benchmarks/predict_precision.py``), more than the 0.5 % this project accepts for a default.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from landseg.checkpoint import ModelCard
from landseg.errors import ConfigError
from landseg.predict.choices import ENGINES, PRECISIONS, Precision
from landseg.predict.choices import Engine as Engine  # imported from here by the ensemble, serve and the API

CPU = torch.device("cpu")


class Network(Protocol):
    """What the inference core calls: logits of a normalized batch, on the member's device."""

    fixed_side: int | None
    """Tile side the network takes and no other (an exported ONNX graph), or None for any side."""

    def __call__(self, batch: torch.Tensor) -> torch.Tensor: ...


def require_package(module: str, purpose: str):
    try:
        return __import__(module)
    except ImportError:
        raise ConfigError(f"{purpose} needs the {module} package: pip install {module}") from None


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return precision


def onnxruntime_available() -> bool:
    """ONNX Runtime and the exporter's packages are installed."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx", "onnxscript"))


def resolve_engine(engine: str, device: str | torch.device, precision: str = "auto") -> str:
    """``auto`` is ONNX Runtime on CPU where it is installed (not for ``bf16``), PyTorch otherwise; ``int8``
    needs ONNX Runtime."""
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    on_cpu = torch.device(device).type == "cpu"
    if precision == "int8" and (engine == "torch" or not on_cpu or not onnxruntime_available()):
        raise ConfigError("--precision int8 runs with ONNX Runtime on CPU: use --engine auto or onnxruntime on cpu")
    if engine != "auto":
        return engine
    return "onnxruntime" if on_cpu and precision != "bf16" and onnxruntime_available() else "torch"


class TorchNetwork:
    """A torch segmentation network set up for inference: ``(B, C, h, w)`` float32 to logits."""

    fixed_side: int | None = None

    def __init__(
        self,
        network: torch.nn.Module,
        device: str | torch.device = "cpu",
        precision: Precision = "fp32",
        channels_last: bool = True,
        compile: bool = False,
    ):
        self.device = torch.device(device)
        self.precision = check_precision(precision)
        self.channels_last = channels_last
        network = network.to(self.device).eval()
        if channels_last:
            network = network.to(memory_format=torch.channels_last)
        self.network = torch.compile(network) if compile else network

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            return self.network(batch)


@dataclass
class Member:
    card: ModelCard
    network: Network
    """Maps a normalized ``(B, C, h, w)`` float32 batch on ``device`` to ``(B, K, h', w')`` logits."""
    path: Path
    device: torch.device = CPU
    engine: str = "torch"
    precision: str = "fp32"
    """What the network computes in: ``fp32``, ``bf16`` (autocast) or ``int8`` (a quantized ONNX model)."""

    @property
    def fixed_side(self) -> int | None:
        """Tile side the network was exported for, when it takes no other (ONNX models)."""
        return getattr(self.network, "fixed_side", None)

    @property
    def name(self) -> str:
        """What to call the member in messages: a zoo model's name, else its file name."""
        return str(self.card.model.get("zoo") or self.path.name)


class OnnxNetwork:
    """An ONNX Runtime session with the torch-in, torch-out interface of ``TorchNetwork``."""

    def __init__(self, model: str | Path | bytes, threads: int | None = None):
        ort = require_package("onnxruntime", "--engine onnxruntime")
        # No custom-op library is ever registered (register_custom_ops_library loads native code), and
        # only the CPU provider: a model file can use ONNX Runtime's built-in operators, nothing else.
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        # Idle intra-op threads sleep instead of spinning: the streaming loop's own work (reading, blending,
        # writing) shares the cores with them. On 2 cores `landseg predict` took 26.5 s instead of 27.3 s on
        # the 4096² benchmark scene (two runs each, 2026-12-05; BENCHMARKS.md §3).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        model_input = model if isinstance(model, bytes) else str(model)
        self.session = ort.InferenceSession(model_input, options, providers=["CPUExecutionProvider"])
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        self.fixed_side = first.shape[-1] if isinstance(first.shape[-1], int) else None
        self.metadata = self.session.get_modelmeta().custom_metadata_map

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(batch.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run(None, {self.input_name: array})[0])
