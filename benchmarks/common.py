"""What every benchmark script shares: the machine it ran on, atomic JSON results, markdown tables.

Scripts run as ``python benchmarks/<name>.py``, so this folder is on ``sys.path`` and they import
``common`` directly. Nothing here imports torch: a benchmark that measures memory in child processes
must not pay for it in the parent.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import resource
import subprocess
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DATASETS = REPO.parent / "shared" / "datasets"
"""The real data sets (``../shared/datasets``), absent from a user's fresh clone."""


def cpu_model() -> str:
    """The CPU's marketing name from ``/proc/cpuinfo`` (``lscpu`` where that has none)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    try:
        listing = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        listing = ""
    for line in listing.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def git_state() -> dict:
    """The commit the scripts ran from, and whether the working tree differed from it. Result files
    are left out: one benchmark's fresh JSON does not change the code the next one runs."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--", ".", ":!benchmarks/results"],
                cwd=REPO,
                capture_output=True,
                text=True,
            ).stdout
        )
    except OSError:
        commit, dirty = "", False
    return {"git_commit": commit, "git_dirty": dirty}


def package_version(name: str) -> str | None:
    """An installed distribution's version, without importing it."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment(packages: Sequence[str] = ("torch", "numpy")) -> dict:
    """Commit, CPU model and count, load average, Python and the versions of ``packages``."""
    return {
        **git_state(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        **{package.replace("-", "_"): package_version(package) for package in packages},
    }


def peak_rss_mb() -> float:
    """This process's peak resident memory. ``VmHWM`` is reset by exec, unlike ``ru_maxrss``, which on
    Linux keeps the high-water mark of the parent that forked us."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_json(path: Path, payload: dict) -> Path:
    """``payload`` as indented JSON at ``path``, written to a temporary name and renamed when complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.partial")
    temporary.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(temporary, path)
    return path


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence], numeric: Sequence[bool] | None = None) -> str:
    """A GitHub markdown table; ``numeric`` columns are right-aligned."""
    numeric = numeric or [False] * len(headers)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def format_number(value: float | None, digits: int = 3) -> str:
    """A score for a table: fixed digits, or a dash where there is none."""
    if value is None or value != value:  # None or NaN
        return "-"
    return f"{value:.{digits}f}"


# -- recipes: a base experiment config with keys merged over it ---------------------------------------
CONFIGS = REPO / "configs" / "benchmark"


def recipe_path(name: str | Path) -> Path:
    """``name`` as given when it is a file, else ``configs/benchmark/<name>.yaml``."""
    path = Path(name)
    return path if path.suffix in (".yaml", ".yml") else CONFIGS / f"{name}.yaml"


def assignments(mapping: dict) -> list[str]:
    """A recipe's keys as ``--set`` overrides (``a.b=value``), as results record a variant's changes."""
    from landseg.config import recipe_updates

    return [f"{key}={json.dumps(value)}" for key, value in recipe_updates(mapping).items()]


def add_settings_option(parser, example: str) -> None:
    """``--set KEY=VALUE`` (repeatable): config overrides applied to every run, kept in ``args.settings``."""
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"A config override for every run, e.g. {example} (repeatable); recorded in the results.",
    )


def load_recipe(path: str | Path, overrides: Sequence[str] = ()):
    """An ``ExperimentConfig`` from a recipe (``base`` and the keys merged over it, see
    ``landseg.config.load_config``) or a whole config file, with ``overrides`` applied."""
    from landseg.config import load_config

    return load_config(Path(path), list(overrides))


def without_validation(config):
    """A copy of ``config`` whose training sees no validation images: the benchmark's budget is training
    alone, and the held-out images are scored once, afterwards, by ``landseg evaluate``."""
    copy = config.model_copy(deep=True)
    split = copy.data.split
    if split.files is not None:
        split.files = {name: file for name, file in split.files.items() if name != "val"}
    elif split.field is not None:
        split.val = []
    else:
        raise ValueError("benchmarks need a split by field or by files, not by ratios")
    return copy


# -- one quality run: train under a budget, then score the validation split ------------------------------
def train_and_score(
    config, run_dir: Path, minutes: float | None, engine: str = "auto", scoring_config=None, **evaluate_options
) -> dict:
    """Train ``config`` (without validation) for ``minutes`` of wall clock, then score its final weights
    on the ``val`` split (of ``scoring_config`` when given: labels read otherwise than for training) with ``landseg.evaluate.evaluate`` (whole images, native resolution, one
    confusion matrix; ``engine`` as ``landseg evaluate --engine``; ``evaluate_options`` such as ``overlap`` are the ``PredictOptions`` of the maps it scores). Wall times: training (the
    budget) with reading the data, and evaluation apart."""
    import time
    import warnings

    from landseg.checkpoint import read_checkpoint
    from landseg.evaluate import evaluate
    from landseg.predict import PredictOptions, load_ensemble
    from landseg.train.run import train

    config = config.model_copy(deep=True)
    config.train.max_minutes = minutes  # as train() would set it: the recorded config shows the budget
    config.train.onnx_export = False  # the final weights (last.ckpt) are scored; evaluate exports those itself
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*validation_step.*but have no .val_dataloader.*")
        result = train(without_validation(config), run_dir / "train", progress=False)
    train_wall = time.perf_counter() - started
    steps = int(read_checkpoint(result.last_checkpoint).get("global_step", 0))
    started = time.perf_counter()
    evaluation = evaluate(
        load_ensemble([result.last_checkpoint], engine=engine),
        scoring_config or config,
        "val",
        run_dir / "eval",
        PredictOptions(**evaluate_options),
        overlays=0,
        progress=False,
    )
    metrics = evaluation.metrics
    return {
        "miou": metrics["miou"],
        "per_class_iou": {name: scores["iou"] for name, scores in metrics["per_class"].items()},
        "mean_f1": metrics["mean_f1"],
        "pixel_accuracy": metrics["pixel_accuracy"],
        "metrics": {key: metrics[key] for key in ("per_class", "confusion_matrix", "class_names", "images")},
        "train_minutes": round(result.minutes, 3),
        "train_wall_s": round(train_wall, 1),
        "eval_wall_s": round(time.perf_counter() - started, 1),
        "epochs": result.epochs,
        "steps": steps,
        "checkpoint": str(result.last_checkpoint),
        "config": config.to_yaml_dict(),
    }


def score_table(
    runs: dict[str, dict], class_names: Sequence[str], extra: dict[str, Sequence[str]] | None = None
) -> str:
    """Markdown rows of mIoU, per-class IoU, pixel accuracy, steps and training minutes per run;
    ``extra`` adds leading text columns (e.g. the run's role)."""
    extra = extra or {}
    headers = ["run", *extra, "mIoU", *class_names, "pixel acc.", "steps", "train min"]
    rows = []
    for index, (name, run) in enumerate(runs.items()):
        rows.append(
            [
                name,
                *(column[index] for column in extra.values()),
                format_number(run["miou"]),
                *(format_number(run["per_class_iou"].get(c)) for c in class_names),
                format_number(run["pixel_accuracy"]),
                run["steps"],
                f"{run['train_minutes']:.1f}",
            ]
        )
    return markdown_table(headers, rows, [False] * (1 + len(extra)) + [True] * (len(class_names) + 4))
