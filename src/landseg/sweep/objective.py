"""One trial of a sweep: the sampled values put into the config, R ordinary training runs, their mean.

Each run is ``landseg train`` itself (``landseg.train.run.train``) in ``DIR/trials/NNNN`` (or
``NNNN-r1`` ... ``NNNN-rR`` with repeats), so a trial's folder holds checkpoints, history and card like
any run, and its ``config.yaml`` trains again as it is. Repeat ``k`` trains with seed ``train.seed + k - 1``.
The objective is the best validation mIoU of each run (the score of its ``best.ckpt``), averaged over
the repeats. Only the first repeat can be pruned: the others measure a configuration already let through.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import optuna

from landseg.config import ExperimentConfig, load_config, parse_config
from landseg.errors import ConfigError
from landseg.sweep.pruning import ValidationPruning
from landseg.sweep.space import SearchSpace, apply_values, load_space

WORKER_ATTR = "worker"
"""User attribute of a trial: ``host:pid:start`` of the process running it (dead-trial recovery)."""
SURPLUS_ATTR = "surplus"
CONFIG_FIRST_ATTR = "config_first"
"""User attribute of the trial that runs the config's own values (``--config-first``)."""


class InvalidCombination(Exception):
    """Sampled values that are each valid but not together: the trial fails, the sweep goes on."""


class SurplusTrial(Exception):
    """Another process started the last trial the sweep needed first: this one is dropped unrun."""


@dataclass(frozen=True)
class SweepPlan:
    """Everything a worker needs to run trials, as plain picklable values (processes, Dask)."""

    config: str
    space: str
    out: str
    trials: int
    overrides: tuple[str, ...] = ()
    repeats: int = 1
    minutes_per_trial: float | None = None
    storage: str | None = None
    study_name: str = "sweep"
    seed: int | None = None
    sampler: str = "tpe"
    pruning: bool = True
    startup_trials: int = 2
    """Trials that must finish before the pruner compares a trial with them."""
    max_retries: int = 2
    """How often the configuration of a trial killed with its process is tried again."""
    config_first: bool = False
    """A new study's first trial runs the config's own values of the searched keys, so that the pruner and
    the ranking measure every other trial against the recipe the sweep sets out to improve."""

    def load(self) -> tuple[ExperimentConfig, dict, SearchSpace]:
        """The base config (``--set`` applied), its mapping, and the checked search space."""
        base = load_config(self.config, list(self.overrides))
        data = base.to_yaml_dict()  # paths already absolute: a trial's config works from any folder
        return base, data, load_space(self.space, data)

    @property
    def out_dir(self) -> Path:
        return Path(self.out)


def target_trials(plan: SweepPlan, space: SearchSpace) -> int:
    """``plan.trials``, or fewer with the grid sampler when the grid has fewer points (no point twice)."""
    if plan.sampler != "grid":
        return plan.trials
    return min(plan.trials, math.prod(len(values) for values in space.grid().values()))


def trial_folder(out: Path, number: int, repeat: int, repeats: int) -> Path:
    """``DIR/trials/NNNN``, or ``NNNN-rK`` (K from 1) when configurations are repeated."""
    name = f"{number:04d}" + (f"-r{repeat + 1}" if repeats > 1 else "")
    return Path(out) / "trials" / name


def process_start(pid: int) -> str:
    """The start time of process ``pid`` in clock ticks since boot ("" where /proc is absent or the
    process is gone): a pid reused by a new process has another start time."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    fields = stat[stat.rindex(")") + 2 :].split()
    return "" if fields[0] in ("Z", "X") else fields[19]


def this_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{process_start(os.getpid())}"


def worker_is_dead(worker: str) -> bool:
    """True only when ``worker`` ran on this host and its process is gone (or is another process now).
    A worker on another host is never declared dead here (the RDB heartbeat covers those)."""
    host, _, rest = worker.partition(":")
    pid_text, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    now = process_start(pid)
    return Path("/proc").is_dir() and now != start


class Reporter(Protocol):
    def trial_started(self, number: int, values: dict[str, Any], repeat: int, repeats: int) -> None: ...
    def validated(self, number: int, epoch: int, value: float) -> None: ...


@dataclass
class TrialRunner:
    """The Optuna objective: ``runner(trial)`` trains the trial's configuration and returns its score."""

    plan: SweepPlan
    base: dict
    space: SearchSpace
    reporter: Reporter | None = None
    progress: bool = False

    def __call__(self, trial: optuna.Trial) -> float:
        trial.set_user_attr(WORKER_ATTR, this_worker())
        self.check_surplus(trial)
        values = self.space.suggest(trial)
        data = apply_values(self.base, values)
        try:
            parse_config(data)  # each value was checked alone; together they may still clash
        except ConfigError as exc:
            trial.set_user_attr("error", exc.problem)
            raise InvalidCombination(exc.problem) from None
        repeats = self.plan.repeats
        scores: list[float] = []
        folders: list[str] = []
        for repeat in range(repeats):
            config = parse_config(copy.deepcopy(data))
            config.train.seed = config.train.seed + repeat
            if "onnx_export" in type(config.train).model_fields:
                # Trials are measurements, not deliverables: the winner is trained again from best_config.yaml.
                config.train.onnx_export = False
            run_dir = trial_folder(self.plan.out_dir, trial.number, repeat, repeats)
            if self.reporter is not None:
                self.reporter.trial_started(trial.number, values, repeat, repeats)
            pruning = ValidationPruning(
                trial,
                enabled=repeat == 0,
                on_report=functools.partial(self.reporter.validated, trial.number) if self.reporter else None,
                seconds_as_step=self.plan.minutes_per_trial is not None,
            )
            result = _train(config, run_dir, self.plan.minutes_per_trial, self.progress, pruning)
            if not math.isfinite(result.best_miou):
                raise ConfigError("a sweep needs validation images: the config's data.split has none", self.plan.config)
            scores.append(result.best_miou)
            folders.append(str(run_dir))
            trial.set_user_attr("runs", folders)
            trial.set_user_attr("run_mious", scores)
            if pruning.pruned_at is not None:
                trial.set_user_attr("pruned_at_epoch", pruning.pruned_at)
                raise optuna.TrialPruned(f"pruned at the validation of epoch {pruning.pruned_at}")
        return float(sum(scores) / len(scores))

    def check_surplus(self, trial: optuna.Trial) -> None:
        """Several processes may start a trial when one is missing: the later ones stand down."""
        active = (
            optuna.trial.TrialState.COMPLETE,
            optuna.trial.TrialState.PRUNED,
            optuna.trial.TrialState.RUNNING,
            optuna.trial.TrialState.WAITING,
        )
        earlier = [
            t
            for t in trial.study.get_trials(deepcopy=False, states=active)
            if t.number < trial.number and not t.user_attrs.get(SURPLUS_ATTR)
        ]
        needed = target_trials(self.plan, self.space)
        if len(earlier) >= needed:
            trial.set_user_attr(SURPLUS_ATTR, True)
            raise SurplusTrial(f"trial {trial.number} is beyond the {needed} the sweep needs")


def _train(config: ExperimentConfig, run_dir: Path, minutes: float | None, progress: bool, pruning: ValidationPruning):
    from landseg.train.run import train

    return train(config, run_dir, max_minutes=minutes, progress=progress, extra_callbacks=[pruning])


def plan_record(plan: SweepPlan, base: dict, space: SearchSpace) -> str:
    """What makes two runs of the command the same study: config, space, repeats, budget per trial."""
    return json.dumps(
        {
            "config": base,
            "space": json.loads(space.fingerprint()),
            "repeats": plan.repeats,
            "minutes_per_trial": plan.minutes_per_trial,
        },
        sort_keys=True,
        default=str,
    )
