"""Benchmark 1: quality on the Dubai aerial images under a fixed CPU budget (see ../shared/BENCHMARKS.md).

Every recipe trains on tiles 1, 2, 3, 5, 6, 7 for the same wall-clock budget (``--minutes``, default 30;
data loading and augmentation inside the budget, reading the images before it and evaluation after it
outside) with the same seed, by ``landseg.train.run.train``. Training sees no validation images, so no
checkpoint is picked on tile 4: the weights at the end of the budget are scored once by
``landseg.evaluate.evaluate`` on tile 4 (whole images at native resolution, the project's predictor, one
confusion matrix over all labelled pixels).

Recipes are YAML files in ``configs/benchmark/`` merged over ``configs/dubai.yaml`` (see
``dubai_best.yaml``):

- baselines (``--baselines``): ``seed004_unet`` (seed 004's plain U-Net) and ``resnet18_default``
  (U-Net ResNet-18 from scratch, CE, AdamW, flips);
- candidates (``--recipes``, default ``dubai_best``): the best of them is ``best`` in the results, and
  the protocol asks it to beat both baselines;
- ``--ablation``: the variants of ``configs/benchmark/dubai_ablation.yaml`` (loss, sampling, pretrained
  encoder, SWA), each changing one factor of the best candidate, and the default loss and sampler together.

    nice -n 19 python benchmarks/dubai_quality.py                   # 3 runs of 30 min, about 2 h on 2 cores
    nice -n 19 python benchmarks/dubai_quality.py --ablation        # and 8 ablation runs, about 6.5 h in all
    python benchmarks/dubai_quality.py --smoke --ablation --out /tmp/d   # plumbing check, not a measurement
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import yaml
from common import (
    REPO,
    RESULTS,
    add_settings_option,
    assignments,
    environment,
    load_recipe,
    recipe_path,
    score_table,
    train_and_score,
    write_json,
)

CLASSES = ["Building", "Land", "Road", "Vegetation", "Water"]
BUDGET_EPOCHS = 100_000
"""Epochs far beyond any budget: the wall clock ends training, not the epoch count."""
SMOKE = [
    "data.split.train=[tile_1]",
    "train.epochs=1",
    "train.steps_per_epoch=2",
    "train.batch_size=2",
    "train.crop_size=64",
    "train.val_tile=128",
    "data.input_scale=0.0625",
]
"""A few steps on one tile, scored at a sixteenth of the resolution without overlap by torch (no ONNX export): checks the plumbing."""
SMOKE_EVALUATION = {"overlap": 0.0, "engine": "torch"}


def budget_overrides(args) -> list[str]:
    common = [f"train.seed={args.seed}", "train.max_minutes=null"]
    return common + (SMOKE if args.smoke else [f"train.epochs={BUDGET_EPOCHS}"])


def run(name: str, config, args, out: Path) -> dict:
    print(
        f"[{datetime.datetime.now():%H:%M:%S}] {name}: training "
        f"{'a few steps (smoke)' if args.smoke else f'for {args.minutes} min'}",
        file=sys.stderr,
    )
    result = train_and_score(
        config, out / name, None if args.smoke else args.minutes, **(SMOKE_EVALUATION if args.smoke else {})
    )
    print(
        f"[{datetime.datetime.now():%H:%M:%S}] {name}: mIoU {result['miou']:.4f} after {result['steps']} steps",
        file=sys.stderr,
    )
    return result


def swa_assignments(swa: dict, epochs: int) -> list[str]:
    """``train.swa`` whose ``cycles`` cycles fill the last ``last_fraction`` of ``epochs``."""
    cycles, fraction = int(swa.get("cycles", 3)), float(swa.get("last_fraction", 0.3))
    cycle_epochs = max(1, int(fraction * epochs / cycles))
    start = max(0, epochs - cycles * cycle_epochs)
    settings = {
        "start_epoch": start,
        "cycle_epochs": cycle_epochs,
        **{k: v for k, v in swa.items() if k not in ("cycles", "last_fraction")},
    }
    return assignments({"train.swa": settings})


def ablation(best_name: str, best: dict, args, out: Path, overrides: list[str], save) -> dict:
    """Runs the variants one by one; ``save(partial)`` after each keeps finished runs if the rest are cut off."""
    spec = yaml.safe_load(args.ablation_file.read_text())
    variants = spec["variants"]
    if args.variants:
        unknown = set(args.variants) - set(variants)
        if unknown:
            raise SystemExit(f"unknown ablation variants {sorted(unknown)}; known: {sorted(variants)}")
        variants = {name: variants[name] for name in args.variants}
    results = {}
    summary = {
        "from": best_name,
        "file": str(args.ablation_file.relative_to(REPO))
        if args.ablation_file.is_relative_to(REPO)
        else str(args.ablation_file),
        "variants": results,
    }
    for name, change in variants.items():
        change = dict(change)
        swa = change.pop("swa", None)
        extra = assignments(change) + (swa_assignments(swa, 1 if args.smoke else max(best["epochs"], 1)) if swa else [])
        config = load_recipe(recipe_path(best_name), overrides + extra)
        results[name] = {"changed": extra, **run(f"ablation_{name}", config, args, out)}
        save(summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="Training wall-clock budget per run.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--recipes",
        default="dubai_best",
        help="Comma-separated candidate recipes (names in "
        "configs/benchmark/ or YAML paths); the best of them is reported as best.",
    )
    parser.add_argument("--baselines", default="seed004_unet,resnet18_default", help="Comma-separated baselines.")
    parser.add_argument("--ablation", action="store_true", help="Also run the ablation variants from the best recipe.")
    parser.add_argument("--variants", default=None, help="Comma-separated subset of the ablation variants.")
    parser.add_argument("--ablation-file", type=Path, default=REPO / "configs" / "benchmark" / "dubai_ablation.yaml")
    parser.add_argument(
        "--best-from",
        type=Path,
        default=None,
        help="Take the best recipe (name, score, epochs) from an earlier results JSON instead of "
        "training the candidates again; with --ablation, runs only the variants.",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="A few steps on one tile, evaluated at quarter resolution; not a measurement.",
    )
    parser.add_argument("--out", type=Path, default=None, help="Folder for the runs (and, with --smoke, the JSON).")
    parser.add_argument(
        "--results", type=Path, default=None, help="JSON output (default benchmarks/results/dubai.json)."
    )
    add_settings_option(parser, "data.exclude=runs/dubai_audit/regions.csv")
    args = parser.parse_args(argv)
    args.variants = args.variants.split(",") if args.variants else None
    if args.smoke and args.out is None:
        parser.error("--smoke needs --out (a smoke run writes nothing under benchmarks/results)")
    out = args.out or REPO / "runs" / "benchmarks" / f"dubai_{datetime.datetime.now():%Y%m%d_%H%M%S}"
    results_path = args.results or (out / "dubai.json" if args.smoke else RESULTS / "dubai.json")
    overrides = budget_overrides(args) + args.settings
    environment_before = environment(("torch", "lightning", "segmentation-models-pytorch", "timm"))
    started = time.perf_counter()

    payload = {
        "benchmark": "1. Quality: Dubai aerial, fixed CPU budget",
        "smoke": args.smoke,
        "command": "python benchmarks/dubai_quality.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "budget_minutes": None if args.smoke else args.minutes,
        "seed": args.seed,
        "settings": args.settings,
        "split": {"train": ["tile_1", "tile_2", "tile_3", "tile_5", "tile_6", "tile_7"], "val": ["tile_4"]},
        "scoring": "final weights after the budget, landseg evaluate on tile 4, whole images, native resolution",
        "environment": environment_before,
        "complete": False,
        "baselines": {},
        "recipes": {},
        "best": None,
        "ablation": None,
    }

    def save() -> None:
        payload["wall_s"] = round(time.perf_counter() - started, 1)
        write_json(results_path, payload)

    if args.best_from:
        earlier = json.loads(args.best_from.read_text())
        if not earlier.get("best"):
            parser.error(f"{args.best_from}: no 'best' recipe in these results")
        best_name = earlier["best"]["name"]
        payload["best"] = {
            **earlier["best"],
            "from_results": str(args.best_from),
            "commit": earlier["environment"]["git_commit"],
        }
        payload["recipes"][best_name] = payload["best"]
    else:
        for group, names in (("baselines", args.baselines), ("recipes", args.recipes)):
            for name in filter(None, names.split(",")):
                config = load_recipe(recipe_path(name), overrides)
                payload[group][name] = {"recipe": str(recipe_path(name)), **run(name, config, args, out)}
                save()
        best_name = max(payload["recipes"], key=lambda n: payload["recipes"][n]["miou"] or 0.0)
        payload["best"] = {"name": best_name, **payload["recipes"][best_name]}
    # Without baselines in the run there is nothing to beat: None, not a vacuous True.
    payload["best_beats_baselines"] = (
        all((payload["best"]["miou"] or 0.0) > (b["miou"] or 0.0) for b in payload["baselines"].values())
        if payload["baselines"]
        else None
    )
    save()
    if args.ablation:

        def save_partial(summary: dict) -> None:
            payload["ablation"] = summary
            save()

        payload["ablation"] = ablation(best_name, payload["best"], args, out, overrides, save_partial)
    payload["complete"] = True
    payload["load_average_end"] = environment(())["load_average"]
    save()

    runs = {
        **{f"{n} (baseline)": r for n, r in payload["baselines"].items()},
        **{n + (" (best)" if n == best_name else ""): r for n, r in payload["recipes"].items()},
    }
    if payload["ablation"]:
        runs.update({f"{best_name} + {n}": r for n, r in payload["ablation"]["variants"].items()})
    print(score_table(runs, CLASSES))
    env = payload["environment"]
    print(
        f"\nbest {best_name}: mIoU {payload['best']['miou']:.4f}; beats both baselines: "
        f"{payload['best_beats_baselines']}. Budget {payload['budget_minutes']} min per run, seed {args.seed}. "
        f"CPU: {env['cpu']} ({env['cpu_count']} cores), torch {env['torch']}, commit {env['git_commit'][:10]}"
        f"{' (dirty)' if env['git_dirty'] else ''}. Full numbers: {results_path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
