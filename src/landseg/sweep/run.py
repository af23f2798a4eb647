"""``landseg sweep``: check everything, run the trials (here, in local processes or on Dask), write the outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from landseg.data.catalog import build_catalog
from landseg.errors import ConfigError
from landseg.sweep.objective import CONFIG_FIRST_ATTR, SweepPlan, target_trials
from landseg.sweep.outputs import SweepOutputs, write_outputs
from landseg.sweep.space import SearchSpace
from landseg.sweep.study import (
    finished_trials,
    open_study,
    recover_dead_trials,
    run_dask_workers,
    run_local_workers,
    run_worker,
)


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def describe_values(values: dict[str, Any]) -> str:
    return ", ".join(f"{key.rsplit('.', 1)[-1]}={_short(v)}" for key, v in values.items())


class SweepProgress:
    """A bar of finished trials; in this process also the running trial and its validations."""

    def __init__(self, console: Console, study: optuna.Study, total: int):
        self.study = study
        self.console = console
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        self.task = self.progress.add_task("sweep", total=total, completed=min(finished_trials(study), total))
        self.current = ""

    def __enter__(self) -> SweepProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def trial_started(self, number: int, values: dict[str, Any], repeat: int, repeats: int) -> None:
        runs = f" run {repeat + 1}/{repeats}" if repeats > 1 else ""
        self.current = f"trial {number}{runs}: {describe_values(values)}"
        self.progress.update(self.task, description=escape(self.current))

    def validated(self, number: int, epoch: int, value: float) -> None:
        self.progress.update(self.task, description=escape(f"{self.current}; epoch {epoch} mIoU {value:.3f}"))

    def trial_ended(self, trial: FrozenTrial) -> None:
        if trial.state == TrialState.COMPLETE:
            outcome = f"[green]mIoU {trial.value:.4f}[/]"
        elif trial.state == TrialState.PRUNED:
            outcome = f"[yellow]pruned at epoch {trial.user_attrs.get('pruned_at_epoch')}[/]"
        else:
            outcome = f"[red]{trial.state.name.lower()}[/] {escape(str(trial.user_attrs.get('error', '')))}"
        self.progress.console.print(
            f"trial {trial.number}: {escape(describe_values(trial.params))} -> {outcome}", highlight=False
        )
        self.poll()

    def poll(self) -> None:
        self.progress.update(self.task, completed=finished_trials(self.study))


def enqueue_config(study: optuna.Study, space: SearchSpace, base: dict, console: Console) -> None:
    """Queue the config's own values as the first trial of a new study (checked on every run)."""
    params = space.params_of_config(base)
    if study.get_trials(deepcopy=False):
        return
    study.enqueue_trial(params, user_attrs={CONFIG_FIRST_ATTR: True})
    console.print(f"trial 0 runs the config's own values: {escape(describe_values(params))}", highlight=False)


def run_sweep(
    plan: SweepPlan,
    workers: int | None = None,
    dask: str | None = None,
    resume: bool = False,
    console: Console | None = None,
) -> SweepOutputs:
    """Run ``plan``'s trials until its study holds ``plan.trials`` finished ones, then write the outputs."""
    console = console or Console(stderr=True)
    if plan.trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {plan.trials}")
    if plan.repeats < 1:
        raise ConfigError(f"--repeats must be at least 1, got {plan.repeats}")
    if plan.minutes_per_trial is not None and plan.minutes_per_trial <= 0:
        raise ConfigError(f"--minutes-per-trial must be above 0, got {plan.minutes_per_trial}")
    if workers is not None and dask:
        raise ConfigError("--dask and --workers exclude each other: a scheduler address uses its own workers")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    base_config, base, space = plan.load()  # every endpoint and choice checked before any trial
    total = target_trials(plan, space)  # the grid sampler checks the space here
    if total < plan.trials:
        console.print(f"the grid has {total} points: the sweep stops after {total} trials")
    if not build_catalog(base_config.data).splits.get("val"):
        raise ConfigError("a sweep scores trials on validation images: the config's data.split has none", plan.config)
    Path(plan.out).mkdir(parents=True, exist_ok=True)
    study = open_study(plan, base, space, must_exist=resume)
    recovered = recover_dead_trials(study, plan.max_retries)
    if recovered:
        console.print(
            f"trials {', '.join(map(str, recovered))} were left running by a process that is gone: "
            "marked failed and queued again"
        )
    if plan.config_first:
        enqueue_config(study, space, base, console)
    done = finished_trials(study)
    if done:
        console.print(f"study {plan.study_name!r}: {done} of {total} trials already finished")
    try:
        with SweepProgress(console, study, total) as display:
            if dask:
                run_dask_workers(plan, dask, display.poll)
            elif workers and workers > 1:
                run_local_workers(plan, workers, display.poll)
            else:
                run_worker(plan, 0, reporter=display, on_trial_end=display.trial_ended)
    except KeyboardInterrupt:
        write_outputs(study, plan, base, space)
        raise
    return write_outputs(study, plan, base, space)
