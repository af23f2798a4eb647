"""Which precision and memory layout train fastest on this machine (the basis of ``train.precision: auto``
and ``train.channels_last: auto``).

The default recipe's network (U-Net, EfficientNet-Lite0 encoder, 6 classes), its focal loss and AdamW,
stepping on one batch of 8 random 256 px crops held in memory: forward, loss (float32, as in training),
backward, optimizer step. Four ways to run it, each on its own copy of the same initial weights:
fp32 and bf16 autocast, each with contiguous (NCHW) and channels-last (NHWC) memory. The combinations
take turns, round after round, so that a drift in the machine's load touches all of them alike; the
first ``--warmup`` steps of each (oneDNN picks its kernels there) are left out. Each step's wall time and
its CPU time (``time.process_time``) are kept: on a machine shared with other work, the CPU time of a
single-threaded run (``--threads 1``) is the steadier measure of what each way costs.

    python benchmarks/train_precision.py --rounds 2 --steps 4    # writes benchmarks/results/train_precision.json
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

from common import RESULTS, environment, markdown_table, write_json

COMBINATIONS = {
    "fp32": (False, False),
    "fp32_channels_last": (False, True),
    "bf16": (True, False),
    "bf16_channels_last": (True, True),
}


def build(batch: int, crop: int, device: str):
    import torch

    from landseg.losses import FocalConfig, build_loss
    from landseg.models import ModelSpec, build_model

    torch.manual_seed(0)
    network = build_model(
        ModelSpec(arch="unet", encoder="tu-tf_efficientnet_lite0", encoder_weights=None, in_channels=3, num_classes=6)
    ).to(device)
    criterion = build_loss(FocalConfig(gamma=2.0), 6)
    images = torch.randn(batch, 3, crop, crop, device=device)
    masks = torch.randint(0, 6, (batch, crop, crop), device=device)
    return network, criterion, images, masks


def runner(network, criterion, images, masks, bf16: bool, channels_last: bool):
    """One way to run the network: its own copy of the weights and its own optimizer; returns ``step()``."""
    import torch

    model = copy.deepcopy(network).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    device = images.device.type

    def step() -> tuple[float, float]:
        started, cpu = time.perf_counter(), time.process_time()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            logits = model(images)
        loss = criterion(logits.float(), masks)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - started, time.process_time() - cpu

    return step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4, help="Timed steps per combination and round.")
    parser.add_argument("--warmup", type=int, default=2, help="Steps left out before each combination's first round.")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice).")
    parser.add_argument("--results", type=Path, default=RESULTS / "train_precision.json")
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    env = environment(("torch", "segmentation-models-pytorch", "timm"))
    from landseg.train.precision import cpu_bf16_support

    network, criterion, images, masks = build(args.batch_size, args.crop, args.device)
    steps = {name: runner(network, criterion, images, masks, *flags) for name, flags in COMBINATIONS.items()}
    for step in steps.values():
        for _ in range(args.warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in COMBINATIONS}
    cpu: dict[str, list[float]] = {name: [] for name in COMBINATIONS}
    for number in range(args.rounds):
        order = list(COMBINATIONS) if number % 2 == 0 else list(reversed(COMBINATIONS))
        for name in order:
            for _ in range(args.steps):
                wall, used = steps[name]()
                times[name].append(wall)
                cpu[name].append(used)
        print(
            f"round {number} (wall s, CPU s): "
            + ", ".join(
                f"{n} {statistics.fmean(times[n][-args.steps :]):.3f} {statistics.fmean(cpu[n][-args.steps :]):.3f}"
                for n in order
            ),
            file=sys.stderr,
        )
    means = {name: statistics.fmean(values) for name, values in times.items()}
    cpu_means = {name: statistics.fmean(values) for name, values in cpu.items()}
    baseline = means["fp32"]
    payload = {
        "benchmark": "training precision and memory layout",
        "device": args.device,
        "command": "python benchmarks/train_precision.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "network": "unet / tu-tf_efficientnet_lite0, 6 classes, focal loss, AdamW",
        "batch_size": args.batch_size,
        "crop": args.crop,
        "steps_per_round": args.steps,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "threads": torch.get_num_threads(),
        "cpu_bf16": cpu_bf16_support(),
        "environment": {**env, "load_average_end": environment(())["load_average"]},
        "mean_step_s": {name: round(value, 4) for name, value in means.items()},
        "speedup_vs_fp32": {name: round(baseline / value, 3) for name, value in means.items()},
        "channels_last_gain": {
            "fp32": round(means["fp32"] / means["fp32_channels_last"], 3),
            "bf16": round(means["bf16"] / means["bf16_channels_last"], 3),
        },
        "mean_step_cpu_s": {name: round(value, 4) for name, value in cpu_means.items()},
        "cpu_speedup_vs_fp32": {name: round(cpu_means["fp32"] / value, 3) for name, value in cpu_means.items()},
        "step_times_s": {name: [round(t, 4) for t in values] for name, values in times.items()},
        "step_cpu_s": {name: [round(t, 4) for t in values] for name, values in cpu.items()},
    }
    write_json(args.results, payload)
    rows = [
        [
            name,
            f"{means[name]:.3f}",
            f"{baseline / means[name]:.2f}x",
            f"{cpu_means[name]:.3f}",
            f"{cpu_means['fp32'] / cpu_means[name]:.2f}x",
        ]
        for name in COMBINATIONS
    ]
    print(markdown_table(["run as", "wall s/step", "vs fp32", "CPU s/step", "vs fp32"], rows, [False] + [True] * 4))
    print(
        f"\nbatch {args.batch_size} x {args.crop}², {args.rounds} rounds of {args.steps} steps, "
        f"{env['cpu']} ({env['cpu_count']} cores), load average {env['load_average']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
