"""The study: where it is stored, how workers share it, and how a killed trial comes back.

Storage is ``sqlite:///DIR/study.db`` unless ``--storage`` names another: any Optuna RDB URL
(``postgresql://...``, ``mysql://...``), or ``journal:PATH`` for Optuna's journal file (one file
that many processes append to, also over NFS).

Every worker (this process, ``--workers N`` local processes, or one task per Dask worker) runs the same
loop until the study holds ``trials`` finished trials (complete or pruned) counting the running ones:
recover dead trials, stop if enough, run one trial. A trial whose process died (``kill -9``, a lost
node) is left RUNNING by Optuna; a worker on the same host sees that its process is gone, marks it
FAIL and enqueues its parameters again (``RetryDeadTrial``); on RDB storages
Optuna's heartbeat does the same for workers on other hosts after a grace period.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.trial import TrialState

from landseg.errors import ConfigError, LandsegError
from landseg.sweep.objective import (
    WORKER_ATTR,
    InvalidCombination,
    Reporter,
    SurplusTrial,
    SweepPlan,
    TrialRunner,
    plan_record,
    target_trials,
    worker_is_dead,
)
from landseg.sweep.pruning import SameTimeMedianPruner
from landseg.sweep.space import SearchSpace

PLAN_ATTR = "landseg_plan"
HEARTBEAT_SECONDS = 60
GRACE_SECONDS = 300
MAX_INVALID = 20
"""Consecutive invalid combinations after which a worker gives up on the space."""
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)

log = logging.getLogger(__name__)


class RetryDeadTrial:
    """Queue a dead trial's parameters again, at most ``max_retries`` times along one chain of retries.

    Records ``failed_trial`` and ``retry_history`` as Optuna's ``RetryHeartbeatStaleTrialCallback`` does
    (so its ``retried_trial_number`` reads them), but copies none of the dead trial's user attributes:
    the new trial must not look owned by the dead process, nor carry its partial results.
    """

    def __init__(self, max_retries: int):
        self.max_retries = max_retries

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        history = [*trial.system_attrs.get("retry_history", []), trial.number]
        if len(history) > self.max_retries:
            return
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.WAITING,
                params=trial.params,
                distributions=trial.distributions,
                system_attrs={
                    "failed_trial": trial.system_attrs.get("failed_trial", trial.number),
                    "retry_history": history,
                },
            )
        )


def storage_url(plan: SweepPlan) -> str:
    return plan.storage or f"sqlite:///{(plan.out_dir / 'study.db').resolve()}"


def open_storage(plan: SweepPlan):
    """The Optuna storage of ``plan``: journal file, or RDB with heartbeat and retry of stale trials."""
    url = storage_url(plan)
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        path = Path(url.removeprefix("journal:").removeprefix("//"))
        if not path.parent.is_dir():
            raise ConfigError("--storage: the journal file's folder does not exist", path.parent)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    if "://" not in url:
        raise ConfigError(
            f"--storage {url!r}: give an Optuna storage URL (sqlite:///study.db, postgresql://...) or journal:PATH"
        )
    engine = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else None
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine,
                heartbeat_interval=HEARTBEAT_SECONDS,
                grace_period=GRACE_SECONDS,
                heartbeat_stale_trial_callback=RetryDeadTrial(plan.max_retries),
            )
    except Exception as exc:  # SQLAlchemy: unknown dialect, unreachable server, unreadable file
        raise ConfigError(f"--storage {url}: cannot open ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None


def make_sampler(plan: SweepPlan, space: SearchSpace, worker: int = 0) -> optuna.samplers.BaseSampler:
    seed = None if plan.seed is None else plan.seed + worker
    if plan.sampler == "grid":
        return optuna.samplers.GridSampler(space.grid(), seed=seed)
    if plan.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if plan.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    raise ConfigError(f"--sampler {plan.sampler!r}: choose tpe, random or grid")


def make_pruner(plan: SweepPlan) -> optuna.pruners.BasePruner:
    if not plan.pruning:
        return optuna.pruners.NopPruner()
    if plan.minutes_per_trial is not None:  # equal time, not equal epochs (landseg.sweep.pruning)
        return SameTimeMedianPruner(n_startup_trials=plan.startup_trials)
    return optuna.pruners.MedianPruner(n_startup_trials=plan.startup_trials, n_warmup_steps=0)


def open_study(
    plan: SweepPlan, base: dict, space: SearchSpace, worker: int = 0, must_exist: bool = False
) -> optuna.Study:
    """Create or load the study; refuse one that was started with another config, space or budget."""
    storage = open_storage(plan)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our own lines say how each trial ended
    exists = plan.study_name in {s.study_name for s in storage.get_all_studies()}
    if must_exist and not exists:
        raise ConfigError(f"--resume: no study {plan.study_name!r} in {storage_url(plan)}")
    study = optuna.create_study(
        storage=storage,
        study_name=plan.study_name,
        direction="maximize",
        load_if_exists=True,
        sampler=make_sampler(plan, space, worker),
        pruner=make_pruner(plan),
    )
    record = plan_record(plan, base, space)
    stored = study.user_attrs.get(PLAN_ATTR)
    if stored is None:
        study.set_user_attr(PLAN_ATTR, record)
        study.set_user_attr("config_path", str(plan.config))
        study.set_user_attr("space_path", str(plan.space))
    elif stored != record:
        raise ConfigError(
            f"study {plan.study_name!r} in {storage_url(plan)} was started with another config, search space, "
            "--repeats or --minutes-per-trial; use another --out, --storage or --study-name"
        )
    return study


def recover_dead_trials(study: optuna.Study, max_retries: int) -> list[int]:
    """Mark FAIL the RUNNING trials whose process on this host is gone, and enqueue each again."""
    recovered = []
    retry = RetryDeadTrial(max_retries)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get(WORKER_ATTR)
        if not worker or not worker_is_dead(worker):
            continue
        try:
            study._storage.set_trial_user_attr(trial._trial_id, "killed", True)
            study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
        except (RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
            continue  # another worker recovered it first
        retry(study, study._storage.get_trial(trial._trial_id))
        recovered.append(trial.number)
    return recovered


def counted_trials(study: optuna.Study) -> int:
    """Finished, running and queued trials: what the sweep already has or will have."""
    return sum(1 for t in study.get_trials(deepcopy=False, states=COUNTED) if not t.user_attrs.get("surplus"))


def finished_trials(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def ran_here(trials) -> list[optuna.trial.FrozenTrial]:
    """The trials this process ran (its pid in their worker attribute)."""
    return [t for t in trials if t.user_attrs.get(WORKER_ATTR, "").split(":")[1:2] == [str(os.getpid())]]


def requeue_interrupted(study: optuna.Study, before: set[int], max_retries: int) -> None:
    """Mark FAIL this process's trial that Ctrl-C stopped, and queue its parameters for ``--resume``."""
    for trial in ran_here(t for t in study.get_trials(deepcopy=False) if t.number not in before):
        if trial.user_attrs.get("surplus") or trial.state not in (TrialState.RUNNING, TrialState.FAIL):
            continue
        if trial.state == TrialState.RUNNING:
            study._storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
            study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
        RetryDeadTrial(max_retries)(study, study._storage.get_trial(trial._trial_id))


def run_worker(
    plan: SweepPlan,
    worker: int = 0,
    reporter: Reporter | None = None,
    on_trial_end: Callable[[optuna.trial.FrozenTrial], None] | None = None,
    threads: int | None = None,
) -> int:
    """Run trials of ``plan``'s study until it holds enough; returns how many this worker ran."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    _, base, space = plan.load()
    study = open_study(plan, base, space, worker)
    runner = TrialRunner(plan, base, space, reporter)
    ran = invalid = 0
    needed = target_trials(plan, space)
    while True:
        recover_dead_trials(study, plan.max_retries)
        waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        if counted_trials(study) >= needed and not waiting:
            return ran  # queued trials (retries, enqueued by hand) run even when they make the count
        before = {t.number for t in study.get_trials(deepcopy=False)}
        try:
            study.optimize(runner, n_trials=1, catch=(InvalidCombination, SurplusTrial), gc_after_trial=True)
        except (KeyboardInterrupt, SystemExit):
            # Ctrl-C: Optuna marks the trial FAIL, or Lightning's own handler exits while it is RUNNING.
            requeue_interrupted(study, before, plan.max_retries)
            raise KeyboardInterrupt from None
        ended = ran_here(t for t in study.get_trials(deepcopy=False) if t.number not in before)
        for trial in ended:
            if trial.user_attrs.get("surplus"):
                continue
            ran += 1
            invalid = invalid + 1 if "error" in trial.user_attrs else 0
            if on_trial_end is not None:
                on_trial_end(trial)
        if invalid >= MAX_INVALID:
            raise ConfigError(
                f"{MAX_INVALID} sampled combinations in a row made invalid configs "
                f"(last: {ended[-1].user_attrs['error']})",
                plan.space,
            )


def _worker_process(plan: SweepPlan, worker: int, threads: int) -> None:
    """Entry point of a ``--workers`` process: one-line errors, exit code 1."""
    try:
        run_worker(plan, worker, threads=threads)
    except LandsegError as exc:
        print(f"error: worker {worker}: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


def run_local_workers(plan: SweepPlan, workers: int, poll: Callable[[], None], interval: float = 2.0) -> None:
    """``workers`` processes on this machine, each with an equal share of the cores."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_worker_process, args=(plan, i, threads), name=f"landseg-sweep-{i}")
        for i in range(workers)
    ]
    for process in processes:
        process.start()
    try:
        while any(p.is_alive() for p in processes):
            poll()
            time.sleep(interval)
    except KeyboardInterrupt:
        for process in processes:
            process.terminate()
        for process in processes:
            process.join()
        raise
    for process in processes:
        process.join()
    poll()
    failed = [f"worker {i} (exit code {p.exitcode})" for i, p in enumerate(processes) if p.exitcode]
    if failed:
        raise LandsegError(f"sweep stopped: {', '.join(failed)} failed; the error is printed above")


def run_dask_workers(plan: SweepPlan, address: str, poll: Callable[[], None], interval: float = 2.0) -> None:
    """One worker loop per Dask worker of the cluster at ``address``; they share the study's storage,
    which must therefore be reachable from every worker (a shared folder for SQLite or a journal file,
    or a database server)."""
    from distributed import Client

    try:
        client = Client(address, timeout="30s")
    except (OSError, TimeoutError) as exc:
        raise ConfigError(f"cannot reach the Dask scheduler at {address} ({exc})") from None
    try:
        workers = list(client.scheduler_info(n_workers=-1)["workers"])
        if not workers:
            raise ConfigError(f"the Dask cluster at {address} has no workers")
        futures = [
            client.submit(
                run_worker,
                plan,
                i,
                workers=[w],
                allow_other_workers=False,
                pure=False,
                key=f"landseg-sweep-{plan.study_name}-{i}-{time.time_ns()}",
            )
            for i, w in enumerate(workers)
        ]
        while not all(f.done() for f in futures):
            poll()
            time.sleep(interval)
        poll()
        for future in futures:
            future.result()  # re-raises a worker's error here
    finally:
        client.close()
