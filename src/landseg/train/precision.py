"""``train.precision: auto`` and ``train.channels_last: auto``: the numeric format and memory layout that
train fastest on the hardware a run gets, without giving up numerical safety.

- CUDA GPU with bf16 (Ampere and later): ``bf16-mixed``; older GPUs: ``16-mixed`` (Lightning adds a
  gradient scaler, which float16's narrow range needs);
- CPU with bf16 in hardware (``avx512_bf16`` or ``amx_bf16`` on x86, ``bf16`` on Arm): ``bf16-mixed``;
- anything else: ``32-true`` (bf16 emulated in software is slower than float32).

Losses stay float32 under every mixed precision (``SegmentationModule.training_step``), and validation
scores the float32 network. Channels-last memory is on for mixed precision on a GPU (tensor cores read
NHWC) and on every CPU: on the development CPU it made training steps faster in both fp32 and bf16
(``benchmarks/train_precision.py``, BENCHMARKS.md section 4). An explicit value in the config wins.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

AUTO = "auto"
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")
"""``/proc/cpuinfo`` flags of bf16 arithmetic in hardware (x86 AMX and AVX-512, Arm's BF16 extension)."""


@dataclass(frozen=True)
class PrecisionChoice:
    precision: str
    """Lightning's precision: ``bf16-mixed``, ``16-mixed``, ``32-true``..."""
    channels_last: bool
    requested: str
    """What the config asked for: ``auto`` or an explicit precision."""
    reason: str
    """Why, in one line, for the start-up message, the run summary and the model card."""

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        layout = "channels-last" if self.channels_last else "contiguous (NCHW)"
        return f"precision {self.precision}, {layout} memory: {self.reason}"


def cpu_bf16_support(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The CPU feature that does bf16 arithmetic in hardware (``amx_bf16``, ``avx512_bf16``, ``bf16``), or None."""
    if torch.backends.cpu.get_cpu_capability() in ("AMX", "AVX512_BF16"):  # where torch reports it itself
        return "amx_bf16"
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return None
    flags = set()
    for line in text.splitlines():
        if line.lower().startswith(("flags", "features")):
            flags.update(line.split(":", 1)[-1].split())
    return next((flag for flag in CPU_BF16_FLAGS if flag in flags), None)


def training_device(accelerator: str) -> str:
    """``cuda``, ``cpu`` or another accelerator's name, as Lightning will pick it for ``accelerator``."""
    if accelerator in ("gpu", "cuda") or (accelerator == AUTO and torch.cuda.is_available()):
        return "cuda"
    if accelerator == AUTO:
        return "mps" if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available() else "cpu"
    return accelerator


def auto_precision(device: str) -> tuple[str, str]:
    """The precision ``auto`` picks on ``device``, and why."""
    if device == "cuda":
        name = torch.cuda.get_device_name() if torch.cuda.is_available() else "CUDA GPU"
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return "bf16-mixed", f"{name} computes bf16 in hardware"
        return "16-mixed", f"{name} has no bf16: float16 with a gradient scaler"
    if device == "cpu":
        feature = cpu_bf16_support()
        if feature:
            return "bf16-mixed", f"the CPU computes bf16 in hardware ({feature})"
        return "32-true", "the CPU has no bf16 instructions (emulated bf16 is slower than float32)"
    return "32-true", f"no mixed precision chosen automatically on {device}"


def resolve_precision(precision: str, channels_last: bool | str, accelerator: str = AUTO) -> PrecisionChoice:
    """``train.precision`` and ``train.channels_last`` as the run will use them; explicit values win."""
    device = training_device(accelerator)
    if precision == AUTO:
        chosen, reason = auto_precision(device)
    else:
        chosen, reason = precision, "set in the config (train.precision)"
    if channels_last == AUTO:
        mixed_on_gpu = device == "cuda" and chosen != "32-true"
        channels_last = device == "cpu" or mixed_on_gpu
    return PrecisionChoice(chosen, bool(channels_last), precision, reason)
