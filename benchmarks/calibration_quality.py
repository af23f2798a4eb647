"""Calibration on real data (issue 33): ECE before and after the fitted temperature, two seeds each.

Two data sets, each trained with its default recipe for ``--minutes`` of wall clock (default 15) per seed
and no validation during training, as benchmarks 1 and 2 train:

- ``dubai``: benchmark 1's default recipe (``dubai_half_scale`` with focal loss and equibatch crops, the
  0.527 run of BENCHMARKS.md) on tiles 1, 2, 3, 5, 6, 7, scored on tile 4;
- ``s2_korea``: ``configs/s2_korea.yaml`` (focal, equibatch) on the spatially blocked split, scored on its
  val chips (``landseg prepare all configs/s2_korea_prepare.yaml`` first).

The temperature is fitted by ``landseg calibrate`` on a calibration split carved from the training images
(Dubai: one image of each training tile; Korea: the chips of one place in seven, both dates of a place
together), which training then does not see, so that nothing is fitted on the scored images. The held-out
images are the same for both seeds. ``landseg evaluate`` then scores the scored split once and reports
the calibration without the temperature (``before``) and with it (``after``), top-label ECE over 15
equal-width bins, classwise ECE, Brier score; the class maps and so the mIoU are the same for both.

    python benchmarks/calibration_quality.py                        # 4 runs of 15 min, about 1 h 10
    python benchmarks/calibration_quality.py --smoke --out /tmp/c   # plumbing check, not a measurement
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from common import REPO, RESULTS, environment, load_recipe, markdown_table, write_json

DATASETS = ("dubai", "s2_korea")
DUBAI_DEFAULT = ["train.loss={name: focal, gamma: 2.0}", "train.sampling={name: equibatch}"]
SMOKE = ["train.epochs=1", "train.steps_per_epoch=2", "train.batch_size=2", "train.crop_size=64"]
PLACES_PER_CALIBRATION_PLACE = 7
"""Korea: one place in seven goes to the calibration split."""


def dubai_config(smoke: bool):
    overrides = DUBAI_DEFAULT + ([*SMOKE, "data.input_scale=0.0625", "train.val_tile=128"] if smoke else [])
    return load_recipe(REPO / "configs" / "benchmark" / "dubai_half_scale.yaml", overrides)


def s2_config(smoke: bool):
    from landseg.config import load_config

    return load_config(REPO / "configs" / "s2_korea.yaml", SMOKE if smoke else [])


def dubai_held_out(train: list) -> set[Path]:
    """The first image of each training tile (in file order)."""
    first: dict[str, Path] = {}
    for sample in sorted(train, key=lambda s: s.image):
        first.setdefault(sample.fields["tile"], sample.image)
    return set(first.values())


def s2_held_out(train: list) -> set[Path]:
    """Every chip of one place in seven, a place being a patch of either date (``202309_patchN_14`` and
    ``202412_patchN_14`` are one place)."""
    places = sorted({re.sub(r"^\d{6}_", "", s.name).split("_r")[0] for s in train})
    chosen = set(np.random.default_rng(0).permutation(places)[: max(1, len(places) // PLACES_PER_CALIBRATION_PLACE)])
    return {s.image for s in train if re.sub(r"^\d{6}_", "", s.name).split("_r")[0] in chosen}


def with_calibration_split(config, run_dir: Path, held_out_rule, smoke: bool):
    """``config`` with file lists: ``train`` without the held-out images (duplicates kept: Korea lists its
    rare chips twice), ``calibration`` the held-out ones, ``val`` the scored split as it was."""
    from landseg.data.catalog import build_catalog

    catalog = build_catalog(config.data)
    train, scored = catalog.split("train"), catalog.split("val")
    held = held_out_rule(train)
    lists = {
        "train": [s for s in train if s.image not in held],
        "calibration": list({s.image: s for s in train if s.image in held}.values()),
        "val": scored,
    }
    if smoke:
        lists = {name: samples[:2] for name, samples in lists.items()}
    run_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, samples in lists.items():
        path = run_dir / f"{name}.txt"
        path.write_text("".join(f"{s.image.relative_to(catalog.root).as_posix()}\n" for s in samples))
        files[name] = str(path)
    config = config.model_copy(deep=True)
    config.data.split.field, config.data.split.train, config.data.split.val = None, None, None
    config.data.split.files = files
    return config, {name: len(samples) for name, samples in lists.items()}


def run_one(dataset: str, seed: int, args) -> dict:
    from landseg.checkpoint import read_checkpoint
    from landseg.evaluate import evaluate
    from landseg.predict import PredictOptions, load_ensemble
    from landseg.train.calibrate import calibrate_on_split
    from landseg.train.run import train

    base = dubai_config(args.smoke) if dataset == "dubai" else s2_config(args.smoke)
    rule = dubai_held_out if dataset == "dubai" else s2_held_out
    run_dir = args.out / f"{dataset}_seed{seed}"
    config, counts = with_calibration_split(base, run_dir, rule, args.smoke)
    config.train.seed = seed
    config.train.onnx_export = False
    if not args.smoke:
        config.train.max_minutes, config.train.epochs = args.minutes, 100_000
    print(f"[{datetime.datetime.now():%H:%M:%S}] {dataset} seed {seed}: training {counts}", file=sys.stderr)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*validation_step.*but have no .val_dataloader.*")
        trained = train(without_validation_split(config), run_dir / "train", progress=False)
    train_wall = time.perf_counter() - started
    checkpoint = trained.last_checkpoint
    fitted = calibrate_on_split([checkpoint], config, "calibration", progress=False)[checkpoint]
    started = time.perf_counter()
    options = PredictOptions(overlap=0.0) if args.smoke else PredictOptions()
    metrics = evaluate(
        load_ensemble([checkpoint], engine="torch" if args.smoke else "auto"),
        config,
        "val",
        run_dir / "eval",
        options,
        overlays=0,
        progress=False,
    ).metrics
    after, before = metrics["calibration"], metrics["calibration"]["before"]
    keep = ("pixels", "ece", "mean_classwise_ece", "classwise_ece", "brier", "reliability")
    result = {
        "seed": seed,
        "images": counts,
        "steps": int(read_checkpoint(checkpoint).get("global_step", 0)),
        "train_wall_s": round(train_wall, 1),
        "eval_wall_s": round(time.perf_counter() - started, 1),
        "miou": metrics["miou"],
        "temperature": fitted["temperature"],
        "fitted_on": fitted["fitted_on"],
        "calibration_split": {k: fitted[k] for k in ("ece", "brier", "nll")},
        "scored_before": {k: before[k] for k in keep},
        "scored_after": {k: after[k] for k in keep},
        "report": str(run_dir / "eval" / "report.html"),
        "checkpoint": str(checkpoint),
    }
    print(
        f"[{datetime.datetime.now():%H:%M:%S}] {dataset} seed {seed}: T {result['temperature']:.3f}, "
        f"ECE {before['ece']:.4f} -> {after['ece']:.4f}, mIoU {metrics['miou']:.4f}, {result['steps']} steps",
        file=sys.stderr,
    )
    return result


def without_validation_split(config):
    """Training sees only ``train``: neither the calibration images nor the scored ones."""
    copy = config.model_copy(deep=True)
    copy.data.split.files = {"train": config.data.split.files["train"]}
    return copy


def table(payload: dict) -> str:
    rows = []
    for dataset, runs in payload["runs"].items():
        for run in runs.values():
            before, after = run["scored_before"], run["scored_after"]
            rows.append(
                [
                    dataset,
                    run["seed"],
                    f"{run['temperature']:.3f}",
                    f"{before['ece']:.4f}",
                    f"{after['ece']:.4f}",
                    f"{before['mean_classwise_ece']:.4f}",
                    f"{after['mean_classwise_ece']:.4f}",
                    f"{before['brier']:.4f}",
                    f"{after['brier']:.4f}",
                    f"{run['miou']:.3f}",
                    run["steps"],
                ]
            )
    headers = ["data", "seed", "T", "ECE before", "ECE after", "classwise before", "classwise after"]
    headers += ["Brier before", "Brier after", "mIoU", "steps"]
    return markdown_table(headers, rows, [False, True, *[True] * 9])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--smoke", action="store_true", help="A few steps on a few images: checks the plumbing.")
    parser.add_argument("--out", type=Path, default=REPO.parent / "runs" / "calibration")
    parser.add_argument("--results", type=Path, default=RESULTS / "calibration.json")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    payload = {
        "benchmark": "calibration (issue 33)",
        "smoke": args.smoke,
        "command": " ".join(["python", *sys.argv]),
        "budget_minutes": None if args.smoke else args.minutes,
        "binning": "top-label ECE, 15 equal-width bins of [0, 1]; classwise ECE the mean over classes",
        "environment": environment(),
        "runs": {},
        "complete": False,
    }
    results = args.results if not args.smoke else args.out / "calibration.json"
    for dataset in args.datasets.split(","):
        for seed in seeds:
            payload["runs"].setdefault(dataset, {})[f"seed{seed}"] = run_one(dataset, seed, args)
            write_json(results, payload)  # saved as it fills: a cut-off run keeps what it measured
    payload["complete"] = True
    payload["load_average_end"] = list(os.getloadavg())
    write_json(results, payload)
    print(table(payload))


if __name__ == "__main__":
    main()
