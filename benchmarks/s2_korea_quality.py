"""Benchmark 2: quality on the Sentinel-2 Korea chips, 15 minutes of CPU training per run (../shared/BENCHMARKS.md).

Data: ``../shared/datasets/s2_korea``, 40 pairs of 512 px chips. The protocol splits by chip index: the
pairs sorted by date and then by number (202309 0..19 are chips 0-19, 202412 0..19 are chips 20-39),
chips 0-29 train and 30-39 validate. The lists are ``configs/benchmark/s2_korea_split/{train,val}.txt``
with the index in ``chips.csv`` (``--write-split`` writes them; every run checks them against the rule).

**This split leaks.** Another helper found, preparing the data (``configs/s2_korea_prepare.yaml``), that
chips of the two dates image overlapping ground, so validation chips share ground with training chips.
The script measures how much (``split_leak``: the share of validation pixels that lie inside some
training chip's footprint) and, when the prepared chips of ``landseg prepare all
configs/s2_korea_prepare.yaml`` exist (``runs/prepared/s2_korea``), also trains ``configs/s2_korea.yaml``
on its spatially blocked split (5.12 km blocks with an overlap guard) under the same budget: the
honest figure.

Every run trains for the same wall-clock budget with the same seed, without validation images, and its
final weights are scored once by ``landseg.evaluate.evaluate`` (whole chips at native resolution, one
confusion matrix). Runs: plain cross-entropy against the tools for rare classes of
``configs/benchmark/s2_korea_imbalance.yaml`` (median-frequency weighted CE, focal loss, rare-class
oversampling, equibatch), compared on Building and Road IoU (0.6 % and 2.4 % of the pixels).

    nice -n 19 python benchmarks/s2_korea_quality.py          # 5 runs + 1 blocked-split run of 15 min: 1.5 h
    python benchmarks/s2_korea_quality.py --smoke --out /tmp/s   # plumbing check, not a measurement
"""

from __future__ import annotations

import argparse
import csv
import datetime
import io
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from common import (
    CONFIGS,
    REPO,
    RESULTS,
    add_settings_option,
    assignments,
    environment,
    format_number,
    load_recipe,
    markdown_table,
    recipe_path,
    score_table,
    train_and_score,
    write_json,
)

CLASSES = ["Building", "Road", "Field", "Forest", "Background"]
RARE = ["Building", "Road"]
SPLIT_FOLDER = CONFIGS / "s2_korea_split"
TRAIN_CHIPS, VAL_CHIPS = range(30), range(30, 40)
BUDGET_EPOCHS = 100_000
SMOKE = [
    "train.epochs=1",
    "train.steps_per_epoch=2",
    "train.batch_size=2",
    "train.crop_size=64",
    "train.val_tile=128",
    "data.input_scale=0.125",
]
SMOKE_CHIPS = (range(2), range(30, 32))


# -- the chip-index split ----------------------------------------------------------------------------------
def chip_order(config) -> list:
    """The catalog's pairs in chip-index order: by date, then by the chip's number."""
    from landseg.data.catalog import find_pairs

    samples = find_pairs(config.data.root, config.data.images, config.data.masks)
    return sorted(samples, key=lambda s: (s.fields["date"], int(s.fields["id"])))


def split_lists(config, train_chips=TRAIN_CHIPS, val_chips=VAL_CHIPS) -> dict[str, str]:
    """``{file name: text}`` of train.txt, val.txt and chips.csv for the chip-index split."""
    order = chip_order(config)
    if len(order) != 40:
        raise SystemExit(f"expected 40 s2_korea pairs under {config.data.root}, found {len(order)}")
    root = config.data.root
    paths = [s.image.relative_to(root).as_posix() for s in order]
    index = io.StringIO()
    writer = csv.writer(index, lineterminator="\n")
    writer.writerow(["chip", "date", "id", "image", "mask", "split"])
    for number, sample in enumerate(order):
        split = "train" if number in train_chips else "val" if number in val_chips else ""
        writer.writerow(
            [
                number,
                sample.fields["date"],
                sample.fields["id"],
                paths[number],
                sample.mask.relative_to(root).as_posix(),
                split,
            ]
        )
    return {
        "train.txt": "".join(f"{paths[i]}\n" for i in train_chips),
        "val.txt": "".join(f"{paths[i]}\n" for i in val_chips),
        "chips.csv": index.getvalue(),
    }


def write_split(folder: Path, lists: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in lists.items():
        temporary = folder / f".{name}.partial"
        temporary.write_text(text)
        temporary.replace(folder / name)


def check_split(folder: Path, lists: dict[str, str]) -> None:
    for name, text in lists.items():
        path = folder / name
        if not path.exists() or path.read_text() != text:
            raise SystemExit(
                f"{path} is missing or does not follow the chip-index rule; "
                "run python benchmarks/s2_korea_quality.py --write-split"
            )


def split_leak(config, folder: Path) -> dict:
    """Share of each validation chip's pixels inside the footprint of some training chip (same CRS)."""
    import rasterio
    from rasterio.transform import rowcol

    root = config.data.root
    footprints = {}
    for split in ("train", "val"):
        footprints[split] = []
        for line in (folder / f"{split}.txt").read_text().split():
            with rasterio.open(root / line) as src:
                footprints[split].append((line, src.bounds, src.transform, src.shape))
    per_chip, covered_total, pixels_total = {}, 0, 0
    for name, _, transform, shape in footprints["val"]:
        inside = np.zeros(shape, dtype=bool)
        for _, bounds, _, _ in footprints["train"]:
            top, left = rowcol(transform, bounds.left, bounds.top, op=round)
            bottom, right = rowcol(transform, bounds.right, bounds.bottom, op=round)
            inside[max(top, 0) : max(bottom, 0), max(left, 0) : max(right, 0)] = True
        per_chip[Path(name).stem] = round(float(inside.mean()), 4)
        covered_total += int(inside.sum())
        pixels_total += inside.size
    return {"val_pixels_inside_training_chips": round(covered_total / pixels_total, 4), "per_val_chip": per_chip}


def prepared_data_missing(recipe: Path) -> str | None:
    """Why the blocked split cannot run (its prepared chips, split lists or statistics are absent), or None."""
    config = load_recipe(recipe)
    root = Path(config.data.root)
    needed = [root / f for f in (config.data.split.files or {}).values()]
    needed += [
        Path(p)
        for p in (config.data.normalization.stats_file, config.data.schema_)
        if isinstance(p, (str, Path)) and str(p).endswith((".json", ".yaml"))
    ]
    absent = [str(p) for p in needed if not p.exists()]
    if not root.is_dir():
        absent.insert(0, str(root))
    return ", ".join(absent) or None


def scored_images(config) -> list[Path]:
    """The images of the ``val`` split, which the run scores."""
    from landseg.data.catalog import build_catalog

    return [sample.image for sample in build_catalog(config.data).split("val")]


# -- runs ------------------------------------------------------------------------------------------------
def run_variants(
    split_name: str, recipe: Path, base_overrides: list[str], variants: dict, args, out: Path, results: dict, save
) -> None:
    """Train and score every variant into ``results``, saving after each so a cut-off run keeps what it measured."""
    for name, change in variants.items():
        config = load_recipe(recipe, base_overrides + assignments(change))
        if args.adapt_to_val:
            config.data.unlabeled = [str(path) for path in scored_images(config)]
        print(f"[{datetime.datetime.now():%H:%M:%S}] {split_name}/{name}: training", file=sys.stderr)
        result = train_and_score(
            config,
            out / split_name / name,
            None if args.smoke else args.minutes,
            **({"overlap": 0.0, "engine": "torch"} if args.smoke else {}),
        )
        print(
            f"[{datetime.datetime.now():%H:%M:%S}] {split_name}/{name}: mIoU {result['miou']:.4f}, "
            + ", ".join(f"{c} {format_number(result['per_class_iou'][c])}" for c in RARE),
            file=sys.stderr,
        )
        results[name] = {"changed": assignments(change), **result}
        save()


def rare_table(runs: dict[str, dict]) -> str:
    """Building and Road IoU of every variant, and the change from plain cross-entropy."""
    plain = runs.get("ce")
    rows = []
    for name, run in runs.items():
        cells = [name, format_number(run["miou"])]
        for c in RARE:
            cells.append(format_number(run["per_class_iou"][c]))
            ours, theirs = run["per_class_iou"][c], plain["per_class_iou"][c] if plain else None
            cells.append("-" if ours is None or theirs is None else f"{ours - theirs:+.3f}")
        rows.append(cells)
    headers = ["variant", "mIoU", "Building", "Building vs CE", "Road", "Road vs CE"]
    return markdown_table(headers, rows, [False] + [True] * 5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=15.0, help="Training wall-clock budget per run.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--recipe", type=Path, default=recipe_path("s2_korea_chips"))
    parser.add_argument("--variants-file", type=Path, default=recipe_path("s2_korea_imbalance"))
    parser.add_argument("--variants", default=None, help="Comma-separated subset of the variants (default all).")
    parser.add_argument(
        "--blocked",
        choices=["none", "ce", "all", "only"],
        default="ce",
        help="Variants trained on the spatially blocked split, when the prepared data exists "
        "('only': the selected variants on the blocked split, and no chip-split runs).",
    )
    parser.add_argument("--blocked-recipe", type=Path, default=REPO / "configs" / "s2_korea.yaml")
    parser.add_argument("--write-split", action="store_true", help="Write the chip-index split files and stop.")
    parser.add_argument("--smoke", action="store_true", help="A few steps on 2 chips; not a measurement.")
    parser.add_argument("--out", type=Path, default=None, help="Folder for the runs (and, with --smoke, the JSON).")
    parser.add_argument(
        "--results", type=Path, default=None, help="JSON output (default benchmarks/results/s2_korea.json)."
    )
    add_settings_option(parser, "train.adapt.weight=1")
    parser.add_argument(
        "--adapt-to-val",
        action="store_true",
        help="Give each run its scored (val) images without labels as data.unlabeled, as `landseg train "
        "--adapt-to` would: adaptation to the place that is scored (issue 34).",
    )
    args = parser.parse_args(argv)
    recipe_config = load_recipe(args.recipe)
    if args.write_split:
        write_split(SPLIT_FOLDER, split_lists(recipe_config))
        print(f"wrote {SPLIT_FOLDER}")
        return 0
    if args.smoke and args.out is None:
        parser.error("--smoke needs --out (a smoke run writes nothing under benchmarks/results)")
    out = args.out or REPO / "runs" / "benchmarks" / f"s2_korea_{datetime.datetime.now():%Y%m%d_%H%M%S}"
    results_path = args.results or (out / "s2_korea.json" if args.smoke else RESULTS / "s2_korea.json")
    if args.smoke:
        split_folder = out / "split"
        write_split(split_folder, split_lists(recipe_config, *SMOKE_CHIPS))
    else:
        split_folder = SPLIT_FOLDER
        check_split(split_folder, split_lists(recipe_config))
    budget = [f"train.seed={args.seed}", "train.max_minutes=null"]
    budget += SMOKE if args.smoke else [f"train.epochs={BUDGET_EPOCHS}"]
    budget += args.settings
    files = {"train": str(split_folder / "train.txt"), "val": str(split_folder / "val.txt")}
    variants = yaml.safe_load(args.variants_file.read_text())["variants"]
    if args.variants:
        wanted = args.variants.split(",")
        unknown = set(wanted) - set(variants)
        if unknown:
            parser.error(f"unknown variants {sorted(unknown)}; known: {sorted(variants)}")
        variants = {name: variants[name] for name in wanted}
    started = time.perf_counter()
    payload = {
        "benchmark": "2. Quality: Sentinel-2 Korea chips",
        "smoke": args.smoke,
        "command": "python benchmarks/s2_korea_quality.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "budget_minutes": None if args.smoke else args.minutes,
        "seed": args.seed,
        "settings": args.settings,
        "adapt_to_val": args.adapt_to_val,
        "environment": environment(("torch", "lightning", "segmentation-models-pytorch", "timm")),
        "scoring": "final weights after the budget, landseg evaluate on the val split, whole chips, native resolution",
        "chip_split": {
            "rule": "pairs sorted by (date, number); chips 0-29 train, 30-39 val",
            "files": files,
            "train": (split_folder / "train.txt").read_text().split(),
            "val": (split_folder / "val.txt").read_text().split(),
            "leak": split_leak(recipe_config, split_folder),
        },
        "complete": False,
    }
    print(
        f"chip split: {payload['chip_split']['leak']['val_pixels_inside_training_chips']:.1%} of the validation "
        "pixels lie inside a training chip's footprint",
        file=sys.stderr,
    )

    def save() -> None:
        payload["wall_s"] = round(time.perf_counter() - started, 1)
        write_json(results_path, payload)

    chip_overrides = budget + assignments({"data.split.files": files})
    payload["variants"] = {}
    missing = prepared_data_missing(args.blocked_recipe)
    if args.blocked == "only" and missing:
        parser.error(
            f"--blocked only needs the prepared data: {missing} (landseg prepare all configs/s2_korea_prepare.yaml)"
        )
    if args.blocked != "only":
        run_variants("chip_split", args.recipe, chip_overrides, variants, args, out, payload["variants"], save)
    blocked = None
    if args.blocked != "none" and not missing:
        blocked_variants = variants if args.blocked in ("all", "only") else {"ce": variants.get("ce", {})}
        blocked = payload["blocked_split"] = {"recipe": str(args.blocked_recipe), "variants": {}}  # saved as it fills
        run_variants(
            "blocked_split", args.blocked_recipe, budget, blocked_variants, args, out, blocked["variants"], save
        )
    elif args.blocked != "none":
        blocked = {"skipped": f"no prepared data: {missing} (landseg prepare all configs/s2_korea_prepare.yaml)"}
    payload["blocked_split"] = blocked
    payload["complete"] = True
    payload["load_average_end"] = environment(())["load_average"]
    save()

    runs = {f"chip split, {n}": r for n, r in payload["variants"].items()}
    if blocked and "variants" in blocked:
        runs.update({f"blocked split, {n}": r for n, r in blocked["variants"].items()})
    print(score_table(runs, CLASSES))
    print()
    print(rare_table(payload["variants"] or (blocked or {}).get("variants", {})))
    env = payload["environment"]
    print(
        f"\nchip split leak: {payload['chip_split']['leak']['val_pixels_inside_training_chips']:.1%} of the "
        f"validation pixels lie inside training chips. Budget {payload['budget_minutes']} min per run, seed "
        f"{args.seed}. CPU: {env['cpu']} ({env['cpu_count']} cores), torch {env['torch']}, commit "
        f"{env['git_commit'][:10]}{' (dirty)' if env['git_dirty'] else ''}. Full numbers: {results_path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
