"""The run's data as a LightningDataModule: catalog, labelled images, normalization, crop sampling, loaders.

``setup`` reads every training and validation image once (idempotently: ``train()`` calls it before it
builds the model card, which needs the bands, pixel statistics and normalization; Lightning calls it
again). Training batches are random crops drawn by the configured strategy, keyed by
``(seed, epoch * length + i)`` so that a resumed run draws the crops an uninterrupted one would;
validation predicts whole images (``SegmentationModule.validation_step``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import numpy as np
from torch.utils.data import DataLoader

from landseg.classes import IGNORE_INDEX, ClassSchema, get_schema
from landseg.config import ExperimentConfig
from landseg.data.augment import Augmentation
from landseg.data.catalog import Sample, build_catalog
from landseg.data.dataset import EpochSampler, LabelledImage, WholeImageDataset, load_labelled_images
from landseg.data.sampling import (
    ClassStatistics,
    RareClassOversampling,
    SampledCropDataset,
    crop_strategy,
    labelled_items,
)
from landseg.data.unlabeled import (
    AdaptingCrops,
    HistogramTransfer,
    UnlabeledCrops,
    find_unlabeled,
    pixel_sample,
)
from landseg.errors import ConfigError, DataError
from landseg.io.pixel_stats import ground_resolution, pixel_stats
from landseg.io.raster import raster_info
from landseg.io.safety import read_json_limited
from landseg.normalization import IMAGENET_MEAN, IMAGENET_STD, AnyNormalization, Normalization
from landseg.train.sampling import UnpaddedDistributedSampler
from landseg.train.start import FreshStart

log = logging.getLogger(__name__)


class SegmentationDataModule(L.LightningDataModule):
    """Training crops and whole validation images of ``config.data``, read as ``start`` reads inputs."""

    def __init__(self, config: ExperimentConfig, start: FreshStart, progress: bool = True):
        super().__init__()
        self.config = config
        self.start = start
        self.progress = progress
        self.schema: ClassSchema = get_schema(config.data.schema_)
        self.train_items: list[LabelledImage] = []
        self.val_items: list[LabelledImage] = []
        self._ready = False

    def setup(self, stage: str | None = None) -> None:
        if self._ready:
            return
        data, tc = self.config.data, self.config.train
        catalog = build_catalog(data)
        self.root = catalog.root
        train_samples, val_samples = catalog.split("train"), catalog.splits.get("val", [])
        self.train_images, self.val_images = len(train_samples), len(val_samples)
        self.info = raster_info(train_samples[0].image)
        self.bands = self.start.bands(self.config, self.info.count, self.info.descriptions)
        self.train_items = self._read(train_samples, "Reading training images", data.input_scale, data.exclude)
        self.val_items = self._read(val_samples, "Reading validation images")
        if tc.early_stopping is not None and not self.val_items:
            raise ConfigError("train.early_stopping needs validation images (data.split has no val images)")
        self.input_stats = pixel_stats(
            (item.image for item in self.train_items), self.info.dtype, ground_resolution(self.info)
        )
        self.normalization: AnyNormalization = self.start.normalization(
            self.input_stats, self.root
        ) or resolve_normalization(self.config, self.info.dtype, self.train_items, len(self.bands))
        self.statistics = ClassStatistics.from_masks((item.mask for item in self.train_items), self.schema.num_classes)
        try:
            self.crop_items = labelled_items(self.train_items)
        except ValueError as exc:
            raise DataError(str(exc), self.root) from None
        self.crops = crop_strategy(tc.sampling, self.crop_items, self.schema.names, self.statistics)
        if isinstance(self.crops, RareClassOversampling):
            warning = self.crops.saturation_warning(tc.crop_size, self.schema.names)
            if warning:
                log.warning(warning)
        self.augmentation = Augmentation.from_config(tc.augment, data_max_value(self.config, self.info.dtype))
        self.unlabeled = find_unlabeled(data.unlabeled, self.bands, self.info.dtype) if data.unlabeled else []
        self._ready = True

    def _read(
        self, samples: list[Sample], description: str, scale: float = 1.0, exclude: Path | None = None
    ) -> list[LabelledImage]:
        data = self.config.data
        return load_labelled_images(
            samples,
            self.schema,
            self.bands,
            tolerance=data.size_tolerance,
            unknown=data.unknown_labels,
            nodata=data.nodata,
            scale=scale,
            progress=self.progress,
            description=description,
            exclude=exclude,
        )

    @property
    def validates(self) -> bool:
        """Whether there are validation images to score."""
        return bool(self.val_items)

    def band_names(self) -> list[str]:
        """The chosen bands' descriptions, ``band N`` where the images have none."""
        return [self.info.descriptions[b - 1] or f"band {b}" for b in self.bands]

    def _loader_options(self) -> dict:
        workers = self.config.train.num_workers
        return dict(num_workers=workers, persistent_workers=workers > 0)

    def train_dataloader(self) -> DataLoader:
        tc = self.config.train
        # steps_per_epoch counts optimizer steps: under DDP each of the world_size ranks draws its own batch
        # of crops per step (Lightning shards the epoch's samples), so an epoch holds world_size times more.
        world_size = self.trainer.world_size if self.trainer is not None else 1
        length = tc.steps_per_epoch * tc.batch_size * world_size
        unlabelled = self.unlabeled_crops(length) if self.adapts else None
        crops = SampledCropDataset(
            self.crop_items,
            tc.crop_size,
            self.normalization,  # type: ignore[arg-type]  # any card normalization applies to a crop alike
            length=length,
            strategy=self.crops,
            augmentation=self.augmentation,
            seed=tc.seed,
            transfer=self.histogram_transfer(unlabelled) if unlabelled is not None else None,
        )
        # Pseudo-labels need unlabelled crops at every step; histogram transfer alone needs none after its start.
        dataset = AdaptingCrops(crops, unlabelled) if unlabelled is not None and tc.adapt.weight > 0 else crops
        return DataLoader(
            dataset,
            batch_size=tc.batch_size,
            sampler=EpochSampler(len(crops)),
            drop_last=True,
            **self._loader_options(),
        )

    @property
    def adapts(self) -> bool:
        """Whether training learns from unlabelled images: ``data.unlabeled``, and pseudo-labels
        (``train.adapt.weight``) or histogram matching (``train.adapt.match_histograms``) on."""
        adapt = self.config.train.adapt
        return bool(self.unlabeled) and (adapt.weight > 0 or adapt.match_histograms > 0)

    def histogram_transfer(self, unlabelled: UnlabeledCrops) -> HistogramTransfer | None:
        """The labelled images' band distributions mapped onto the unlabelled ones' (``adapt.match_histograms``)."""
        probability = self.config.train.adapt.match_histograms
        if probability == 0:
            return None
        rng = np.random.default_rng([self.config.train.seed, 3])
        count = max(1, 32 * 4096 // len(self.train_items))
        source = [pixel_sample(item.image, item.mask != IGNORE_INDEX, count, rng) for item in self.train_items]
        return HistogramTransfer.between(source, unlabelled.pixel_samples(), probability)

    def unlabeled_crops(self, length: int) -> UnlabeledCrops:
        tc, adapt = self.config.train, self.config.train.adapt
        max_value = data_max_value(self.config, self.info.dtype)
        strong = Augmentation(brightness=adapt.brightness, color=adapt.color, gamma=adapt.gamma, max_value=max_value)
        if not max_value:  # float data without data.normalization.max_value: the strong view is CutMix alone
            strong = Augmentation()
        return UnlabeledCrops(
            self.unlabeled,
            self.bands,
            tc.crop_size,
            self.config.data.input_scale,
            self.normalization,
            strong,
            nodata=self.config.data.nodata,
            seed=tc.seed,
            length=length,
        )

    def val_dataloader(self) -> DataLoader | list:
        if not self.val_items:
            return []
        # Under DDP each validation image goes to exactly one rank (Lightning's own sampler repeats some).
        images = WholeImageDataset(self.val_items)
        return DataLoader(images, batch_size=1, sampler=UnpaddedDistributedSampler(images), **self._loader_options())


def resolve_normalization(
    config: ExperimentConfig, dtype: str, items: list[LabelledImage], bands: int
) -> AnyNormalization:
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


def band_statistics(items: list[LabelledImage]) -> Normalization:
    """Exact per-band mean and std over every valid pixel of the training images."""
    bands = items[0].image.shape[0]
    total, total_sq, count = np.zeros(bands), np.zeros(bands), 0
    for item in items:
        data = item.image.reshape(bands, -1).astype(np.float64)
        data = data[:, np.isfinite(data).all(axis=0)]
        total += data.sum(axis=1)
        total_sq += (data**2).sum(axis=1)
        count += data.shape[1]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0)) + 1e-6
    return Normalization(tuple(float(m) for m in mean), tuple(float(s) for s in std))
