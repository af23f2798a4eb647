"""Pruning at validation: each validation mIoU goes to Optuna, and a hopeless trial stops early.

optuna-integration's ``PyTorchLightningPruningCallback`` does import ``lightning.pytorch`` (2.6 works),
but it raises ``TrialPruned`` inside ``on_validation_end``: Lightning then tears the fit down before its
checkpoint callback (always ordered last) has saved that validation, and ``landseg train`` never writes
``last.ckpt`` and ``summary.json``, so a pruned trial's folder would not be an ordinary run. It would
also report twice when ``train`` scores the final weights after a time limit. This callback only asks
the trainer to stop; the objective raises ``TrialPruned`` once the run has finished cleanly.

Under a time budget (``--minutes-per-trial``) trials are compared at equal training time, not at equal
epoch: configurations differ several-fold in what an epoch costs (a larger encoder, batch or input
scale), and Optuna's median pruner at equal epochs pruned the Dubai default recipe after 3 minutes for
scoring below trials that had trained 4 to 7 minutes to reach the same epoch (BENCHMARKS.md section 1).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable

import lightning as L
import optuna
from optuna.trial import TrialState

MONITOR = "val_miou"


class ValidationPruning(L.Callback):
    """Reports ``val_miou`` at each validation to ``trial``; stops training when pruned. The step is the
    epoch, or with ``seconds_as_step`` the whole seconds since training started (for ``SameTimeMedianPruner``).

    ``enabled`` False neither reports nor prunes: the repeats after the first of a configuration, whose
    curves would report the first one's epochs again. (``--no-pruning`` reports with Optuna's NopPruner.)
    ``on_report(epoch, value)`` lets a progress display follow the trial.
    """

    def __init__(
        self,
        trial,
        enabled: bool = True,
        on_report: Callable[[int, float], None] | None = None,
        seconds_as_step: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.trial = trial
        self.enabled = enabled
        self.on_report = on_report
        self.seconds_as_step = seconds_as_step
        self.clock = clock
        self.started: float | None = None
        self.reported: set[int] = set()
        self.reported_steps: set[int] = set()
        self.pruned_at: int | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.started = self.clock()

    def _step(self, epoch: int) -> int:
        if not self.seconds_as_step:
            return epoch
        if self.started is None:  # Lightning calls on_train_start first; a validation without training counts from here
            self.started = self.clock()
        return int(self.clock() - self.started)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        metric = trainer.callback_metrics.get(MONITOR)
        if metric is None:
            return
        value = float(metric)
        epoch = int(trainer.current_epoch)
        if self.on_report is not None:
            self.on_report(epoch, value)
        if not self.enabled or epoch in self.reported or not math.isfinite(value):
            return  # epoch already reported: the final validation after a time limit
        step = self._step(epoch)
        if step in self.reported_steps:
            return  # two validations within one second: Optuna keeps the first report of a step
        self.reported.add(epoch)
        self.reported_steps.add(step)
        self.trial.report(value, step=step)
        if self.pruned_at is None and self.trial.should_prune():
            self.pruned_at = epoch
            trainer.should_stop = True


class SameTimeMedianPruner(optuna.pruners.BasePruner):
    """Prunes a trial whose best validation mIoU so far is below the median of what the completed trials
    had reached by the same training time (steps are seconds, from ``ValidationPruning(seconds_as_step=True)``).

    A completed trial that had not validated by then does not count, so a trial is never judged against
    runs that had not yet been measured at its age; with none to compare, it goes on.
    """

    def __init__(self, n_startup_trials: int = 2):
        self.n_startup_trials = n_startup_trials

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        seconds = trial.last_step
        if seconds is None:
            return False
        completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if len(completed) < self.n_startup_trials:
            return False
        reached = [best for t in completed if (best := _best_by(t.intermediate_values, seconds)) is not None]
        own = _best_by(trial.intermediate_values, seconds)
        return bool(reached) and own is not None and own < statistics.median(reached)


def _best_by(values: dict[int, float], seconds: int) -> float | None:
    finite = [v for step, v in values.items() if step <= seconds and math.isfinite(v)]
    return max(finite) if finite else None
