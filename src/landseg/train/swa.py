"""Stochastic weight averaging at the ends of learning-rate cycles (seed 002, after Izmailov et al. 2018).

Lightning's ``StochasticWeightAveraging`` averages after every epoch at a constant or annealed rate;
seed 002 instead runs cycles in which the learning rate falls linearly from ``max_lr`` to ``min_lr``
and averages only the weights reached at the end of each cycle (the fast-geometric-ensembling
schedule of Garipov et al.). When training ends, batch-norm statistics are recomputed for the
averaged weights with ``torch.optim.swa_utils.update_bn`` and the averaged weights replace the
network's own, so ``last.ckpt`` holds them under the usual ``model.`` keys and loads like any other.

The LightningModule must keep its network in ``.model`` (``SegmentationModule`` does).
"""

from __future__ import annotations

import itertools
import logging
import math
from typing import Protocol, runtime_checkable

import lightning as L
from torch import nn
from torch.optim.swa_utils import AveragedModel, update_bn

log = logging.getLogger(__name__)


@runtime_checkable
class _TracksValidation(Protocol):
    """A module that records the step its weights were last validated at (``SegmentationModule``)."""

    validated_at_step: int


class CyclicSWA(L.Callback):
    def __init__(
        self, start_epoch: int, cycle_epochs: int, max_lr: float, min_lr: float, bn_batches: int | None = None
    ):
        self.start_epoch = start_epoch
        self.cycle_epochs = cycle_epochs
        self.max_lr = max_lr
        self.min_lr = min_lr
        self.bn_batches = bn_batches
        self.averaged: AveragedModel | None = None
        self._pending_state: dict | None = None
        self.applied = False

    @property
    def n_averaged(self) -> int:
        if self.averaged is not None:
            return int(self.averaged.n_averaged)
        if self._pending_state is not None:
            return int(self._pending_state["n_averaged"])
        return 0

    def learning_rate(self, epoch: int, batch: int, batches_per_epoch: int) -> float:
        """Linear from ``max_lr`` at a cycle's first step to ``min_lr`` at its last."""
        steps = self.cycle_epochs * batches_per_epoch
        step = ((epoch - self.start_epoch) % self.cycle_epochs) * batches_per_epoch + batch
        fraction = min(step / max(steps - 1, 1), 1.0)
        return self.max_lr + (self.min_lr - self.max_lr) * fraction

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if trainer.current_epoch < self.start_epoch:
            return
        # Set before every step, so any scheduler's own update is overridden from start_epoch on.
        lr = self.learning_rate(trainer.current_epoch, batch_idx, _batches_per_epoch(trainer))
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = lr

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch
        if epoch < self.start_epoch or (epoch - self.start_epoch + 1) % self.cycle_epochs:
            return
        self._averaged_for(pl_module).update_parameters(_network(pl_module))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.n_averaged == 0:
            log.warning("SWA: training ended before the first cycle did; the weights are not averaged")
            return
        averaged = self._averaged_for(pl_module)
        batches = self.bn_batches or _batches_per_epoch(trainer)
        if trainer.train_dataloader is None:
            raise RuntimeError("SWA: the trainer has no training loader to recompute batch-norm statistics from")
        update_bn(itertools.islice(trainer.train_dataloader, batches), averaged.module, device=pl_module.device)
        _network(pl_module).load_state_dict(averaged.module.state_dict())
        self.applied = True
        # The network now differs from the one last validated.
        if isinstance(pl_module, _TracksValidation):
            pl_module.validated_at_step = -1

    # -- checkpoints: a resumed run goes on averaging where it stopped ---------------------------------
    def state_dict(self) -> dict:
        if self.averaged is not None:
            return {"n_averaged": int(self.averaged.n_averaged), "averaged": self.averaged.state_dict()}
        return dict(self._pending_state or {"n_averaged": 0})

    def load_state_dict(self, state_dict: dict) -> None:
        if not state_dict.get("n_averaged"):
            return
        if self.averaged is not None:
            self.averaged.load_state_dict(state_dict["averaged"])
        else:
            self._pending_state = state_dict

    def _averaged_for(self, pl_module: L.LightningModule) -> AveragedModel:
        if self.averaged is None:
            self.averaged = AveragedModel(_network(pl_module))
            if self._pending_state is not None:
                self.averaged.load_state_dict(self._pending_state["averaged"])
                self._pending_state = None
        return self.averaged


def _network(pl_module: L.LightningModule) -> nn.Module:
    network = getattr(pl_module, "model", None)
    if not isinstance(network, nn.Module):
        raise TypeError(f"SWA averages the network in .model, which {type(pl_module).__name__} does not have")
    return network


def _batches_per_epoch(trainer: L.Trainer) -> int:
    """Lightning's count, infinite for a loader without a length: the cycles need a finite epoch."""
    batches = trainer.num_training_batches
    if not math.isfinite(batches):
        raise RuntimeError("SWA needs a training loader with a length, to lay its cycles over the epochs")
    return int(batches)
