"""The worked example of docs/ASSESS.md: a map landseg predicted on real data, assessed from a sample
labelled with the data set's own labels, against the areas in the full labels.

Data: the Sen1Floods11 chip in ``../shared/datasets/samples/sen1floods11`` (Sentinel-2 L1C, 13 bands,
512 x 512 px on an EPSG:4326 grid, Spain; hand-labelled water / not water, -1 = no label).

1. ``landseg predict --model dynamic-world`` maps the chip (Dynamic World's 9 classes).
2. Crosswalk to the label's two classes: Dynamic World ``Water`` is water, every other class is not
   water. Pixels the label leaves out (-1) become no-data, so the map, the sample and the full labels
   cover the same population.
3. ``landseg sample`` draws a stratified sample of the water map (``--size``, ``--seed``).
4. Each point gets the label's class at its coordinates as its reference (what a labeller would write).
5. ``landseg assess`` estimates the class areas with 95 % intervals; they are set beside the map's pixel
   counts and the areas of the full labels (every pixel, the project's geodesic pixel areas).
6. With ``--repeats R``, R more samples (seeds 1..R) drawn and assessed the same way (in-process, no
   pictures) count how often the 95 % intervals cover the full-label areas.

    .venv/bin/python tools/assess_example.py                   # about two minutes on 2 cores (predict: one)
    .venv/bin/python tools/assess_example.py --repeats 0 --work /tmp/assess_example

Writes ``benchmarks/results/assess_example.json`` and ``docs/images/assess_sen1floods11.png``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyogrio.raw
import rasterio
import shapely
from rasterio.windows import Window

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from common import environment, write_json  # noqa: E402

CHIP = REPO.parent / "shared" / "datasets" / "samples" / "sen1floods11"
IMAGE = CHIP / "Spain_7370579_S2Hand.tif"
LABEL = CHIP / "Spain_7370579_LabelHand.tif"
LABEL_NODATA = -1
WATER, NOT_WATER, NODATA = 0, 1, 255
CLASS_NAMES = {WATER: "water", NOT_WATER: "not water"}
LABEL_CLASSES = {1: "water", 0: "not water"}
DW_WATER = "Water"
"""The one Dynamic World class that is water in the crosswalk; the eight others are not water."""
RESULTS = REPO / "benchmarks" / "results" / "assess_example.json"
PICTURE = REPO / "docs" / "images" / "assess_sen1floods11.png"


def landseg(*args: str) -> str:
    """Run a landseg command as a user would; what it printed (landseg's console writes to stderr)."""
    done = subprocess.run(
        [sys.executable, "-m", "landseg.cli", *args], capture_output=True, text=True, check=False, cwd=REPO
    )
    if done.returncode:
        raise SystemExit(f"landseg {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout + done.stderr


def predict(work: Path) -> tuple[Path, float | None]:
    """The Dynamic World map of the chip and the seconds predict took (None: the map was already there)."""
    classes = work / "predict" / f"{IMAGE.stem}_classes.tif"
    if classes.exists():
        return classes, None
    started = time.perf_counter()
    landseg("predict", str(IMAGE), "--model", "dynamic-world", "--out", str(classes.parent))
    return classes, round(time.perf_counter() - started, 1)


def water_map(classes_path: Path, out: Path) -> Path:
    """The Dynamic World map in the label's two classes, no-data where the label has none."""
    from landseg.classes import ClassSchema, LandClass

    with rasterio.open(classes_path) as source, rasterio.open(LABEL) as label:
        if not source.transform.almost_equals(label.transform) or source.shape != label.shape:
            raise SystemExit(f"{classes_path.name} and {LABEL.name} are not on the same grid")
        names = ClassSchema.from_dict(json.loads(source.tags()["landseg_schema"])).names
        dw = source.read(1)
        valid = (source.read_masks(1) > 0) & (label.read(1) != LABEL_NODATA)
        profile = source.profile | {"nodata": NODATA, "dtype": "uint8"}
    binary = np.where(dw == names.index(DW_WATER), WATER, NOT_WATER).astype(np.uint8)
    binary[~valid] = NODATA
    schema = ClassSchema(
        "water_not_water",
        (LandClass(CLASS_NAMES[WATER], (65, 155, 223)), LandClass(CLASS_NAMES[NOT_WATER], (230, 220, 190))),
        description=f"Dynamic World {DW_WATER} vs its other eight classes",
    )
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(binary, 1)
        dst.update_tags(landseg_schema=json.dumps(schema.to_dict()))
    return out


def label_points(points: Path, out: Path) -> Path:
    """A copy of the drawn points whose ``reference`` is the label's class at each point."""
    meta, _, geometry, values = pyogrio.raw.read(points)
    fields = [str(f) for f in meta["fields"]]
    shapes = shapely.from_wkb(geometry)
    with rasterio.open(LABEL) as label:
        codes = np.array([v[0] for v in label.sample(zip(shapely.get_x(shapes), shapely.get_y(shapes), strict=True))])
    if np.any(codes == LABEL_NODATA):
        raise SystemExit(f"{int((codes == LABEL_NODATA).sum())} points fell where the label has no class")
    values[fields.index("reference")] = np.array([LABEL_CLASSES[int(c)] for c in codes], dtype=object)
    pyogrio.raw.write(out, geometry, values, fields, driver="GPKG", geometry_type="Point", crs=meta["crs"])
    return out


def full_label_areas_ha(map_path: Path) -> dict[str, float]:
    """Each label class's area over the map's valid pixels, from every pixel's geodesic area."""
    from landseg.maps.areas import SQUARE_METRES_PER_HECTARE, pixel_areas

    with rasterio.open(map_path) as source, rasterio.open(LABEL) as label:
        valid = source.read_masks(1) > 0
        codes = label.read(1)
        areas = pixel_areas(source.crs, source.transform, Window(0, 0, source.width, source.height))
    return {
        name: float(areas[valid & (codes == code)].sum() / SQUARE_METRES_PER_HECTARE)
        for code, name in LABEL_CLASSES.items()
    }


def comparison(summary: dict, truth: dict[str, float]) -> list[dict]:
    rows = []
    for row in summary["per_class"]:
        estimate = row["estimated_area_ha"]
        low, high = estimate["ci95"]
        true = truth[row["class"]]
        rows.append(
            {
                "class": row["class"],
                "mapped_ha": row["mapped_area_ha"],
                "estimated_ha": estimate["estimate"],
                "se_ha": estimate["se"],
                "ci95_ha": [low, high],
                "full_label_ha": true,
                "interval_covers_full_label": bool(low <= true <= high),
                "mapped_error_ha": row["mapped_area_ha"] - true,
                "estimate_error_ha": estimate["estimate"] - true,
                "users_accuracy": row["users_accuracy"],
                "producers_accuracy": row["producers_accuracy"],
                "sample_points_mapped": row["sample_points_mapped"],
            }
        )
    return rows


def repeated_coverage(
    map_path: Path, work: Path, size: int, repeats: int, truth: dict[str, float], true_overall: float
) -> dict:
    """Draw and assess ``repeats`` more samples; how often each class's 95 % interval covers the truth."""
    from landseg.assess.run import assess_map
    from landseg.assess.sample import SampleOptions, draw_sample

    covered = dict.fromkeys(truth, 0)
    excluding_mapped = dict.fromkeys(truth, 0)
    estimates: dict[str, list[float]] = {name: [] for name in truth}
    overall_covered = 0
    for seed in range(1, repeats + 1):
        folder = work / "repeats" / str(seed)
        folder.mkdir(parents=True, exist_ok=True)
        draw_sample(map_path, folder / "points.gpkg", SampleOptions(size=size, seed=seed))
        labelled = label_points(folder / "points.gpkg", folder / "labelled.gpkg")
        result = assess_map(
            map_path, labelled, "reference", folder / "out", design_path=folder / "points.design.json", pictures=False
        )
        for row in comparison(result.summary, truth):
            covered[row["class"]] += row["interval_covers_full_label"]
            low, high = row["ci95_ha"]
            excluding_mapped[row["class"]] += not low <= row["mapped_ha"] <= high
            estimates[row["class"]].append(row["estimated_ha"])
        low, high = result.summary["overall_accuracy"]["ci95"]
        overall_covered += low <= true_overall <= high
    return {
        "repeats": repeats,
        "seeds": [1, repeats],
        "area_intervals_covering_full_label": covered,
        "area_intervals_excluding_mapped_area": excluding_mapped,
        "mean_estimated_area_ha": {name: float(np.mean(values)) for name, values in estimates.items()},
        "sd_estimated_area_ha": {name: float(np.std(values, ddof=1)) for name, values in estimates.items()},
        "overall_accuracy_intervals_covering_full_label": overall_covered,
    }


def full_label_overall_accuracy(map_path: Path) -> float:
    """The map's area-weighted agreement with the label over every valid pixel."""
    with rasterio.open(map_path) as source, rasterio.open(LABEL) as label:
        from landseg.maps.areas import pixel_areas

        valid = source.read_masks(1) > 0
        binary = source.read(1)
        water = label.read(1) == 1
        areas = pixel_areas(source.crs, source.transform, Window(0, 0, source.width, source.height))
    agree = (binary == WATER) == water
    return float(areas[valid & agree].sum() / areas[valid].sum())


def picture(map_path: Path, labelled: Path, rows: list[dict], out: Path) -> Path:
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    with rasterio.open(map_path) as source, rasterio.open(LABEL) as label:
        binary = np.ma.masked_equal(source.read(1), NODATA)
        label_water = label.read(1) == 1
    meta, _, _, values = pyogrio.raw.read(labelled)
    fields = [str(f) for f in meta["fields"]]
    row, col = values[fields.index("row")], values[fields.index("col")]
    correct = values[fields.index("map_class")] == values[fields.index("reference")]
    figure = Figure(figsize=(11, 4.6), layout="constrained")
    left, right = figure.subplots(1, 2, width_ratios=[1, 1.25])
    left.imshow(binary, cmap=ListedColormap(["#419BDF", "#E6DCBE"]), interpolation="nearest")
    left.contour(label_water, levels=[0.5], colors="#222222", linewidths=0.5)
    left.scatter(col[correct], row[correct], s=9, c="#1a9850", label="map agrees with the label")
    left.scatter(col[~correct], row[~correct], s=16, c="#d73027", marker="x", label="map disagrees")
    left.set_title("Map water (blue), label water outlined, sample points", fontsize=10)
    left.legend(loc="lower left", fontsize=8, framealpha=0.9)
    left.set_axis_off()
    x = np.arange(len(rows))
    width = 0.26
    right.bar(x - width, [r["mapped_ha"] for r in rows], width, color="#bbbbbb", label="mapped (pixel count)")
    estimates = np.array([r["estimated_ha"] for r in rows])
    errors = np.array([[r["estimated_ha"] - r["ci95_ha"][0], r["ci95_ha"][1] - r["estimated_ha"]] for r in rows]).T
    right.bar(x, estimates, width, yerr=errors, capsize=5, color="#4575b4", label="estimated, 95 % interval")
    right.bar(x + width, [r["full_label_ha"] for r in rows], width, color="#1a9850", label="full label")
    right.set_xticks(x, [r["class"] for r in rows])
    right.set_ylabel("area (ha)")
    right.set_title("Class areas: map, sample estimate and full label", fontsize=10)
    right.legend(fontsize=8)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/landseg_assess_example"), help="working folder")
    parser.add_argument("--size", type=int, default=300, help="sample points")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=100, help="further samples for the coverage count")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--picture", type=Path, default=PICTURE)
    args = parser.parse_args()
    if not IMAGE.exists():
        raise SystemExit(f"{IMAGE} is not here: the example needs ../shared/datasets")
    args.work.mkdir(parents=True, exist_ok=True)
    classes, predict_seconds = predict(args.work)
    predicted = time.perf_counter()
    binary = water_map(classes, args.work / "water_map.tif")
    points = args.work / "points.gpkg"
    sample_output = landseg(
        "sample", str(binary), "--out", str(points), "--size", str(args.size), "--seed", str(args.seed)
    )
    labelled = label_points(points, args.work / "labelled.gpkg")
    assess_output = landseg(
        "assess",
        str(binary),
        str(labelled),
        "--design",
        str(points.with_suffix(".design.json")),
        "--out",
        str(args.work / "assessment"),
    )
    summary = json.loads((args.work / "assessment" / "accuracy.json").read_text())
    truth = full_label_areas_ha(binary)
    rows = comparison(summary, truth)
    true_overall = full_label_overall_accuracy(binary)
    assessed = time.perf_counter()
    coverage = (
        repeated_coverage(binary, args.work, args.size, args.repeats, truth, true_overall) if args.repeats else None
    )
    payload = {
        "what": "Dynamic World water on the Sen1Floods11 chip, assessed from a sample labelled with the chip's hand label",
        "image": str(IMAGE.relative_to(REPO.parent)),
        "label": str(LABEL.relative_to(REPO.parent)),
        "crosswalk": {"water": [DW_WATER], "not water": "every other Dynamic World class"},
        "population": "pixels with a map class and a label (the label's -1 pixels are no-data)",
        "sample": {"method": "stratified by map class", "size": args.size, "seed": args.seed, "allocation": "olofsson"},
        "area_method": summary["area_method"],
        "total_area_ha": summary["total_area_ha"],
        "overall_accuracy": summary["overall_accuracy"],
        "full_label_overall_accuracy": true_overall,
        "classes": rows,
        "coverage": coverage,
        "console": {"sample": sample_output.strip(), "assess": assess_output.strip()},
        "seconds": {
            "predict": predict_seconds,
            "sample_and_assess": round(assessed - predicted, 1),
            "repeats": round(time.perf_counter() - assessed, 1),
        },
        "environment": environment(("numpy", "rasterio", "onnxruntime")),
    }
    write_json(args.results, payload)
    picture(binary, labelled, rows, args.picture)
    print(
        json.dumps(
            {
                k: payload[k]
                for k in ("overall_accuracy", "full_label_overall_accuracy", "classes", "coverage", "seconds")
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
