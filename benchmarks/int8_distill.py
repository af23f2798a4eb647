"""Quantization-aware fine-tuning by distillation: can an int8 model keep 99.5 % of its fp32 classes? (issue 35)

Post-training quantization of the Dubai model keeps at most 95-98 % of its fp32 classes (``int8_sensitivity.py``).
This tries the design left: a copy of the network (the student) is fine-tuned with simulated int8 to
reproduce the fp32 network's own logits (the teacher), then quantized by landseg's recipe
(``predict.quantize``: QDQ, 7-bit per-channel weights, uint8 activations, first and last convolutions
in fp32). The simulated int8 is ONNX Runtime's, point for point:

- batch norms are folded into the convolution before them (the student keeps its modules: each batch norm
  becomes the identity plus a bias, which ONNX Runtime folds exactly as it folds any batch norm);
- every convolution's weights but the first's and last's go through symmetric per-channel fake quantization
  on ONNX Runtime's 7-bit grid (``reduce_range``: -64..64, scale = max |w| / 64); the weights are left on
  that grid at the end, so ONNX Runtime's own quantization reproduces them exactly;
- every convolution's input but the first's goes through uint8 fake quantization with MinMax ranges
  calibrated on the same tiles (``torch.ao.quantization.FakeQuantize``), frozen before fine-tuning.

The guard is then measured as landseg measures it (``measure_guard``): the int8 student against the
original fp32 network on held-out tile-4 images, so the student is judged by agreement with the model
users have. Rows (one JSON, written as they come): the recipe on the original network; the fp32 student
against the original; the int8 student against the original.

    python benchmarks/int8_distill.py CHECKPOINT --minutes 8 --results benchmarks/results/int8_distill.json
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import REPO, environment, write_json
from torch import nn
from torch.ao.quantization import FakeQuantize, MinMaxObserver
from torch.nn.utils import parametrize

WEIGHT_LEVELS = 64
"""ONNX Runtime's reduced int8 weight range is -64..64 (``ONNX_INT_TYPE_REDUCED_RANGE``)."""


class SymmetricWeightQuant(nn.Module):
    """Per-output-channel symmetric fake quantization on ONNX Runtime's 7-bit grid (straight-through gradient)."""

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        scale = weight.detach().abs().amax(dim=tuple(range(1, weight.dim()))).clamp_min(1e-12) / WEIGHT_LEVELS
        zero = torch.zeros(len(scale), dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, -WEIGHT_LEVELS, WEIGHT_LEVELS)


def convolutions_in_call_order(network: nn.Module, example: torch.Tensor) -> tuple[list[nn.Conv2d], list]:
    """The network's convolutions in the order a forward pass calls them, and (convolution, batch norm)
    pairs where the batch norm takes that convolution's output directly."""
    calls: list[nn.Conv2d] = []
    produced: dict[int, tuple[nn.Conv2d, torch.Tensor]] = {}  # the output kept alive: its id stays its own
    pairs = []

    def after_conv(module, _inputs, output):
        calls.append(module)
        produced[id(output)] = (module, output)

    def before_norm(module, inputs):
        source = produced.get(id(inputs[0]))
        if source is not None:
            pairs.append((source[0], module))

    handles = [m.register_forward_hook(after_conv) for m in network.modules() if isinstance(m, nn.Conv2d)]
    handles += [m.register_forward_pre_hook(before_norm) for m in network.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        network(example)
    for handle in handles:
        handle.remove()
    return calls, pairs


@torch.no_grad()
def fold_batch_norms(pairs) -> None:
    """Fold each batch norm into its convolution, leaving the batch norm as the identity plus a bias."""
    for conv, norm in pairs:
        factor = norm.weight / torch.sqrt(norm.running_var + norm.eps)
        conv.weight.mul_(factor.reshape(-1, *([1] * (conv.weight.dim() - 1))))
        bias = norm.bias + factor * ((conv.bias if conv.bias is not None else 0) - norm.running_mean)
        if conv.bias is not None:
            conv.bias.zero_()
        norm.running_mean.zero_()
        norm.running_var.fill_(1 - norm.eps)
        norm.weight.fill_(1)
        norm.bias.copy_(bias)
        norm.weight.requires_grad_(False)


def simulate_int8(network: nn.Module, example: torch.Tensor) -> tuple[list[FakeQuantize], list]:
    """Fold batch norms and attach fake quantization as ONNX Runtime's recipe quantizes; returns the
    activation quantizers (observing, not yet quantizing) and their hooks."""
    convolutions, pairs = convolutions_in_call_order(network, example)
    fold_batch_norms(pairs)
    quantizers, hooks = [], []
    for index, conv in enumerate(convolutions):
        if 0 < index < len(convolutions) - 1:
            parametrize.register_parametrization(conv, "weight", SymmetricWeightQuant())
        if index > 0:
            quantizer = FakeQuantize(
                observer=MinMaxObserver, quant_min=0, quant_max=255, dtype=torch.quint8, qscheme=torch.per_tensor_affine
            )
            quantizer.disable_fake_quant()
            hooks.append(conv.register_forward_pre_hook(lambda _m, inputs, q=quantizer: (q(inputs[0]),)))
            quantizers.append(quantizer)
    return quantizers, hooks


def distill(
    teacher: nn.Module, tiles: np.ndarray, calibration: np.ndarray, minutes: float, lr: float, crop: int, batch: int
) -> tuple[nn.Module, dict]:
    """A student fine-tuned with simulated int8 to reproduce ``teacher``'s logits on crops of ``tiles``."""
    student = copy.deepcopy(teacher).float().eval()  # eval throughout: batch norms folded, quantizers frozen
    quantizers, hooks = simulate_int8(student, torch.from_numpy(calibration[:1, :, :128, :128]))
    with torch.no_grad():
        for tile in calibration:
            student(torch.from_numpy(tile[None]))
    for quantizer in quantizers:
        quantizer.disable_observer()
        quantizer.enable_fake_quant()
    with torch.no_grad():
        targets = torch.cat([teacher(torch.from_numpy(tiles[i : i + 4])) for i in range(0, len(tiles), 4)])
    inputs = torch.from_numpy(tiles)
    parameters = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=0.0)
    rng = np.random.default_rng(0)
    losses, steps, started = [], 0, time.perf_counter()
    while time.perf_counter() - started < minutes * 60:
        index = rng.integers(len(tiles), size=batch)
        top, left = rng.integers(inputs.shape[-1] - crop + 1, size=2)
        window = (slice(None), slice(top, top + crop), slice(left, left + crop))
        x, y = inputs[index][window[0], :, window[1], window[2]], targets[index][:, :, window[1], window[2]]
        if rng.random() < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        loss = nn.functional.mse_loss(student(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        steps += 1
        if steps % 25 == 0:
            print(f"step {steps}: distillation loss {np.mean(losses[-25:]):.4f}", file=sys.stderr)
    for module in student.modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    for hook in hooks:
        hook.remove()
    return student, {
        "steps": steps,
        "minutes": round((time.perf_counter() - started) / 60, 2),
        "loss_first_25": round(float(np.mean(losses[:25])), 5) if losses else None,
        "loss_last_25": round(float(np.mean(losses[-25:])), 5) if losses else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "dubai.yaml")
    parser.add_argument("--calibration-tiles", type=int, default=32)
    parser.add_argument("--training-tiles", type=int, default=160, help="Tiles of training images fine-tuned on.")
    parser.add_argument("--guard-images", type=int, default=3, help="Held-out images the agreement is measured on.")
    parser.add_argument("--minutes", default="8", help="Fine-tuning budgets, comma-separated: one student each.")
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results" / "int8_distill.json")
    args = parser.parse_args(argv)

    from landseg.checkpoint import LoadedModel
    from landseg.config import load_config
    from landseg.predict.models import load_model, model_file
    from landseg.predict.networks import Member, OnnxNetwork
    from landseg.predict.onnx import cached_export, export_onnx
    from landseg.predict.quantize import calibration_tiles, measure_guard, quantize_graph
    from landseg.train.calibrate import read_split

    torch.manual_seed(0)
    config = load_config(args.config)
    loaded = load_model(args.checkpoint)
    card, weights = loaded.card, model_file(args.checkpoint)
    side = card.tile_size
    fp32_path = cached_export(weights, side, load=lambda: load_model(args.checkpoint))
    images = read_split(config, "train", card, weights, "fine-tune int8 on", False, limit=args.training_tiles // 2)
    held_out = read_split(config, "val", card, weights, "measure int8 on", False)[: args.guard_images]
    pool = np.stack(calibration_tiles(card, [item.image for item in images], side, args.training_tiles))
    calibration = pool[: args.calibration_tiles]
    fp32 = Member(card, OnnxNetwork(fp32_path), weights, engine="onnxruntime")
    results = {"checkpoint": str(args.checkpoint), "environment": environment(("onnxruntime", "onnx")), "rows": []}
    results["protocol"] = {
        "training_tiles": len(pool),
        "calibration_tiles": len(calibration),
        "guard_images": [item.name for item in held_out],
        "lr": args.lr,
        "crop": args.crop,
        "batch": args.batch,
        "loss": "MSE between the student's fake-quantized logits and the fp32 network's",
    }

    def record(label: str, guard: dict, **extra) -> None:
        row = {
            "setting": label,
            "agreement": round(guard["agreement"], 5),
            "miou_change": round(guard["miou_change"], 4),
        }
        results["rows"].append(row | extra)
        print(results["rows"][-1], file=sys.stderr)
        write_json(args.results, results)

    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        recipe = quantize_graph(fp32_path, scratch / "recipe.onnx", list(calibration))
        record("the recipe on the original network", measure_guard(fp32, _int8(card, recipe, weights), held_out))
        for minutes in [float(m) for m in args.minutes.split(",")]:
            student, fitting = distill(loaded.network, pool, calibration, minutes, args.lr, args.crop, args.batch)
            student_path = export_onnx(LoadedModel(card, student, weights), scratch / f"student_{minutes}.onnx")
            student_fp32 = Member(card, OnnxNetwork(student_path), weights, engine="onnxruntime")
            record(f"fp32 student, {minutes:g} min", measure_guard(fp32, student_fp32, held_out), **fitting)
            quantized = quantize_graph(student_path, scratch / f"student_{minutes}.int8.onnx", list(calibration))
            record(f"int8 student, {minutes:g} min", measure_guard(fp32, _int8(card, quantized, weights), held_out))
    return 0


def _int8(card, path: Path, weights: Path):
    from landseg.predict.networks import Member, OnnxNetwork

    return Member(card, OnnxNetwork(path), weights, engine="onnxruntime", precision="int8")


if __name__ == "__main__":
    raise SystemExit(main())
