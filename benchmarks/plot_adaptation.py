"""Issue 34's measurements as one picture: each setting's mIoU per seed (dots) and their mean (bar), on
the tile adapted to, on a labelled tile that was not adapted to, and on Korea's blocked split.

    python benchmarks/plot_adaptation.py  ->  docs/images/adaptation.png

Reads the result JSONs of benchmarks/dubai_quality.py, benchmarks/s2_korea_quality.py and, for the
comparison on half of tile 4, benchmarks/results/dubai_half_tile4.json (BENCHMARKS.md, "Mapping a new
region"). A missing file leaves its setting out of the picture.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"

PANELS: dict[str, dict[str, list[str]]] = {
    "Dubai tile 4 (adapted to), 30 min": {
        "default recipe": ["dubai_core_remeasure", "dubai_default_seed1_quiet"],
        "transfer": ["dubai_histogram_seed0", "dubai_histogram_seed1"],
        "transfer + teacher T 1": ["dubai_adapt_seed0"],
        "transfer, 3:4": ["dubai_scale34_histogram_seed0"],
        "transfer, Lite1": ["dubai_lite1_histogram_seed0"],
        "sweep winner": ["dubai_adapt_sweep_best_seed0", "dubai_adapt_sweep_best_seed1"],
    },
    "Tile 4's even images, 30 min": {
        "transfer": ["dubai_half_tile4#transfer_seed0", "dubai_half_tile4#transfer_seed1"],
        "sweep winner": ["dubai_half_tile4#winner_seed0", "dubai_half_tile4#winner_seed1"],
        "labels of its odd images": ["dubai_oracle_half_tile4_seed0", "dubai_oracle_half_tile4_seed1"],
    },
    "Dubai tile 5 (not adapted to), 15 min": {
        "default recipe": ["dubai_tile5_default_seed0", "dubai_tile5_default_seed1"],
        "transfer to tile 4": ["dubai_tile5_histogram_seed0"],
        "winner, adapted to tile 4": ["dubai_tile5_adapt_winner_seed0", "dubai_tile5_adapt_winner_seed1"],
    },
    "Korea, blocked split, 15 min": {
        "default recipe": ["s2_korea_blocked", "s2_korea_default_seed1"],
        "transfer": ["s2_korea_histogram_seed0", "s2_korea_histogram_seed1"],
        "winner's adaptation": ["s2_korea_adapt_winner_seed0", "s2_korea_adapt_winner_seed1"],
    },
}
"""Panel title -> setting -> result files (``name`` or ``name#entry`` for one entry of a summary file)."""


TARGET = 0.62
"""Issue 34's tile-4 target."""


def miou(reference: str, results: Path = RESULTS) -> float | None:
    """The scored mIoU a result file records, whichever benchmark wrote it; None if it is missing."""
    name, _, entry = reference.partition("#")
    path = results / f"{name}.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    if entry:
        return data["runs"][entry]["miou"] if entry in data.get("runs", {}) else None
    if "blocked_split" in data:
        return data["blocked_split"]["variants"]["ce"]["miou"]
    variants = (data.get("ablation") or {}).get("variants", {})
    if len(variants) != 1:
        raise SystemExit(f"{path}: expected one ablation variant, found {sorted(variants)}")
    return next(iter(variants.values()))["miou"]


def plot(panels: dict[str, dict[str, list[str]]], out: Path, results: Path = RESULTS) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2), sharey=True)
    for axis, (title, settings) in zip(axes, panels.items(), strict=True):
        measured = {
            label: [value for value in (miou(ref, results) for ref in refs) if value is not None]
            for label, refs in settings.items()
        }
        measured = {label: values for label, values in measured.items() if values}
        for position, values in enumerate(measured.values()):
            axis.bar(position, sum(values) / len(values), color="#9ecae1", width=0.7)
            axis.scatter([position] * len(values), values, color="#08519c", zorder=3, s=18)
        axis.set_xticks(range(len(measured)), list(measured), rotation=35, ha="right", fontsize=8)
        axis.set_title(title, fontsize=9)
        axis.grid(axis="y", alpha=0.3)
    axes[0].axhline(TARGET, color="#de2d26", linestyle="--", linewidth=1)
    axes[0].annotate(f"target {TARGET}", (0, TARGET), xytext=(0, 3), textcoords="offset points", fontsize=8)
    axes[0].set_ylabel("mIoU (dots: seeds; bar: their mean)")
    axes[0].set_ylim(bottom=0.4)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS, help="Folder of the result JSONs.")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images" / "adaptation.png")
    args = parser.parse_args(argv)
    print(plot(PANELS, args.out, args.results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
