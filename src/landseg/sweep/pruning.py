"""Pruning at validation: each validation mIoU goes to Optuna, and a hopeless trial stops early.

optuna-integration's ``PyTorchLightningPruningCallback`` does import ``lightning.pytorch`` (2.6 works),
but it raises ``TrialPruned`` inside ``on_validation_end``: Lightning then tears the fit down before its
checkpoint callback (always ordered last) has saved that validation, and ``landseg train`` never writes
``last.ckpt`` and ``summary.json``, so a pruned trial's folder would not be an ordinary run. It would
also report twice when ``train`` scores the final weights after a time limit. This callback only asks
the trainer to stop; the objective raises ``TrialPruned`` once the run has finished cleanly.
"""

from __future__ import annotations

import math
from typing import Callable

import lightning as L

MONITOR = "val_miou"


class ValidationPruning(L.Callback):
    """Reports ``val_miou`` at each validation (step = epoch) to ``trial``; stops training when pruned.

    ``enabled`` False neither reports nor prunes: the repeats after the first of a configuration, whose
    curves would report the first one's epochs again. (``--no-pruning`` reports with Optuna's NopPruner.)
    ``on_report(epoch, value)`` lets a progress display follow the trial.
    """

    def __init__(self, trial, enabled: bool = True, on_report: Callable[[int, float], None] | None = None):
        self.trial = trial
        self.enabled = enabled
        self.on_report = on_report
        self.reported: set[int] = set()
        self.pruned_at: int | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        value = trainer.callback_metrics.get(MONITOR)
        if value is None:
            return
        value = float(value)
        epoch = int(trainer.current_epoch)
        if self.on_report is not None:
            self.on_report(epoch, value)
        if not self.enabled or epoch in self.reported or not math.isfinite(value):
            return  # epoch already reported: the final validation after a time limit
        self.reported.add(epoch)
        self.trial.report(value, step=epoch)
        if self.pruned_at is None and self.trial.should_prune():
            self.pruned_at = epoch
            trainer.should_stop = True
