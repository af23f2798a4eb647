"""Active learning on Dubai (issue 33): windows chosen by ``landseg suggest`` against as many at random.

Start: the masks of tiles 1 and 2. Pool: the images of tiles 3, 5, 6 and 7, whose labels a window at a
time are revealed when a window is chosen. Each round adds ``--budget`` windows of ``--size`` px (native
pixels) to the labelled set, chosen either

- ``suggest``: by the previous round's model, as ``landseg suggest`` chooses (the pool mapped with an
  entropy layer by the one inference core, windows ranked by mean uncertainty under the spacing rule,
  windows already labelled left out), or
- ``random``: uniformly among the pool's windows not yet labelled (the same grid and the same rule on
  windows cut short at an image's edge),

and a model is trained from scratch (ImageNet encoder) for ``--minutes`` on what is labelled then (the
default recipe, as benchmark 1, without validation), and scored on tile 4 by ``evaluate``. Round 0 (tiles
1 and 2 only) is shared by both strategies of a seed. A revealed window is the window's pixels of the
image's mask; the rest of a pool image stays unlabelled (the mask's ignore colour), so training crops see
labels only inside chosen windows. The curve is mIoU against labelled pixels (native resolution).

    python benchmarks/active_learning.py                        # 2 seeds x (1 + 2 x rounds) runs of 4 min
    python benchmarks/active_learning.py --smoke --out /tmp/al  # plumbing check, not a measurement
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from common import DATASETS, REPO, RESULTS, environment, load_recipe, markdown_table, write_json

START_TILES = ["tile_1", "tile_2"]
POOL_TILES = ["tile_3", "tile_5", "tile_6", "tile_7"]
DUBAI_DEFAULT = ["train.loss={name: focal, gamma: 2.0}", "train.sampling={name: equibatch}"]
SMOKE = ["train.epochs=1", "train.steps_per_epoch=2", "train.batch_size=2", "train.crop_size=64"]
UNLABELLED = (0x9B, 0x9B, 0x9B)
"""The Dubai masks' own "Unlabeled" colour: pixels of it are ignored by training (schema ``dubai``)."""


def base_config(args):
    extra = [*SMOKE, "data.input_scale=0.0625", "train.val_tile=128"] if args.smoke else []
    config = load_recipe(REPO / "configs" / "benchmark" / "dubai_half_scale.yaml", DUBAI_DEFAULT + extra)
    config.data.root = DATASETS / "dubai"
    return config


def pool_images(args) -> list[Path]:
    images = [p for tile in POOL_TILES for p in sorted((DATASETS / "dubai" / tile / "images").glob("*.jpg"))]
    return images[:: max(1, len(images) // 3)][:3] if args.smoke else images


def mask_of(image: Path) -> Path:
    return image.parent.parent / "masks" / f"{image.stem}.png"


def grid_windows(images: list[Path], size: int) -> list[tuple[Path, int, int, int, int]]:
    """``(image, row_off, col_off, height, width)`` of every window ``landseg suggest`` would offer on an
    image without no-data: the grid from the top-left, edge windows kept when at least half a window."""
    from PIL import Image

    windows = []
    for image in images:
        with Image.open(image) as opened:
            width, height = opened.size
        full = min(size, height) * min(size, width)
        for top in range(0, height, size):
            for left in range(0, width, size):
                h, w = min(size, height - top), min(size, width - left)
                if h * w >= 0.5 * full:
                    windows.append((image, top, left, h, w))
    return windows


def write_labelled_set(root: Path, chosen: list[tuple[Path, int, int, int, int]]) -> int:
    """A data root of links to tiles 1 and 2 and to the pool images with chosen windows, whose masks keep
    only those windows' labels; gives the labelled pixels of it all."""
    from PIL import Image

    labelled = 0
    for tile in START_TILES:
        for folder in ("images", "masks"):
            target = root / tile / folder
            target.mkdir(parents=True, exist_ok=True)
            for source in sorted((DATASETS / "dubai" / tile / folder).iterdir()):
                (target / source.name).symlink_to(source)
                if folder == "masks":
                    labelled += count_labelled(np.asarray(Image.open(source).convert("RGB")))
    by_image: dict[Path, list] = {}
    for window in chosen:
        by_image.setdefault(window[0], []).append(window)
    for image, windows in by_image.items():
        tile = image.parent.parent.name
        (root / tile / "images").mkdir(parents=True, exist_ok=True)
        (root / tile / "masks").mkdir(parents=True, exist_ok=True)
        (root / tile / "images" / image.name).symlink_to(image)
        full = np.asarray(Image.open(mask_of(image)).convert("RGB"))
        revealed = np.empty_like(full)
        revealed[:] = UNLABELLED
        for _, top, left, h, w in windows:
            revealed[top : top + h, left : left + w] = full[top : top + h, left : left + w]
        Image.fromarray(revealed).save(root / tile / "masks" / f"{image.stem}.png")
        labelled += count_labelled(revealed)
    return labelled


def count_labelled(mask_rgb: np.ndarray) -> int:
    ignored = (mask_rgb == UNLABELLED).all(axis=-1) | (mask_rgb == 0).all(axis=-1)
    return int((~ignored).sum())


def train_round(config, root: Path, run_dir: Path, seed: int, args) -> tuple[Path, dict]:
    """Train from scratch on the labelled set at ``root`` and score the final weights on tile 4."""
    from landseg.evaluate import evaluate
    from landseg.predict import PredictOptions, load_ensemble
    from landseg.train.run import train

    tiles = sorted(p.name for p in root.iterdir() if p.is_dir())
    training = config.model_copy(deep=True)
    training.data.root = root
    training.data.split.train, training.data.split.val = tiles, []
    training.train.seed, training.train.onnx_export, training.train.calibrate = seed, False, False
    if not args.smoke:
        training.train.max_minutes, training.train.epochs = args.minutes, 100_000
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*validation_step.*but have no .val_dataloader.*")
        result = train(training, run_dir / "train", progress=False)
    train_wall = time.perf_counter() - started
    scoring = config.model_copy(deep=True)
    scoring.data.split.train, scoring.data.split.val = ["tile_1"], ["tile_4"]
    options = PredictOptions(overlap=0.0) if args.smoke else PredictOptions()
    ensemble = load_ensemble([result.last_checkpoint], engine="torch" if args.smoke else "auto")
    metrics = evaluate(ensemble, scoring, "val", run_dir / "eval", options, overlays=0, progress=False).metrics
    from landseg.checkpoint import read_checkpoint

    return result.last_checkpoint, {
        "miou": metrics["miou"],
        "per_class_iou": {name: s["iou"] for name, s in metrics["per_class"].items()},
        "steps": int(read_checkpoint(result.last_checkpoint).get("global_step", 0)),
        "train_wall_s": round(train_wall, 1),
    }


def suggested(checkpoint: Path, pool: list[Path], taken: set, args, work: Path) -> list:
    """``budget`` windows as ``landseg suggest`` picks them, those already labelled left out."""
    from landseg.maps.names import map_stems
    from landseg.predict import PredictOptions, load_ensemble
    from landseg.predict.engine import predict_scene
    from landseg.suggest.windows import choose_diverse, score_windows

    ensemble = load_ensemble([checkpoint], engine="torch" if args.smoke else "auto")
    options = PredictOptions(uncertainty="entropy", preview=False, areas=False)
    candidates = []
    for image, stem in zip(pool, map_stems(pool, DATASETS / "dubai"), strict=True):
        paths = predict_scene(image, ensemble, work, options, stem=stem).paths
        candidates += score_windows(image, paths["uncertainty"], paths["classes"], args.size, ensemble.num_classes)
    offered = [c for c in candidates if (c.scene, c.row_off, c.col_off) not in taken]
    return [(c.scene, c.row_off, c.col_off, c.height, c.width) for c in choose_diverse(offered, args.budget)]


def run_seed(seed: int, args, curves: dict, save) -> None:
    """Fill ``curves`` (strategy: points) round by round, saving after each."""
    config = base_config(args)
    pool = pool_images(args)
    grid = grid_windows(pool, args.size)
    out = args.out / f"seed{seed}"
    log(f"seed {seed}: round 0 (tiles 1 and 2), pool of {len(grid)} windows")
    labelled = write_labelled_set(out / "round0" / "data", [])
    checkpoint, scores = train_round(config, out / "round0" / "data", out / "round0", seed, args)
    first = {"round": 0, "windows": 0, "labelled_pixels": labelled, **scores}
    curves.update(suggest=[first], random=[first])
    save()
    models = {"suggest": checkpoint}
    chosen: dict[str, list] = {"suggest": [], "random": []}
    rng = np.random.default_rng(seed)
    for round_number in range(1, args.rounds + 1):
        for strategy in ("suggest", "random"):
            taken = {(w[0], w[1], w[2]) for w in chosen[strategy]}
            if strategy == "suggest":
                started = time.perf_counter()
                work = out / f"round{round_number}" / strategy / "maps"
                new = suggested(models["suggest"], pool, taken, args, work)
                choose_s = round(time.perf_counter() - started, 1)
            else:
                free = [w for w in grid if (w[0], w[1], w[2]) not in taken]
                new = [free[i] for i in sorted(rng.choice(len(free), min(args.budget, len(free)), replace=False))]
                choose_s = 0.0
            chosen[strategy] += new
            run_dir = out / f"round{round_number}" / strategy
            labelled = write_labelled_set(run_dir / "data", chosen[strategy])
            log(f"seed {seed} round {round_number} {strategy}: {len(chosen[strategy])} windows, {labelled:,} px")
            checkpoint, scores = train_round(config, run_dir / "data", run_dir, seed, args)
            models[strategy] = checkpoint
            curves[strategy].append(
                {
                    "round": round_number,
                    "windows": len(chosen[strategy]),
                    "labelled_pixels": labelled,
                    "choose_s": choose_s,
                    **scores,
                    "chosen": [[str(w[0].relative_to(DATASETS / "dubai")), *w[1:]] for w in new],
                }
            )
            log(f"seed {seed} round {round_number} {strategy}: mIoU {scores['miou']:.4f}")
            save()


def log(message: str) -> None:
    print(f"[{datetime.datetime.now():%H:%M:%S}] {message}", file=sys.stderr)


def table(payload: dict) -> str:
    rows = []
    for seed, curves in payload["runs"].items():
        for strategy, points in curves.items():
            for point in points:
                if point["round"] == 0 and strategy == "random":
                    continue
                name = "start" if point["round"] == 0 else strategy
                rows.append([seed, name, point["round"], point["windows"], f"{point['labelled_pixels']:,}"])
                rows[-1] += [f"{point['miou']:.3f}", point["steps"]]
    headers = ["seed", "strategy", "round", "windows", "labelled px", "tile-4 mIoU", "steps"]
    return markdown_table(headers, rows, [False, False, True, True, True, True, True])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=4.0, help="Training budget of every round.")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--budget", type=int, default=24, help="Windows added per round.")
    parser.add_argument("--size", type=int, default=256, help="Window side in native pixels.")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--smoke", action="store_true", help="A few steps on a few images: checks the plumbing.")
    parser.add_argument("--out", type=Path, default=REPO.parent / "runs" / "active_learning")
    parser.add_argument("--results", type=Path, default=RESULTS / "active_learning.json")
    args = parser.parse_args()
    if args.smoke:
        args.budget, args.rounds = 2, 1
    results = args.out / "active_learning.json" if args.smoke else args.results
    payload = {
        "benchmark": "active learning on Dubai (issue 33)",
        "smoke": args.smoke,
        "command": " ".join(["python", *sys.argv]),
        "protocol": {
            "start": START_TILES,
            "pool": POOL_TILES,
            "scored": "tile_4",
            "rounds": args.rounds,
            "windows_per_round": args.budget,
            "window_px": args.size,
            "minutes_per_round": None if args.smoke else args.minutes,
            "training": "from scratch every round (ImageNet encoder), default recipe, no validation",
            "suggest": "entropy, mean per window, spacing 2 windows",
        },
        "environment": environment(),
        "runs": {},
        "complete": False,
    }
    for seed in (int(s) for s in args.seeds.split(",")):
        payload["runs"][f"seed{seed}"] = {}
        run_seed(seed, args, payload["runs"][f"seed{seed}"], lambda: write_json(results, payload))
    payload["complete"] = True
    write_json(results, payload)
    print(table(payload))


if __name__ == "__main__":
    main()
