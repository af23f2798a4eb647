"""Validation under DDP that sees every image exactly once.

Lightning gives each rank a ``DistributedSampler`` for validation, which pads the last round with
repeated images so that every rank gets as many: a confusion matrix summed over the ranks would count
those images twice (Lightning warns about exactly this). ``UnpaddedDistributedSampler`` hands rank r
the images r, r + world, r + 2 world, ... and nothing more, so the ranks' counts differ by at most one.
That is safe for validation: DDP synchronises buffers only in the first forward pass after a training
step, which every rank makes as long as each has at least one image.

The ranks are read when iterating, because the loader is built before Lightning starts the process
group; being a ``DistributedSampler``, Lightning keeps it instead of injecting its own.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized

import torch.distributed as dist
from torch.utils.data import Dataset
from torch.utils.data.distributed import DistributedSampler

from landseg.errors import ConfigError


class UnpaddedDistributedSampler(DistributedSampler):
    shuffle = False
    drop_last = False

    def __init__(self, dataset: Dataset, num_replicas: int | None = None, rank: int | None = None):
        """``num_replicas`` and ``rank``, as for ``DistributedSampler``; left None, they are the process
        group's when iterating."""
        if not isinstance(dataset, Sized):
            raise TypeError(f"validation needs a dataset with a length, not {type(dataset).__name__}")
        self.dataset = dataset
        self.length = len(dataset)
        self._num_replicas = num_replicas
        self._rank = rank
        self.epoch = 0
        self.seed = 0

    @property
    def num_replicas(self) -> int:
        if self._num_replicas is not None:
            return self._num_replicas
        return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1

    @num_replicas.setter
    def num_replicas(self, value: int) -> None:
        self._num_replicas = value

    @property
    def rank(self) -> int:
        if self._rank is not None:
            return self._rank
        return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0

    @rank.setter
    def rank(self, value: int) -> None:
        self._rank = value

    def _indices(self) -> range:
        world = self.num_replicas
        if self.length < world:
            raise ConfigError(
                f"validation has {self.length} images for {world} training processes; every process "
                "needs at least one: add validation images or train on fewer devices"
            )
        return range(self.rank, self.length, world)

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices())

    def __len__(self) -> int:
        return len(self._indices())

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
