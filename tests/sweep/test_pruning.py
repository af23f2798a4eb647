"""Pruning under a time budget compares trials at equal training time, not at equal epoch."""

from types import SimpleNamespace

import optuna
import pytest
import torch

from landseg.sweep import objective
from landseg.sweep.objective import SweepPlan
from landseg.sweep.pruning import SameTimeMedianPruner, ValidationPruning
from landseg.sweep.run import run_sweep
from landseg.sweep.study import make_pruner

# Two completed trials of an expensive configuration: their first validation came after 400 s.
SLOW_TRIALS = [{400: 0.57, 800: 0.62}, {420: 0.60, 810: 0.61}]


def study_with(pruner, steps_as_epochs: bool = False) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for values in SLOW_TRIALS:
        if steps_as_epochs:
            values = dict(enumerate(values.values()))
        study.add_trial(
            optuna.trial.create_trial(
                value=max(values.values()), intermediate_values=values, distributions={}, params={}
            )
        )
    return study


def test_a_cheap_trial_is_not_judged_against_trials_not_yet_measured_at_its_age():
    # At equal epochs Optuna's median pruner stops a cheap trial whose first validation (after 190 s)
    # is below the expensive trials' first validations (after 400 s and more)...
    by_epoch = study_with(optuna.pruners.MedianPruner(n_startup_trials=2), steps_as_epochs=True).ask()
    by_epoch.report(0.555, step=0)
    assert by_epoch.should_prune()
    # ...at equal time no completed trial had validated after 190 s: nothing to compare, it goes on.
    study = study_with(SameTimeMedianPruner(n_startup_trials=2))
    cheap = study.ask()
    cheap.report(0.555, step=190)
    assert not cheap.should_prune()
    # After 450 s both had validated (0.57, 0.60: median 0.585); its best so far, 0.555, is below.
    cheap.report(0.50, step=450)
    assert cheap.should_prune()
    good = study.ask()
    good.report(0.59, step=450)
    assert not good.should_prune()


def test_no_pruning_before_the_startup_trials_complete():
    study = study_with(SameTimeMedianPruner(n_startup_trials=3))
    trial = study.ask()
    trial.report(0.1, step=900)
    assert not trial.should_prune()


class RecordingTrial:
    def __init__(self, prune: bool):
        self.reports, self.prune = [], prune

    def report(self, value, step):
        self.reports.append((step, value))

    def should_prune(self):
        return self.prune


@pytest.mark.parametrize("seconds_as_step, expected_step", [(True, 190), (False, 3)])
def test_validations_are_reported_at_seconds_since_training_started_or_at_epochs(seconds_as_step, expected_step):
    times = iter([100.0, 290.0])
    trial = RecordingTrial(prune=True)
    callback = ValidationPruning(trial, seconds_as_step=seconds_as_step, clock=lambda: next(times))
    trainer = SimpleNamespace(
        sanity_checking=False,
        is_global_zero=True,
        current_epoch=3,
        should_stop=False,
        callback_metrics={"val_miou": torch.tensor(0.5)},
    )
    callback.on_train_start(trainer, None)
    callback.on_validation_end(trainer, None)
    assert trial.reports == [(expected_step, pytest.approx(0.5))]
    assert trainer.should_stop and callback.pruned_at == 3  # the record keeps the epoch either way


@pytest.mark.parametrize(
    "minutes, pruning, kind",
    [
        (8.0, True, SameTimeMedianPruner),
        (None, True, optuna.pruners.MedianPruner),
        (8.0, False, optuna.pruners.NopPruner),
    ],
)
def test_a_time_budget_makes_the_sweep_prune_at_equal_time(minutes, pruning, kind):
    plan = SweepPlan(config="c.yaml", space="s.yaml", out="out", trials=4, minutes_per_trial=minutes, pruning=pruning)
    assert type(make_pruner(plan)) is kind


def test_a_time_budgeted_sweep_reports_seconds_of_training(tmp_path, tiny_config_2_epochs, lr_space, monkeypatch):
    made = []

    class Recording(ValidationPruning):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(objective, "ValidationPruning", Recording)
    out = tmp_path / "timed"
    run_sweep(
        SweepPlan(
            config=str(tiny_config_2_epochs),
            space=str(lr_space),
            out=str(out),
            trials=1,
            minutes_per_trial=5.0,
            study_name="timed",
        )
    )
    (trial,) = optuna.load_study(study_name="timed", storage=f"sqlite:///{out / 'study.db'}").trials
    (callback,) = made
    assert callback.seconds_as_step and callback.started is not None  # the clock started with training
    assert trial.intermediate_values and max(trial.intermediate_values) <= 5 * 60
