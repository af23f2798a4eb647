"""K-fold training for out-of-sample probabilities: every audited image is predicted by a model that did
not train on it.

The audited split's images are shuffled by a seed and dealt into K folds; model k trains with the
config's own recipe (``landseg.train.run.train``) on the split's images outside fold k and predicts
fold k. Its validation images are the config's ``val`` images that are not being audited (none when
``val`` itself is audited: the model of a fold is then its last checkpoint, and no held-out label
chooses it).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from landseg.config import ExperimentConfig, SplitConfig
from landseg.data.catalog import Sample
from landseg.errors import ConfigError
from landseg.io.write import atomic_output


def assign_folds(samples: Sequence[Sample], folds: int, seed: int = 0) -> list[int]:
    """Fold index of each sample (in the given order): a seeded shuffle dealt round-robin, so fold sizes
    differ by at most one."""
    if folds < 2:
        raise ConfigError(f"--folds must be at least 2, got {folds}")
    if folds > len(samples):
        raise ConfigError(f"--folds {folds}: the split has only {len(samples)} images; use at most {len(samples)}")
    order = list(range(len(samples)))
    random.Random(seed).shuffle(order)
    assignment = [0] * len(samples)
    for position, index in enumerate(order):
        assignment[index] = position % folds
    return assignment


@dataclass(frozen=True)
class FoldModel:
    fold: int
    checkpoint: Path
    trained_on: int
    minutes: float


def image_list(config: ExperimentConfig, samples: Sequence[Sample]) -> str:
    """A split file's text: the images' paths under the data root, one a line."""
    return "\n".join(s.image.relative_to(config.data.root).as_posix() for s in samples) + "\n"


def fold_config(
    config: ExperimentConfig, train: Sequence[Sample], val: Sequence[Sample], folder: Path
) -> ExperimentConfig:
    """``config`` with its split replaced by file lists of ``train`` and ``val`` (written in ``folder``)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, samples in (("train", train), ("val", val)):
        if not samples:
            continue
        lines = image_list(config, samples)
        path = folder / f"{name}.txt"
        with atomic_output(path) as temporary:
            temporary.write_text(lines)
        files[name] = str(path.resolve())
    copy = config.model_copy(deep=True)
    copy.data.split = SplitConfig(files=files)
    return copy


def train_fold_models(
    config: ExperimentConfig,
    audited: Sequence[Sample],
    assignment: Sequence[int],
    validation: Sequence[Sample],
    out_dir: Path,
    minutes_per_fold: float | None,
    progress: bool = True,
    onnx_export: bool = True,
) -> list[FoldModel]:
    """One model per fold, trained in ``out_dir/fold_k``; a finished fold (its ``summary.json``) is reused.
    ``onnx_export`` False skips training's ONNX export (the fold models are then predicted with PyTorch)."""
    from landseg.train.run import train

    models = []
    for fold in range(max(assignment) + 1):
        train_samples = [s for s, f in zip(audited, assignment, strict=False) if f != fold]
        run_dir = Path(out_dir) / f"fold_{fold}"
        best = run_dir / "checkpoints" / "best.ckpt"
        if (run_dir / "summary.json").exists() and best.exists():
            listed = run_dir / "split" / "train.txt"
            if not listed.is_file() or listed.read_text() != image_list(config, train_samples):
                # Reusing it would predict images it trained on: another --folds, --seed or split.
                raise ConfigError(
                    "this fold model was trained on other images (another --folds, --seed or data "
                    "split); audit into another --out or delete the folder",
                    run_dir,
                )
            models.append(FoldModel(fold, best, len(train_samples), 0.0))
            continue
        if (run_dir / "checkpoints" / "last.ckpt").exists():
            # An interrupted fold: start it again rather than mix two runs.
            import shutil

            shutil.rmtree(run_dir / "checkpoints")
        fold_cfg = fold_config(config, train_samples, validation, run_dir / "split")
        if not onnx_export and "onnx_export" in type(fold_cfg.train).model_fields:
            fold_cfg.train.onnx_export = False
        result = train(fold_cfg, run_dir, max_minutes=minutes_per_fold, progress=progress)
        models.append(FoldModel(fold, result.best_checkpoint, len(train_samples), result.minutes))
    return models
