"""Vector labels on real data (issue 31): Dubai trained from polygons and from points, beside masks.

Three label sources for the same recipe (default ``dubai_half_scale``, benchmark 1's best), each trained
for ``--minutes`` of wall clock (default 15) per seed and scored on tile 4's masks exactly as benchmark 1
scores (``common.train_and_score``):

- ``masks``: the PNG masks, as benchmark 1 reads them;
- ``polygons``: every mask of every tile (decoded to class indices on its JPEG's pixel grid) polygonized
  with GDAL (``rasterio.features.shapes``, 4-connected) into one GeoPackage per image, in pixel
  coordinates; read back as ``data.vector_labels``, each image's rasterized labels are compared with its
  mask on every pixel (``agreement`` in the results);
- ``points``: ``--points`` pixels (default 2,000) drawn at random among the labelled pixels of the
  training tiles (every labelled pixel equally likely, seeded), written as points at the pixel centres and
  burnt with a 1.5 px buffer (3 x 3 pixels), so that each survives the recipe's 1:2 nearest-neighbour
  resampling of labels; nothing else is labelled.

``rasterizing`` times the rasterizing itself: the polygon and point layers burnt into random windows of
the default crop's size on the native grid (the crop times ``1 / input_scale``), as a loader that reads
crops from large scenes would, against the training step the runs measured (wall clock over steps), and
the one-off cost of rasterizing every training image when training reads them into memory.

    python benchmarks/vector_labels.py                       # 6 runs of 15 min and the timings, about 1 h 45
    python benchmarks/vector_labels.py --smoke --out /tmp/v  # plumbing check on one tile, not a measurement
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from common import (
    RESULTS,
    environment,
    load_recipe,
    markdown_table,
    recipe_path,
    score_table,
    train_and_score,
    write_json,
)
from dubai_quality import CLASSES, SMOKE_EVALUATION, budget_overrides

SOURCES = ("masks", "polygons", "points")
POINT_BUFFER_PX = 1.5
"""Radius around a point, in pixels, whose pixel centres are burnt: the 3 x 3 pixels around it."""
TIMED_WINDOWS = 100
TRAIN_TILES = ["tile_1", "tile_2", "tile_3", "tile_5", "tile_6", "tile_7"]


def decoded_masks(config) -> dict[str, tuple[object, np.ndarray]]:
    """Every image's mask as class indices on its image's grid, keyed ``tile/name``: (sample, mask)."""
    from landseg.classes import get_schema
    from landseg.data.catalog import build_catalog, load_pair

    schema = get_schema(config.data.schema_)
    masks = {}
    for sample in build_catalog(config.data).samples:
        masks[f"{sample.fields['tile']}/{sample.name}"] = (sample, load_pair(sample, schema)[1])
    return masks


def write_layer(path: Path, geometries: list, classes: list[str]) -> None:
    """Shapely geometries with a ``class`` attribute as a GeoPackage without CRS (pixel coordinates)."""
    import pyogrio
    import shapely

    path.parent.mkdir(parents=True, exist_ok=True)
    kinds = {geometry.geom_type for geometry in geometries}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "'crs' was not provided")  # the JPEGs have no CRS: pixel coordinates
        pyogrio.raw.write(
            path,
            shapely.to_wkb(np.array(geometries, dtype=object)),
            [np.array(classes, dtype=object)],
            ["class"],
            geometry_type=kinds.pop() if len(kinds) == 1 else "Unknown",
            crs=None,
        )


def polygonize(masks: dict, names: list[str], folder: Path) -> None:
    """Each mask's class regions as polygons in ``folder/<tile>/<name>.gpkg``."""
    import shapely
    from rasterio.features import shapes

    from landseg.classes import IGNORE_INDEX

    for key, (_, mask) in masks.items():
        found = list(shapes(mask, mask=mask != IGNORE_INDEX, connectivity=4))
        write_layer(
            folder / f"{key}.gpkg", [shapely.geometry.shape(g) for g, _ in found], [names[int(v)] for _, v in found]
        )


def draw_points(masks: dict, names: list[str], keys: list[str], count: int, seed: int, folder: Path) -> dict:
    """``count`` labelled pixels of the images ``keys``, every labelled pixel equally likely, written as
    points at pixel centres in ``folder/<tile>/<name>.gpkg``; points per class and per image."""
    import shapely

    from landseg.classes import IGNORE_INDEX

    labelled = [np.flatnonzero(masks[key][1] != IGNORE_INDEX) for key in keys]
    offsets = np.cumsum([0] + [len(pixels) for pixels in labelled])
    chosen = np.sort(np.random.default_rng(seed).choice(offsets[-1], size=count, replace=False))
    per_class: dict[str, int] = {}
    per_image = {}
    for i, key in enumerate(keys):
        picked = labelled[i][chosen[(chosen >= offsets[i]) & (chosen < offsets[i + 1])] - offsets[i]]
        if len(picked) == 0:
            raise SystemExit(f"{key}: no point drawn; draw more points or another --seed")
        mask = masks[key][1]
        rows, cols = np.divmod(picked, mask.shape[1])
        classes = [names[int(mask[r, c])] for r, c in zip(rows, cols, strict=True)]
        for name in classes:
            per_class[name] = per_class.get(name, 0) + 1
        write_layer(folder / f"{key}.gpkg", list(shapely.points(cols + 0.5, rows + 0.5)), classes)
        per_image[key] = len(picked)
    return {"points": count, "seed": seed, "buffer_px": POINT_BUFFER_PX, "per_class": per_class, "per_image": per_image}


def with_vector_labels(config, folder: Path, buffer: float):
    """``config`` reading its labels from ``folder/<tile>/<name>.gpkg`` instead of the masks."""
    from landseg.config import DataConfig

    data = config.data.model_dump(by_alias=True, exclude={"masks"})
    data["vector_labels"] = {"files": [str(folder / "{tile}" / "{name}.gpkg")], "attribute": "class", "buffer": buffer}
    return config.model_copy(update={"data": DataConfig.model_validate(data)})


def agreement(vector_config, masks: dict) -> dict:
    """Per image, the pixels where the rasterized polygons equal the mask, and the totals."""
    from landseg.classes import get_schema
    from landseg.data.catalog import build_catalog, load_pair

    schema = get_schema(vector_config.data.schema_)
    per_image = {}
    for sample in build_catalog(vector_config.data).samples:
        key = f"{sample.fields['tile']}/{sample.name}"
        labels = load_pair(sample, schema)[1]
        per_image[key] = {"agree": int((labels == masks[key][1]).sum()), "pixels": int(labels.size)}
    agree = sum(image["agree"] for image in per_image.values())
    pixels = sum(image["pixels"] for image in per_image.values())
    return {"images": len(per_image), "agree": agree, "pixels": pixels, "per_image": per_image}


def rasterizing_cost(vector_config, window: int, seed: int) -> dict:
    """Seconds to rasterize one ``window``² window of the training images (mean over ``TIMED_WINDOWS``
    random windows), and to rasterize every training image whole, as training reads them."""
    from rasterio.windows import Window
    from rasterio.windows import transform as window_transform

    from landseg.data.catalog import build_catalog
    from landseg.io.georef import open_without_grid_warning

    rng = np.random.default_rng(seed)
    train = [s for s in build_catalog(vector_config.data).samples if s.fields["tile"] in TRAIN_TILES]
    grids = []
    for sample in train:
        with open_without_grid_warning(sample.image) as src:
            grids.append((src.height, src.width, src.transform, src.crs))
    for sample in train:  # files read (and indexed) once, as training does, before anything is timed
        sample.vectors.layer(sample.vector_files[0])
    started = time.perf_counter()
    for sample, (height, width, transform, crs) in zip(train, grids, strict=True):
        sample.vectors.rasterize(list(sample.vector_files), (height, width), transform, crs, sample.image)
    whole = time.perf_counter() - started
    seconds = []
    for _ in range(TIMED_WINDOWS):
        index = int(rng.integers(len(train)))
        height, width, transform, crs = grids[index]
        top, left = int(rng.integers(max(height - window, 0) + 1)), int(rng.integers(max(width - window, 0) + 1))
        placed = window_transform(Window(left, top, window, window), transform)
        sample = train[index]
        started = time.perf_counter()
        sample.vectors.rasterize(list(sample.vector_files), (window, window), placed, crs, sample.image)
        seconds.append(time.perf_counter() - started)
    return {
        "window_px": window,
        "windows": TIMED_WINDOWS,
        "window_s_mean": round(float(np.mean(seconds)), 5),
        "window_s_p95": round(float(np.percentile(seconds, 95)), 5),
        "whole_images": len(train),
        "whole_images_s": round(whole, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=15.0, help="Training wall-clock budget per run.")
    parser.add_argument("--seeds", default="0,1", help="Comma-separated training seeds.")
    parser.add_argument("--recipe", default="dubai_half_scale", help="Recipe name in configs/benchmark/ or a path.")
    parser.add_argument("--points", type=int, default=2000, help="Points drawn from the training masks.")
    parser.add_argument("--sources", default=",".join(SOURCES), help="Comma-separated label sources to train from.")
    parser.add_argument("--smoke", action="store_true", help="A few steps on one tile; not a measurement.")
    parser.add_argument("--out", type=Path, default=None, help="Folder for the label files and the runs.")
    parser.add_argument(
        "--results", type=Path, default=None, help="JSON (default benchmarks/results/vector_labels.json)."
    )
    args = parser.parse_args(argv)
    if args.smoke and args.out is None:
        parser.error("--smoke needs --out (a smoke run writes nothing under benchmarks/results)")
    sources = args.sources.split(",")
    if set(sources) - set(SOURCES):
        parser.error(f"unknown label sources {sorted(set(sources) - set(SOURCES))}; known: {', '.join(SOURCES)}")
    out = args.out or Path("runs") / "benchmarks" / f"vector_labels_{datetime.datetime.now():%Y%m%d_%H%M%S}"
    out = out.resolve()
    results = args.results or (out / "vector_labels.json" if args.smoke else RESULTS / "vector_labels.json")
    seeds = [int(seed) for seed in args.seeds.split(",")]
    train_tiles = TRAIN_TILES[:1] if args.smoke else TRAIN_TILES

    from landseg.classes import get_schema

    base = load_recipe(recipe_path(args.recipe))
    names = get_schema(base.data.schema_).names
    started = time.perf_counter()
    masks = decoded_masks(base)
    polygonize(masks, names, out / "polygons")
    train_keys = [key for key in masks if key.split("/")[0] in train_tiles]
    points = draw_points(masks, names, train_keys, args.points, 0, out / "points")
    for key in masks.keys() - set(train_keys):  # the validation tile is scored from its full labels
        (out / "points" / key).with_suffix(".gpkg").parent.mkdir(parents=True, exist_ok=True)
        (out / "points" / key).with_suffix(".gpkg").write_bytes(
            (out / "polygons" / key).with_suffix(".gpkg").read_bytes()
        )
    labels_s = time.perf_counter() - started
    payload: dict = {
        "benchmark": "Vector labels: Dubai from polygons and points (issue 31)",
        "smoke": args.smoke,
        "command": "python benchmarks/vector_labels.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "recipe": args.recipe,
        "budget_minutes": None if args.smoke else args.minutes,
        "split": {"train": train_tiles, "val": ["tile_4"]},
        "scoring": "final weights after the budget, landseg evaluate on tile 4's masks, whole images, native resolution",
        "environment": environment(("torch", "lightning", "segmentation-models-pytorch", "rasterio", "shapely")),
        "labels_written_s": round(labels_s, 1),
        "points": points,
        "complete": False,
        "runs": {},
    }
    polygon_config = with_vector_labels(base, out / "polygons", 0.0)
    point_config = with_vector_labels(base, out / "points", POINT_BUFFER_PX)
    payload["agreement"] = agreement(polygon_config, masks)
    print(
        f"polygons read back: {payload['agreement']['agree']:,} of {payload['agreement']['pixels']:,} pixels "
        f"agree with the masks on {payload['agreement']['images']} images",
        file=sys.stderr,
    )
    write_json(results, payload)

    folders = {"polygons": (out / "polygons", 0.0), "points": (out / "points", POINT_BUFFER_PX)}
    for seed in seeds:
        scoring = load_recipe(
            recipe_path(args.recipe), budget_overrides(argparse.Namespace(seed=seed, smoke=args.smoke))
        )
        for source in sources:
            config = scoring if source == "masks" else with_vector_labels(scoring, *folders[source])
            print(f"[{datetime.datetime.now():%H:%M:%S}] {source}, seed {seed}: training", file=sys.stderr)
            run = train_and_score(
                config,
                out / f"{source}_seed{seed}",
                None if args.smoke else args.minutes,
                scoring_config=scoring,
                **(SMOKE_EVALUATION if args.smoke else {}),
            )
            payload["runs"][f"{source}_seed{seed}"] = {"source": source, "seed": seed, **run}
            print(
                f"[{datetime.datetime.now():%H:%M:%S}] mIoU {run['miou']:.4f} after {run['steps']} steps",
                file=sys.stderr,
            )
            write_json(results, payload)

    # The default crop on its native grid, and the recipe's crop seen through its input scale.
    windows = sorted({base.train.crop_size, round(base.train.crop_size / base.data.input_scale)})
    runs = [run for run in payload["runs"].values() if run["steps"]]
    step_s = float(np.mean([run["train_wall_s"] / run["steps"] for run in runs])) if runs else None
    steps = float(np.mean([run["steps"] for run in runs])) if runs else None
    timing: dict = {"train_step_s": None if step_s is None else round(step_s, 4), "batch_size": base.train.batch_size}
    for name, config in (("polygons", polygon_config), ("points", point_config)):
        timing[name] = [rasterizing_cost(config, window, 0) for window in windows]
        for cost in timing[name]:
            batch_s = cost["window_s_mean"] * base.train.batch_size
            cost["share_of_step"] = round(batch_s / step_s, 4) if step_s else None
            # What training pays now: every training image rasterized once, when it is read into memory.
            cost["whole_images_share_of_run"] = round(cost["whole_images_s"] / (step_s * steps), 5) if step_s else None
    payload["rasterizing"] = timing
    payload["complete"] = True
    write_json(results, payload)
    print(report(payload))
    return 0


def report(payload: dict) -> str:
    """The score table, then what rasterizing costs."""
    runs = payload["runs"]
    lines = [score_table(runs, CLASSES) if runs else "(no runs)", ""]
    timing = payload["rasterizing"]
    rows = []
    for name in ("polygons", "points"):
        for cost in timing[name]:
            share, once = cost["share_of_step"], cost["whole_images_share_of_run"]
            rows.append(
                [
                    name,
                    f"{cost['window_px']}²",
                    f"{cost['window_s_mean'] * 1000:.2f}",
                    f"{cost['window_s_mean'] * timing['batch_size'] * 1000:.1f}",
                    "-" if share is None else f"{share:.1%}",
                    f"{cost['whole_images_s']:.1f}" + ("" if once is None else f" ({once:.2%} of a run)"),
                ]
            )
    headers = ["labels", "window", "ms a window", f"ms a batch of {timing['batch_size']}", "share of a step"]
    lines.append(markdown_table([*headers, "s for every training image once"], rows))
    agree = payload["agreement"]
    lines.append(
        f"\npolygons read back agree with the masks on {agree['agree']:,} of {agree['pixels']:,} pixels "
        f"({agree['images']} images); training step {timing['train_step_s']} s"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
