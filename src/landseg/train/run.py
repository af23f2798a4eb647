"""``landseg train``: from an experiment config to ``RUN_DIR/checkpoints/{best,last}.ckpt``."""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import yaml
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from rich.console import Console
from torch.utils.data import DataLoader

from landseg import __version__
from landseg.checkpoint import CARD_KEY, ModelCard, read_checkpoint
from landseg.classes import ClassSchema, get_schema
from landseg.config import ExperimentConfig, TrainConfig
from landseg.data.augment import Augmentation
from landseg.data.catalog import build_catalog
from landseg.data.dataset import EpochSampler, LabelledImage, WholeImageDataset, load_labelled_images
from landseg.data.sampling import (
    ClassStatistics,
    RareClassOversampling,
    SampledCropDataset,
    crop_strategy,
    labelled_items,
)
from landseg.errors import CheckpointError, ConfigError, DataError
from landseg.io.pixel_stats import ground_resolution, pixel_stats
from landseg.io.raster import raster_info
from landseg.io.safety import read_json_limited
from landseg.io.write import atomic_output
from landseg.losses import build_loss, resolve_class_weights
from landseg.models import ModelSpec, build_model
from landseg.normalization import IMAGENET_MEAN, IMAGENET_STD, Normalization
from landseg.predict.networks import onnxruntime_available
from landseg.predict.onnx import cached_export
from landseg.train import from_zoo
from landseg.train.callbacks import AtomicCheckpointIO, HistoryCSV, RandomStateCheckpoint, TimeBudgetCosine
from landseg.train.module import SegmentationModule
from landseg.train.precision import PrecisionChoice, resolve_precision
from landseg.train.sampling import UnpaddedDistributedSampler
from landseg.train.swa import CyclicSWA

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

    def validation_text(self) -> str:
        """``best validation mIoU 0.4840``, or ``no validation images`` for a run without any."""
        if not self.val_images:
            return "no validation images"
        return "not validated" if np.isnan(self.best_miou) else f"best validation mIoU {self.best_miou:.4f}"


def resolve_normalization(
    config: ExperimentConfig, dtype: str, items: list[LabelledImage], bands: int
) -> Normalization:
    norm = config.data.normalization
    mode = norm.mode
    if norm.stats_file is not None:
        stats = read_json_limited(norm.stats_file, error=ConfigError)
        try:
            normalization = Normalization.from_dict(stats["normalization"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"not a usable statistics file ({type(exc).__name__}: {exc})", norm.stats_file) from None
        if normalization.bands != bands:
            raise ConfigError(f"holds statistics of {normalization.bands} bands, the data has {bands}", norm.stats_file)
        return normalization
    if mode == "explicit":
        if norm.mean is None or norm.std is None:
            raise ConfigError("data.normalization.mode explicit needs mean and std")
        return Normalization(tuple(norm.mean), tuple(norm.std))
    max_value = data_max_value(config, dtype)
    if mode == "auto":
        if config.model.encoder_weights == "imagenet" and bands == 3 and max_value:
            mode = "imagenet"
        elif dtype == "uint8":
            mode = "symmetric"
        else:
            mode = "stats"
    if mode == "imagenet":
        if bands != 3:
            raise ConfigError(f"data.normalization imagenet needs 3 bands, the data has {bands}")
        return Normalization.from_unit_stats(IMAGENET_MEAN, IMAGENET_STD, max_value or 255.0)
    if mode == "symmetric":
        if max_value is None:
            raise ConfigError("data.normalization symmetric needs max_value for float data")
        return Normalization.symmetric(bands, max_value)
    return band_statistics(items)


def data_max_value(config: ExperimentConfig, dtype: str) -> float | None:
    """``data.normalization.max_value``, else the integer dtype's maximum, else None (float data)."""
    if config.data.normalization.max_value:
        return config.data.normalization.max_value
    return float(np.iinfo(dtype).max) if np.issubdtype(np.dtype(dtype), np.integer) else None


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


def band_statistics(items: list[LabelledImage]) -> Normalization:
    """Exact per-band mean and std over every valid pixel of the training images."""
    count = 0
    total = None
    total_sq = None
    for item in items:
        data = item.image.reshape(item.image.shape[0], -1).astype(np.float64)
        data = data[:, np.isfinite(data).all(axis=0)]
        total = data.sum(axis=1) if total is None else total + data.sum(axis=1)
        total_sq = (data**2).sum(axis=1) if total_sq is None else total_sq + (data**2).sum(axis=1)
        count += data.shape[1]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0)) + 1e-6
    return Normalization(tuple(float(m) for m in mean), tuple(float(s) for s in std))


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
    for pattern in (".*.partial*", "checkpoints/.*.tmp"):
        for stale in run_dir.glob(pattern):
            stale.unlink(missing_ok=True)


def csv_log_version(run_dir: Path) -> str:
    """Lightning's CSV logger deletes an existing metrics file: a resumed run logs into its own folder."""
    logs = run_dir / "logs"
    if not (logs / "metrics.csv").exists():
        return ""
    resumed = 1
    while (logs / f"resumed_{resumed}").exists():
        resumed += 1
    return f"resumed_{resumed}"


def train(
    config: ExperimentConfig,
    run_dir: Path,
    resume: bool = False,
    max_minutes: float | None = None,
    progress: bool = True,
    extra_callbacks: Sequence[L.Callback] = (),
) -> TrainResult:
    """Train ``config`` into ``run_dir``; ``extra_callbacks`` join the trainer's own (after them)."""
    run_dir = Path(run_dir)
    checkpoints = run_dir / "checkpoints"
    last = checkpoints / "last.ckpt"
    if resume and not last.exists():
        raise ConfigError("--resume: no checkpoints/last.ckpt to resume from", run_dir)
    if not resume and last.exists():
        raise ConfigError("run folder already holds a training run; use --resume or another --out", run_dir)
    if max_minutes is not None:
        config.train.max_minutes = max_minutes
    tc = config.train
    zoo = from_zoo.zoo_start(config)  # before any image is read: a contradicting config fails at once
    if zoo is not None:
        from_zoo.settle_config(config, zoo)
    L.seed_everything(tc.seed, workers=True, verbose=False)

    schema: ClassSchema = get_schema(config.data.schema_)
    catalog = build_catalog(config.data)
    train_samples, val_samples = catalog.split("train"), catalog.splits.get("val", [])
    info = raster_info(train_samples[0].image)
    if zoo is not None:
        bands = from_zoo.zoo_bands(zoo, config, info.count, info.descriptions)
    else:
        bands = config.data.bands or list(range(1, info.count + 1))
    common = dict(
        schema=schema,
        bands=bands,
        tolerance=config.data.size_tolerance,
        unknown=config.data.unknown_labels,
        nodata=config.data.nodata,
        progress=progress,
    )
    train_items = load_labelled_images(
        train_samples,
        scale=config.data.input_scale,
        description="Reading training images",
        exclude=config.data.exclude,
        **common,
    )
    val_items = load_labelled_images(val_samples, description="Reading validation images", **common)
    if tc.early_stopping is not None and not val_items:
        raise ConfigError("train.early_stopping needs validation images (data.split has no val images)")
    input_stats = pixel_stats((item.image for item in train_items), info.dtype, ground_resolution(info))
    if zoo is not None:
        from_zoo.check_training_pixels(zoo, input_stats, catalog.root)
        normalization = Normalization.from_dict(zoo.normalization)
    else:
        normalization = resolve_normalization(config, info.dtype, train_items, len(bands))
    statistics = ClassStatistics.from_masks((item.mask for item in train_items), schema.num_classes)

    choice = resolve_precision(tc.precision, tc.channels_last, tc.accelerator)
    if zoo is not None:
        spec = zoo.model_spec(schema.num_classes)
    else:
        spec = ModelSpec(
            arch=config.model.arch,
            encoder=config.model.encoder,
            encoder_weights=config.model.encoder_weights,
            in_channels=len(bands),
            num_classes=schema.num_classes,
            widths=config.model.widths,
            dropout=config.model.dropout,
            extra=dict(config.model.extra),
        )
    network = build_model(spec) if zoo is not None else None  # else the module builds it, as it always has
    training = {
        "experiment": config.name,
        "data_root": str(catalog.root),
        "train_images": len(train_samples),
        "val_images": len(val_samples),
        "landseg_version": __version__,
        "precision": choice.to_dict(),
    }
    card_inputs = {
        "normalization": normalization.to_dict(),
        "bands": bands,
        "band_names": [
            d or f"band {b}" for b, d in zip(bands, [info.descriptions[b - 1] for b in bands], strict=False)
        ],
    }
    start_message = None
    if zoo is not None:
        # The zoo model's weights, and its input contract on the card: predict reads scenes as the zoo model.
        replaced = zoo.start_training(network)
        training["init"] = from_zoo.provenance(zoo, replaced)
        card_inputs = from_zoo.card_fields(zoo)
        start_message = from_zoo.start_message(zoo, replaced, schema.num_classes)
    card = ModelCard(
        model=spec.to_dict(),
        schema=schema.to_dict(),
        input_scale=config.data.input_scale,
        tile_size=max(tc.val_tile, tc.crop_size),
        input_stats=input_stats.to_dict(),
        training=training,
        **card_inputs,
    )
    if resume:
        check_resumable(last, card)
        remove_stale_temporaries(run_dir)
    settings = resolve_train_settings(tc, statistics, schema.num_classes)
    settings.update(precision=choice.precision, channels_last=choice.channels_last)
    module = SegmentationModule(card.to_dict(), settings, network=network)

    try:
        crop_items = labelled_items(train_items)
    except ValueError as exc:
        raise DataError(str(exc), catalog.root) from None
    crops = crop_strategy(tc.sampling, crop_items, schema.names, statistics)
    if isinstance(crops, RareClassOversampling) and (warning := crops.saturation_warning(tc.crop_size, schema.names)):
        log.warning(warning)
    augmentation = Augmentation.from_config(tc.augment, data_max_value(config, info.dtype))
    loader_options = dict(num_workers=tc.num_workers, persistent_workers=tc.num_workers > 0)
    val_loader = None
    if val_items:
        # Under DDP each validation image goes to exactly one rank (Lightning's own sampler repeats some).
        val_set = WholeImageDataset(val_items)
        val_loader = DataLoader(val_set, batch_size=1, sampler=UnpaddedDistributedSampler(val_set), **loader_options)

    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "config.yaml", yaml.safe_dump(config.to_yaml_dict(), sort_keys=False))
    write_text(run_dir / "class_statistics.json", json.dumps(statistics.to_dict(schema.names), indent=2))
    history = run_dir / "history.csv"
    callbacks: list[L.Callback] = [
        ModelCheckpoint(
            dirpath=checkpoints,
            filename="best",
            monitor="val_miou" if val_loader else None,
            mode="max",
            save_last=True,
            auto_insert_metric_name=False,
            enable_version_counter=False,
        ),
        HistoryCSV(history),
        LearningRateMonitor(logging_interval="epoch"),
        RandomStateCheckpoint(),
    ]
    if progress:
        callbacks.append(RichProgressBar(leave=True))
    if tc.max_minutes and tc.scheduler.name == "cosine":
        callbacks.append(TimeBudgetCosine(tc.max_minutes * 60, min_lr=tc.scheduler.min_lr))
    swa = None
    if tc.swa is not None:
        # After TimeBudgetCosine: from swa.start_epoch on, the cycles set the learning rate.
        swa = CyclicSWA(tc.swa.start_epoch, tc.swa.cycle_epochs, tc.swa.max_lr, tc.swa.min_lr, tc.swa.bn_batches)
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
    callbacks.extend(extra_callbacks)
    # Lightning's start-up banners (GPU/TPU availability, tips) are noise in a CLI that has its own output.
    for name in ("lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    trainer = L.Trainer(
        max_epochs=tc.epochs,
        max_time={"minutes": tc.max_minutes} if tc.max_minutes else None,
        accelerator=tc.accelerator,
        devices=tc.devices,
        num_nodes=tc.num_nodes,
        strategy=tc.strategy,
        precision=choice.precision,
        deterministic=tc.deterministic,
        gradient_clip_val=tc.gradient_clip,
        gradient_clip_algorithm=tc.gradient_clip_algorithm if tc.gradient_clip else None,
        default_root_dir=run_dir,
        logger=[
            CSVLogger(run_dir, name="logs", version=csv_log_version(run_dir)),
            TensorBoardLogger(run_dir, name="tensorboard", version=""),
        ],
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        check_val_every_n_epoch=tc.val_every,
        num_sanity_val_steps=0,
        enable_model_summary=False,
        enable_progress_bar=progress,
        log_every_n_steps=min(10, tc.steps_per_epoch),
        limit_val_batches=1.0 if val_loader else 0,
    )
    # steps_per_epoch counts optimizer steps: under DDP each of the world_size ranks draws its own batch
    # of crops per step (Lightning shards the epoch's samples), so an epoch holds world_size times more.
    train_set = SampledCropDataset(
        crop_items,
        tc.crop_size,
        normalization,
        length=tc.steps_per_epoch * tc.batch_size * trainer.world_size,
        strategy=crops,
        augmentation=augmentation,
        seed=tc.seed,
    )
    train_loader = DataLoader(
        train_set, batch_size=tc.batch_size, sampler=EpochSampler(len(train_set)), drop_last=True, **loader_options
    )
    if trainer.is_global_zero:
        if start_message and not resume:  # a resumed run continues from its own weights
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
    started = time.monotonic()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*Checkpoint directory.*exists and is not empty.*")
        warnings.filterwarnings("ignore", message=".*isinstance.treespec, LeafSpec.*")
        trainer.fit(module, train_loader, val_loader, ckpt_path=str(last) if resume else None)
        minutes = (time.monotonic() - started) / 60
        checkpoint_cb = callbacks[0]
        best_score = checkpoint_cb.best_model_score
        final = None
        if val_loader is not None and module.validated_at_step != trainer.global_step:
            # A time limit stops training between two validations, and SWA replaces the weights after
            # the last one: score the final weights too.
            final = trainer.validate(module, val_loader, verbose=False)[0]["val_miou"]
            if best_score is None or final > float(best_score):
                trainer.save_checkpoint(checkpoints / "best.ckpt")
                checkpoint_cb.best_model_path, best_score = str(checkpoints / "best.ckpt"), final
    # Lightning only saves at validation; a time limit may stop between two. Every rank calls it (it ends
    # in a barrier); only rank 0 writes.
    trainer.save_checkpoint(last)
    best = Path(checkpoint_cb.best_model_path) if checkpoint_cb.best_model_path else last
    result = TrainResult(
        run_dir=run_dir,
        best_checkpoint=best,
        last_checkpoint=last,
        best_miou=float(best_score) if best_score is not None else float("nan"),
        epochs=trainer.current_epoch,
        minutes=minutes,
        history=history,
        global_rank=trainer.global_rank,
        val_images=len(val_samples),
        precision=choice,
    )
    validated = val_loader is not None and not np.isnan(result.best_miou)
    summary = {
        "best_checkpoint": str(best),
        "last_checkpoint": str(last),
        "best_val_miou": result.best_miou if validated else None,
        "validation": result.validation_text(),
        "epochs": result.epochs,
        "train_minutes": round(minutes, 2),
        "normalization": card.normalization,
        "precision": choice.to_dict(),
    }
    if final is not None:
        summary["final_val_miou"] = final
    if swa is not None:
        summary["swa_cycles_averaged"] = swa.n_averaged
    if trainer.is_global_zero:
        # best.ckpt is the one users predict with; one export keeps the end of short runs short.
        result.onnx_exports = export_for_prediction([best], card.tile_size) if tc.onnx_export else []
        summary["onnx_exports"] = [str(path) for path in result.onnx_exports]
        write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
    return result


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
