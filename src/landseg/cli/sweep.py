"""``landseg sweep``: hyper-parameter search over ``landseg train`` runs (the work is in ``landseg.sweep``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from landseg.cli.errors import console


def sweep_command(
    config: Annotated[Path, typer.Argument(help="Experiment YAML every trial starts from.")],
    space: Annotated[
        Path, typer.Option("--space", help="Search space YAML: dotted config keys with ranges or choices.")
    ],
    trials: Annotated[
        int, typer.Option("--trials", help="Finished trials (complete or pruned) the study should hold.")
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Sweep folder: trials/, study.db, trials.csv, best_config.yaml, report.html.")
    ],
    minutes_per_trial: Annotated[
        float | None, typer.Option("--minutes-per-trial", help="Training time budget of each run.")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a config value for every trial: dotted.key=value.")
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option("--storage", help="Optuna storage URL, or journal:PATH; default sqlite:///OUT/study.db."),
    ] = None,
    study_name: Annotated[
        str | None, typer.Option("--study-name", help="Study name in the storage; default the name of OUT.")
    ] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Run N trials at once in local processes.")] = None,
    dask: Annotated[
        str | None, typer.Option("--dask", help="Run trials on the Dask cluster at this scheduler address.")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an existing study (rerunning the same command does too).")
    ] = False,
    repeats: Annotated[
        int,
        typer.Option(
            "--repeats", help="Runs of each configuration with seeds train.seed, +1, ...; the mean is optimized."
        ),
    ] = 1,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the sampler (worker i uses seed + i).")] = None,
    sampler: Annotated[
        str, typer.Option("--sampler", help="tpe, random, or grid (every combination of choices and int ranges).")
    ] = "tpe",
    pruning: Annotated[
        bool,
        typer.Option(
            "--pruning/--no-pruning",
            help="Stop trials whose validation mIoU is below the median of earlier trials at the same epoch.",
        ),
    ] = True,
    startup_trials: Annotated[
        int, typer.Option("--startup-trials", help="Trials that finish before pruning starts.")
    ] = 2,
    config_first: Annotated[
        bool,
        typer.Option(
            "--config-first",
            help="A new study's first trial runs the config's own values of the searched keys (never pruned).",
        ),
    ] = False,
):
    """Search config values for the best validation mIoU; each trial is an ordinary `landseg train` run.

    Writes OUT/trials/NNNN[-rK] (one run folder per run), OUT/trials.csv, OUT/best_config.yaml (trains as it is),
    plots and OUT/report.html. See docs/SWEEP.md.
    """
    from landseg.sweep.objective import SweepPlan
    from landseg.sweep.run import run_sweep

    if storage and storage.startswith("journal:"):
        storage = "journal:" + str(Path(storage.removeprefix("journal:")).resolve())  # worker processes, Dask
    plan = SweepPlan(
        config=str(config.resolve()),
        space=str(space.resolve()),
        out=str(out.resolve()),
        trials=trials,
        overrides=tuple(set_ or ()),
        repeats=repeats,
        minutes_per_trial=minutes_per_trial,
        storage=storage,
        study_name=study_name or out.resolve().name,
        seed=seed,
        sampler=sampler,
        pruning=pruning,
        startup_trials=startup_trials,
        config_first=config_first,
    )
    result = run_sweep(plan, workers=workers, dask=dask, resume=resume, console=console)
    counts = ", ".join(f"{n} {state}" for state, n in result.counts.items() if n)
    console.print(f"[green]sweep[/] {plan.study_name}: {counts}")
    if result.best_config is not None:
        console.print(
            f"  best: trial {result.best_trial}, validation mIoU {result.best_value:.4f}\n"
            f"  best config: {result.best_config}"
        )
    for note in result.notes:
        console.print(f"  [yellow]note[/] {note}", highlight=False)
    console.print(f"  trials: {result.trials_csv}\n  report: {result.report}")
