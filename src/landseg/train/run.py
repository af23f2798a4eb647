"""``landseg train``: from an experiment config to ``RUN_DIR/checkpoints/{best,last}.ckpt``.

``train()`` assembles the three parts a Lightning project is read by: where the network starts
(``train.start``: fresh, or a zoo model's weights), the data (``train.datamodule``) and the task
(``train.module``), and hands them to a ``Trainer`` with landseg's callbacks (``train.callbacks``).
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import yaml
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from rich.console import Console

from landseg import __version__
from landseg.checkpoint import CARD_KEY, ModelCard, read_checkpoint
from landseg.config import ExperimentConfig, TrainConfig
from landseg.data.sampling import ClassStatistics
from landseg.errors import CheckpointError, ConfigError
from landseg.io.write import atomic_output
from landseg.losses import build_loss, resolve_class_weights
from landseg.predict.networks import onnxruntime_available
from landseg.predict.onnx import cached_export
from landseg.train.calibrate import calibrate_checkpoints
from landseg.train.callbacks import AtomicCheckpointIO, HistoryCSV, RandomStateCheckpoint, TimeBudgetCosine
from landseg.train.datamodule import SegmentationDataModule
from landseg.train.int8 import quantize_for_prediction
from landseg.train.module import SegmentationModule
from landseg.train.precision import PrecisionChoice, resolve_precision
from landseg.train.start import FreshStart, model_start
from landseg.train.swa import CyclicSWA

HISTORY = "history.csv"
"""One row per validated epoch (``HistoryCSV``), kept whole across ``--resume``; the training curves read it."""

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    best_miou: float
    epochs: int
    minutes: float
    history: Path
    global_rank: int = 0
    """This process's rank under DDP: only rank 0 should write reports and print."""
    val_images: int = 0
    precision: PrecisionChoice | None = None
    onnx_exports: list[Path] = field(default_factory=list)
    """ONNX exports written beside the checkpoints for ``landseg predict`` (empty without ONNX packages)."""
    calibration: dict[Path, dict] = field(default_factory=dict)
    """Each checkpoint's fitted temperature as its card stores it (``train.calibrate``); empty without validation."""
    int8: dict | None = None
    """The best checkpoint's int8 model (``path``) and its measured guard (``train.int8_export``), or None."""

    def validation_text(self) -> str:
        """``best validation mIoU 0.4840``, or ``no validation images`` for a run without any."""
        if not self.val_images:
            return "no validation images"
        return "not validated" if np.isnan(self.best_miou) else f"best validation mIoU {self.best_miou:.4f}"


def resolve_train_settings(tc: TrainConfig, statistics: ClassStatistics, num_classes: int) -> dict:
    """``tc`` as the dict the module stores, class-weight statistics replaced by their numbers."""
    try:
        loss = resolve_class_weights(tc.loss, statistics.pixels, statistics.present_image_pixels)
        build_loss(loss, num_classes)
    except ValueError as exc:
        raise ConfigError(f"train.loss: {exc}") from None
    return {**tc.model_dump(mode="json"), "loss": loss.model_dump(mode="json")}


def write_text(path: Path, text: str) -> None:
    with atomic_output(path) as temporary:
        temporary.write_text(text)


def check_resumable(path: Path, card: ModelCard) -> None:
    """Refuse to resume from a checkpoint that is unreadable or was trained for other classes, bands or
    another network: Lightning would fail deep inside with a traceback instead."""
    stored = read_checkpoint(path)
    previous = (stored.get("hyper_parameters") or {}).get(CARD_KEY) if isinstance(stored, dict) else None
    if previous is None or "state_dict" not in stored:
        raise CheckpointError("cannot resume: not a landseg training checkpoint", path)
    names = [c["name"] for c in previous["schema"]["classes"]]
    if names != card.class_schema().names:
        raise CheckpointError(
            f"cannot resume: trained for {len(names)} classes {names}, the config's schema has "
            f"{card.class_schema().num_classes} {card.class_schema().names}",
            path,
        )
    if list(previous["bands"]) != list(card.bands):
        raise CheckpointError(
            f"cannot resume: trained on bands {previous['bands']}, the config reads {card.bands}", path
        )
    shape_keys = ("arch", "encoder", "in_channels", "num_classes", "widths", "extra")
    before = {k: previous["model"].get(k) for k in shape_keys}
    now = {k: card.model.get(k) for k in shape_keys}
    if before != now:
        changed = ", ".join(f"{k} {before[k]!r} -> {now[k]!r}" for k in shape_keys if before[k] != now[k])
        raise CheckpointError(f"cannot resume: the config describes another network ({changed})", path)


def remove_stale_temporaries(run_dir: Path) -> None:
    """Half-written files of a killed run: never renamed into place, so never read; just litter."""
    # checkpoints/.*.tmp: what versions before atomic_output wrote checkpoints through.
    for pattern in (".*.partial*", "checkpoints/.*.partial*", "checkpoints/.*.tmp"):
        for stale in run_dir.glob(pattern):
            stale.unlink(missing_ok=True)


def train(
    config: ExperimentConfig,
    run_dir: Path,
    resume: bool = False,
    max_minutes: float | None = None,
    progress: bool = True,
    extra_callbacks: Sequence[L.Callback] = (),
) -> TrainResult:
    """Train ``config`` into ``run_dir``; ``extra_callbacks`` join the trainer's own (after them).

    ``max_minutes`` replaces ``train.max_minutes``. ``config`` is left as it is: the run's ``config.yaml``
    records the config as trained (with that budget, and the network a ``model.init`` implies).
    """
    run_dir = Path(run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    check_run_folder(run_dir, last, resume)
    start = model_start(config)  # before any image is read: a contradicting config fails at once
    config = start.trained_config(config)
    if max_minutes is not None:
        config = config.model_copy(update={"train": config.train.model_copy(update={"max_minutes": max_minutes})})
    tc = config.train
    L.seed_everything(tc.seed, workers=True, verbose=False)
    data = SegmentationDataModule(config, start, progress)
    data.setup("fit")
    choice = resolve_precision(tc.precision, tc.channels_last, tc.accelerator)
    card, network, start_message = model_card(config, data, start, choice)
    if resume:
        check_resumable(last, card)
        remove_stale_temporaries(run_dir)
    settings = resolve_train_settings(tc, data.statistics, data.schema.num_classes)
    settings.update(precision=choice.precision, channels_last=choice.channels_last)
    module = SegmentationModule(card.to_dict(), settings, network=network)

    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "config.yaml", yaml.safe_dump(config.to_yaml_dict(), sort_keys=False))
    write_text(run_dir / "class_statistics.json", json.dumps(data.statistics.to_dict(data.schema.names), indent=2))
    checkpoint_cb = ModelCheckpoint(
        dirpath=last.parent,
        filename="best",
        monitor="val_miou" if data.validates else None,
        mode="max",
        save_last=True,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
    swa = CyclicSWA(**tc.swa.model_dump()) if tc.swa is not None else None
    callbacks = [checkpoint_cb, *run_callbacks(tc, run_dir, swa, progress), *extra_callbacks]
    trainer = make_trainer(tc, choice.precision, run_dir, callbacks, progress, data.validates)
    if trainer.is_global_zero:
        announce(start_message if not resume else None, choice, progress)  # a resumed run continues its own weights
    started = time.monotonic()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*Checkpoint directory.*exists and is not empty.*")
        warnings.filterwarnings("ignore", message=".*isinstance.treespec, LeafSpec.*")
        trainer.fit(module, datamodule=data, ckpt_path=str(last) if resume else None)
        minutes = (time.monotonic() - started) / 60
        best_score = None if checkpoint_cb.best_model_score is None else float(checkpoint_cb.best_model_score)
        final = None
        if data.validates and module.validated_at_step != trainer.global_step:
            # A time limit stops training between two validations, and SWA replaces the weights after
            # the last one: score the final weights too.
            final = trainer.validate(module, datamodule=data, verbose=False)[0]["val_miou"]
            if best_score is None or final > best_score:
                trainer.save_checkpoint(last.parent / "best.ckpt")
                checkpoint_cb.best_model_path, best_score = str(last.parent / "best.ckpt"), final
    # Lightning only saves at validation; a time limit may stop between two. Every rank calls it (it ends
    # in a barrier); only rank 0 writes.
    trainer.save_checkpoint(last)
    best = Path(checkpoint_cb.best_model_path) if checkpoint_cb.best_model_path else last
    result = TrainResult(
        run_dir=run_dir,
        best_checkpoint=best,
        last_checkpoint=last,
        best_miou=best_score if best_score is not None else float("nan"),
        epochs=trainer.current_epoch,
        minutes=minutes,
        history=run_dir / HISTORY,
        global_rank=trainer.global_rank,
        val_images=data.val_images,
        precision=choice,
    )
    if trainer.is_global_zero:
        if tc.calibrate and data.val_items:
            result.calibration = calibrate_checkpoints([best, last], data.val_items, tc)
        # best.ckpt is the one users predict with; one export keeps the end of short runs short.
        result.onnx_exports = export_for_prediction([best], card.tile_size) if tc.onnx_export else []
        if tc.int8_export and result.onnx_exports:
            result.int8 = quantize_for_prediction(best, config, data.val_items, card.tile_size)
        summary = run_summary(result, card, final, swa)
        write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
    return result


def check_run_folder(run_dir: Path, last: Path, resume: bool) -> None:
    if resume and not last.exists():
        raise ConfigError("--resume: no checkpoints/last.ckpt to resume from", run_dir)
    if not resume and last.exists():
        raise ConfigError("run folder already holds a training run; use --resume or another --out", run_dir)


def model_card(
    config: ExperimentConfig, data: SegmentationDataModule, start: FreshStart, choice: PrecisionChoice
) -> tuple[ModelCard, torch.nn.Module | None, str | None]:
    """The card every checkpoint of the run carries, the network with its starting weights (None: the
    module builds it from the card), and what the start has to say about those weights."""
    schema = data.schema
    spec = start.spec(config, schema.num_classes, len(data.bands))
    network = start.network(spec)
    training = {
        "experiment": config.name,
        "data_root": str(data.root),
        "train_images": data.train_images,
        "val_images": data.val_images,
        "landseg_version": __version__,
        "precision": choice.to_dict(),
    }
    provenance, message = start.begin(network, schema.num_classes)
    if provenance is not None:
        training["init"] = provenance
    inputs = {"normalization": data.normalization.to_dict(), "bands": data.bands, "band_names": data.band_names()}
    card = ModelCard(
        model=spec.to_dict(),
        schema=schema.to_dict(),
        input_scale=config.data.input_scale,
        tile_size=max(config.train.val_tile, config.train.crop_size),
        input_stats=data.input_stats.to_dict(),
        training=training,
        **start.card_inputs(inputs),
    )
    return card, network, message


def run_callbacks(tc: TrainConfig, run_dir: Path, swa: CyclicSWA | None, progress: bool) -> list[L.Callback]:
    """The trainer's callbacks besides the checkpoint writer, in the order they act."""
    callbacks: list[L.Callback] = [
        HistoryCSV(run_dir / HISTORY),
        LearningRateMonitor(logging_interval="epoch"),
        RandomStateCheckpoint(),
    ]
    if progress:
        callbacks.append(RichProgressBar(leave=True))
    if tc.max_minutes and tc.scheduler.name == "cosine":
        callbacks.append(TimeBudgetCosine(tc.max_minutes * 60, min_lr=tc.scheduler.min_lr))
    if swa is not None:
        # After TimeBudgetCosine: from swa.start_epoch on, the cycles set the learning rate.
        callbacks.append(swa)
    if tc.early_stopping is not None:
        stopping = tc.early_stopping
        callbacks.append(
            EarlyStopping(
                monitor=stopping.monitor,
                mode="max" if stopping.monitor == "val_miou" else "min",
                patience=stopping.patience,
                min_delta=stopping.min_delta,
            )
        )
    return callbacks


def make_trainer(
    tc: TrainConfig, precision: str, run_dir: Path, callbacks: list[L.Callback], progress: bool, validates: bool
) -> L.Trainer:
    # Lightning's start-up banners (GPU/TPU availability, tips) are noise in a CLI that has its own output.
    for name in ("lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return L.Trainer(
        max_epochs=tc.epochs,
        max_time=timedelta(minutes=tc.max_minutes) if tc.max_minutes else None,
        accelerator=tc.accelerator,
        devices=tc.devices,
        num_nodes=tc.num_nodes,
        strategy=tc.strategy,
        precision=precision,  # type: ignore[arg-type]  # one of Lightning's names (train.precision checks it)
        deterministic=tc.deterministic,
        gradient_clip_val=tc.gradient_clip,
        gradient_clip_algorithm=tc.gradient_clip_algorithm if tc.gradient_clip else None,
        default_root_dir=run_dir,
        # history.csv (HistoryCSV) is the run's one CSV log; TensorBoard gets every logged value.
        logger=TensorBoardLogger(run_dir, name="tensorboard", version=""),
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        check_val_every_n_epoch=tc.val_every,
        num_sanity_val_steps=0,
        enable_model_summary=False,
        enable_progress_bar=progress,
        log_every_n_steps=min(10, tc.steps_per_epoch),
        limit_val_batches=1.0 if validates else 0,
    )


def announce(start_message: str | None, choice: PrecisionChoice, progress: bool) -> None:
    if start_message:
        log.info(start_message)
        if progress:
            Console(stderr=True).print(f"[bold]fine-tuning[/] {start_message}")
    log.info("training with %s", choice.describe())
    if progress:
        Console(stderr=True).print(
            f"[bold]precision[/] {choice.precision}, "
            f"{'channels-last' if choice.channels_last else 'contiguous'} memory "
            f"[dim]({choice.reason})[/]"
        )


def run_summary(result: TrainResult, card: ModelCard, final: float | None, swa: CyclicSWA | None) -> dict:
    """``summary.json``: where the checkpoints are, how well and how long the run trained."""
    validated = result.val_images > 0 and not np.isnan(result.best_miou)
    summary: dict[str, Any] = {
        "best_checkpoint": str(result.best_checkpoint),
        "last_checkpoint": str(result.last_checkpoint),
        "best_val_miou": result.best_miou if validated else None,
        "validation": result.validation_text(),
        "epochs": result.epochs,
        "train_minutes": round(result.minutes, 2),
        "normalization": card.normalization,
        "precision": result.precision.to_dict() if result.precision else None,
    }
    if final is not None:
        summary["final_val_miou"] = final
    if swa is not None:
        summary["swa_cycles_averaged"] = swa.n_averaged
    summary["onnx_exports"] = [str(path) for path in result.onnx_exports]
    summary["calibration"] = result.calibration.get(result.best_checkpoint)
    summary["int8"] = result.int8
    return summary


def export_for_prediction(checkpoints: Sequence[Path], side: int) -> list[Path]:
    """The ONNX exports ``landseg predict`` would make on its first run, written now beside ``checkpoints``
    (``predict.onnx.cached_export``), so that predicting starts at once. Best effort: a network the exporter
    cannot handle, or a machine without the ONNX packages, leaves predict to run it with PyTorch."""
    if not onnxruntime_available():
        return []
    exports = []
    for checkpoint in dict.fromkeys(checkpoints):
        try:
            # In this process: training's memory is no concern here, and a child would import torch again.
            exports.append(cached_export(checkpoint, side, isolate=False))
        except (CheckpointError, OSError) as exc:
            log.warning("no ONNX export beside %s: %s", checkpoint, exc)
    return exports
