"""Benchmark 4: training throughput (see ../shared/BENCHMARKS.md).

The network, loss and optimizer of the best Dubai recipe (``configs/benchmark/dubai_best.yaml``),
batch 8 of 256 px crops from the Dubai training tiles. Each round measures, in this order:

- (b) ``loop``: ``landseg.train.run.train`` itself: Lightning's trainer fed by landseg's data pipeline
  (crop sampling, D4 augmentation, normalization, collation) with the config's number of workers. A
  callback stamps every batch's start and end; a step is the time from one batch's end to the next
  one's, so it holds fetching the batch, the training step and Lightning's bookkeeping;
- (a) ``fixed``: the same network, loss and optimizer objects (kept from the run just finished) stepping
  on one batch held in memory (the first batch of the loop): forward, loss, backward, optimizer step,
  in the loop's precision and memory layout;
- (c) ``fastest``: the fastest numerically safe way to run the same network on this machine: a copy of
  (a)'s network in channels-last memory under bf16 autocast (losses in float32, as in training), with an
  optimizer of (a)'s kind and settings, on the same batch (``benchmarks/train_precision.py`` compares
  the four precision and layout combinations);
- ``loader``: the training DataLoader of the run alone, batch after batch, no model: the data
  pipeline's own cost, for the diagnosis.

The first ``--warmup`` steps of (a) and (b) are left out (oneDNN picks its kernels on the first calls).
Efficiency = (a) / (b), from the mean step times pooled over the rounds. Rounds run b a, a b, b a...
(odd rounds time (a) on the previous round's objects first), so a steady drift in the machine's load
cancels. ``default_vs_fastest`` = (c) / (b): how close the default recipe's own loop, with the precision
and layout ``train.precision: auto`` picks, comes to the fastest way to run its network. The share of the
loop's time inside the step hooks is a second, drift-free view of the same question: it comes from the
very same steps.

    nice -n 19 python benchmarks/train_throughput.py              # 4 rounds of 8 + 20 steps: about 6 minutes
    python benchmarks/train_throughput.py --smoke --out /tmp/t    # plumbing check, not a measurement
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

from common import RESULTS, environment, load_recipe, markdown_table, recipe_path, write_json

SMOKE = ["data.split.train=[tile_1]", "data.input_scale=0.125"]


def step_clock():
    """A Lightning callback that stamps batch starts and ends and keeps what (a) and the loader need."""
    import lightning as L

    class StepClock(L.Callback):
        def __init__(self):
            self.starts: list[float] = []
            self.ends: list[float] = []
            self.batch = None
            self.module = self.optimizer = self.loader = None

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.starts.append(time.perf_counter())
            if self.batch is None:
                self.batch = [tensor.clone() for tensor in batch]

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.ends.append(time.perf_counter())

        def on_train_end(self, trainer, pl_module):
            self.module, self.optimizer, self.loader = pl_module, trainer.optimizers[0], trainer.train_dataloader

    return StepClock()


def measure_loop(config, run_dir: Path, warmup: int) -> tuple[dict, object]:
    """(b): step times of ``train()`` after ``warmup`` steps, split into the batch's own hooks window
    (training step, backward, optimizer) and the gap before it (fetching the batch, bookkeeping)."""
    from landseg.train.run import train

    clock = step_clock()
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*validation_step.*but have no .val_dataloader.*")
        train(config, run_dir, progress=False, extra_callbacks=[clock])
    wall = time.perf_counter() - started
    ends, starts = clock.ends, clock.starts
    steps = [ends[i] - ends[i - 1] for i in range(warmup, len(ends))]
    inside = [ends[i] - starts[i] for i in range(warmup, len(ends))]
    gaps = [starts[i] - ends[i - 1] for i in range(warmup, len(ends))]
    return {
        "steps": len(steps),
        "mean_s": statistics.fmean(steps),
        "median_s": statistics.median(steps),
        "step_hooks_mean_s": statistics.fmean(inside),
        "between_steps_mean_s": statistics.fmean(gaps),
        "train_call_wall_s": round(wall, 1),
        "step_times_s": [round(s, 4) for s in steps],
    }, clock


def measure_fixed(clock, steps: int, warmup: int) -> dict:
    """(a): the loop's own network, loss and optimizer on the loop's first batch, held in memory."""
    import torch

    model, criterion, optimizer = clock.module.model, clock.module.criterion, clock.optimizer
    images, masks = clock.batch
    if clock.module.train_config.channels_last:  # as SegmentationModule.training_step does
        images = images.contiguous(memory_format=torch.channels_last)
    model.train()
    precision = clock.module.train_config.precision  # as Lightning's precision plugin runs the loop's steps
    dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float16
    mixed = precision in ("bf16-mixed", "16-mixed")
    times = time_steps(model, criterion, optimizer, images, masks, warmup + steps, dtype if mixed else None)[warmup:]
    return {
        "steps": len(times),
        "mean_s": statistics.fmean(times),
        "median_s": statistics.median(times),
        "threads": torch.get_num_threads(),
        "step_times_s": [round(t, 4) for t in times],
    }


def time_steps(model, criterion, optimizer, images, masks, steps: int, autocast_dtype) -> list[float]:
    """Seconds of each of ``steps`` training steps on one batch: forward (under autocast to ``autocast_dtype``
    unless None), float32 loss, backward, optimizer step."""
    import torch

    times = []
    for _ in range(steps):
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(images.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            logits = model(images)
        loss = criterion(logits.float(), masks)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - started)
    return times


def measure_fastest(clock, steps: int, warmup: int) -> dict:
    """(c): a copy of the loop's network in channels-last memory under bf16 autocast, on the loop's first batch."""
    import copy
    import inspect

    import torch

    model = copy.deepcopy(clock.module.model).to(memory_format=torch.channels_last).train()
    kind = type(clock.optimizer)
    accepted = inspect.signature(kind).parameters
    optimizer = kind(model.parameters(), **{k: v for k, v in clock.optimizer.defaults.items() if k in accepted})
    criterion = clock.module.criterion
    images, masks = clock.batch
    images = images.contiguous(memory_format=torch.channels_last)
    times = time_steps(model, criterion, optimizer, images, masks, warmup + steps, torch.bfloat16)[warmup:]
    return {
        "steps": len(times),
        "mean_s": statistics.fmean(times),
        "median_s": statistics.median(times),
        "precision": "bf16 autocast",
        "channels_last": True,
        "step_times_s": [round(t, 4) for t in times],
    }


def measure_loader(clock, batches: int) -> dict:
    """The run's training DataLoader alone: seconds per batch of crops, no model."""
    loader = clock.loader
    iterator = iter(loader)
    next(iterator)  # starts workers, if any
    started = time.perf_counter()
    done = 0
    for _ in range(batches):
        try:
            next(iterator)
        except StopIteration:
            break
        done += 1
    seconds = time.perf_counter() - started
    return {"batches": done, "mean_s": seconds / max(done, 1), "num_workers": getattr(loader, "num_workers", None)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="dubai_best", help="Recipe in configs/benchmark/ or a YAML path.")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20, help="Timed steps per measurement.")
    parser.add_argument("--warmup", type=int, default=8, help="Steps left out at the start of each measurement.")
    parser.add_argument("--rounds", type=int, default=None, help="Rounds of (a) and (b) (default 4; smoke 1).")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: the config's).")
    parser.add_argument(
        "--set", action="append", default=[], help="Extra config override, e.g. train.precision=bf16-mixed."
    )
    parser.add_argument("--smoke", action="store_true", help="A few steps of batch 2, 64 px; not a measurement.")
    parser.add_argument("--out", type=Path, default=None, help="Folder for the runs (and, with --smoke, the JSON).")
    parser.add_argument(
        "--results", type=Path, default=None, help="JSON output (default benchmarks/results/train_throughput.json)."
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.batch_size, args.crop, args.steps, args.warmup = 2, 64, 2, 1
        args.rounds = args.rounds or 1
        if args.out is None:
            parser.error("--smoke needs --out (a smoke run writes nothing under benchmarks/results)")
    args.rounds = args.rounds or 4
    results_path = args.results or (
        args.out / "train_throughput.json" if args.smoke else RESULTS / "train_throughput.json"
    )
    overrides = [
        f"train.batch_size={args.batch_size}",
        f"train.crop_size={args.crop}",
        "train.epochs=1",
        f"train.steps_per_epoch={args.warmup + args.steps}",
        "train.max_minutes=null",
        "data.split.val=[]",
        *(SMOKE if args.smoke else []),
        *([f"train.num_workers={args.workers}"] if args.workers is not None else []),
        *args.set,
    ]
    config = load_recipe(recipe_path(args.recipe), overrides)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    env = environment(("torch", "lightning", "segmentation-models-pytorch", "timm"))
    rounds, clock = [], None
    with tempfile.TemporaryDirectory(prefix="landseg-throughput-", dir=args.out) as scratch:
        for number in range(args.rounds):
            # Odd rounds time (a) first, on the previous round's objects: b a a b ... cancels a steady drift.
            fixed_first = number % 2 == 1 and clock is not None
            fastest = measure_fastest(clock, args.steps, args.warmup) if fixed_first else None
            fixed = measure_fixed(clock, args.steps, args.warmup) if fixed_first else None
            loop, clock = measure_loop(config, Path(scratch) / f"round_{number}", args.warmup)
            fixed = fixed or measure_fixed(clock, args.steps, args.warmup)
            fastest = fastest or measure_fastest(clock, args.steps, args.warmup)
            loader = measure_loader(clock, args.steps)
            rounds.append(
                {
                    "order": "fastest, fixed, loop" if fixed_first else "loop, fixed, fastest",
                    "load_average": os.getloadavg(),
                    "loop": loop,
                    "fixed": fixed,
                    "fastest": fastest,
                    "loader": loader,
                    "efficiency": round(fixed["mean_s"] / loop["mean_s"], 4),
                    "default_vs_fastest": round(fastest["mean_s"] / loop["mean_s"], 4),
                }
            )
            print(
                f"round {number}: fastest {fastest['mean_s']:.3f} s/step, "
                f"fixed {fixed['mean_s']:.3f} s/step, loop {loop['mean_s']:.3f} s/step "
                f"(hooks {loop['step_hooks_mean_s']:.3f}, between {loop['between_steps_mean_s']:.3f}), loader "
                f"{loader['mean_s']:.3f} s/batch, efficiency {rounds[-1]['efficiency']:.3f}",
                file=sys.stderr,
            )
    pooled = {
        key: statistics.fmean([t for r in rounds for t in r[key]["step_times_s"]])
        for key in ("fixed", "loop", "fastest")
    }
    between = statistics.fmean([r["loop"]["between_steps_mean_s"] for r in rounds])
    hooks = statistics.fmean([r["loop"]["step_hooks_mean_s"] for r in rounds])
    loader = statistics.fmean([r["loader"]["mean_s"] for r in rounds])
    efficiency = pooled["fixed"] / pooled["loop"]
    default_vs_fastest = pooled["fastest"] / pooled["loop"]
    trained = clock.module.train_config
    in_step_share = hooks / (hooks + between)
    payload = {
        "benchmark": "4. Training throughput",
        "smoke": args.smoke,
        "command": "python benchmarks/train_throughput.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "recipe": str(recipe_path(args.recipe)),
        "batch_size": args.batch_size,
        "crop": args.crop,
        "num_workers": config.train.num_workers,
        "steps": args.steps,
        "warmup": args.warmup,
        "environment": {**env, "load_average_end": environment(())["load_average"]},
        "loop_precision": trained.precision,
        "loop_channels_last": trained.channels_last,
        "fixed_step_s": round(pooled["fixed"], 6),
        "loop_step_s": round(pooled["loop"], 6),
        "fastest_step_s": round(pooled["fastest"], 6),
        "default_vs_fastest": round(default_vs_fastest, 4),
        "loop_step_hooks_s": round(hooks, 4),
        "loop_between_steps_s": round(between, 4),
        "loader_batch_s": round(loader, 4),
        "efficiency": round(efficiency, 4),
        "loop_share_in_step_hooks": round(in_step_share, 4),
        "target": 0.90,
        "meets_target": efficiency >= 0.90,
        "rounds": rounds,
        "config": config.to_yaml_dict(),
    }
    write_json(results_path, payload)
    rows = [
        [
            f"round {i}",
            f"{r['fixed']['mean_s']:.3f}",
            f"{r['loop']['mean_s']:.3f}",
            f"{r['fastest']['mean_s']:.3f}",
            f"{r['loop']['step_hooks_mean_s']:.3f}",
            f"{r['loop']['between_steps_mean_s']:.3f}",
            f"{r['loader']['mean_s']:.3f}",
            f"{r['efficiency']:.3f}",
            f"{r['default_vs_fastest']:.3f}",
        ]
        for i, r in enumerate(rounds)
    ]
    rows.append(
        [
            "pooled",
            f"{pooled['fixed']:.3f}",
            f"{pooled['loop']:.3f}",
            f"{pooled['fastest']:.3f}",
            f"{hooks:.3f}",
            f"{between:.3f}",
            f"{loader:.3f}",
            f"**{efficiency:.3f}**",
            f"**{default_vs_fastest:.3f}**",
        ]
    )
    print(
        markdown_table(
            [
                "",
                "(a) fixed batch s/step",
                "(b) training loop s/step",
                "(c) bf16 channels-last s/step",
                "(b) in step hooks",
                "(b) between steps",
                "loader alone s/batch",
                "efficiency a/b",
                "default vs fastest c/b",
            ],
            rows,
            [False] + [True] * 8,
        )
    )
    print(
        f"\nbatch {args.batch_size} x {args.crop}², {args.steps} timed steps after {args.warmup} warm-up per "
        f"measurement, {config.train.num_workers} DataLoader workers, {env['cpu']} ({env['cpu_count']} cores), "
        f"torch {env['torch']}, loop precision {trained.precision} "
        f"{'channels-last' if trained.channels_last else 'contiguous'}, "
        f"commit {env['git_commit'][:10]}{' (dirty)' if env['git_dirty'] else ''}; "
        f"target 0.90: {'met' if efficiency >= 0.90 else 'NOT met'}. Within the loop, {in_step_share:.1%} of the "
        "time is spent in the step's hooks (training step, backward, optimizer), the rest fetching batches and "
        "in Lightning's bookkeeping between them."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
