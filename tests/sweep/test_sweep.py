"""Sweeps of a few tiny trials: the better learning rate wins, pruning, repeats, kill -9 and resume, two
processes on one study."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from typer.testing import CliRunner

from landseg.cli import app
from landseg.config import load_config
from landseg.sweep.objective import SweepPlan
from landseg.sweep.outputs import retry_of
from landseg.sweep.run import run_sweep
from landseg.sweep.study import open_study, storage_url

runner = CliRunner()


def load_study(out, name=None):
    return optuna.load_study(study_name=name or out.name, storage=f"sqlite:///{out / 'study.db'}")


def test_the_better_learning_rate_wins(tmp_path, tiny_config, lr_space):
    out = tmp_path / "lr"
    result = runner.invoke(
        app,
        [
            "sweep",
            str(tiny_config),
            "--space",
            str(lr_space),
            "--trials",
            "2",
            "--out",
            str(out),
            "--sampler",
            "grid",
            "--seed",
            "0",
            "--no-pruning",
        ],
    )
    assert result.exit_code == 0, result.output
    best = load_config(out / "best_config.yaml")  # trains as it is
    assert best.train.optimizer.lr == 0.05 and best.model.widths == [4, 8]
    with open(out / "trials.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(float(r["train.optimizer.lr"]) for r in rows) == [1e-9, 0.05]
    scores = {float(r["train.optimizer.lr"]): float(r["miou"]) for r in rows}
    assert scores[0.05] > scores[1e-9]
    for row in rows:
        (folder,) = json.loads(row["folders"])
        assert (tmp_path / "lr" / "trials").samefile(os.path.dirname(folder))
        assert all(
            (tmp_path / folder / name).exists() for name in ("checkpoints/best.ckpt", "history.csv", "config.yaml")
        )
    for name in (
        "report.html",
        "optimization_history.png",
        "param_importances.png",
        "parallel_coordinate.png",
        "slice.png",
    ):
        assert (out / name).exists(), name
    assert "best config" in result.output


def test_pruning_stops_a_trial_far_behind_and_repeats_average(tmp_path, tiny_config_2_epochs, lr_space):
    out = tmp_path / "prune"
    plan = SweepPlan(
        config=str(tiny_config_2_epochs),
        space=str(lr_space),
        out=str(out),
        trials=2,
        repeats=2,
        study_name="prune",
        startup_trials=1,
    )
    _, base, space = plan.load()
    study = open_study(plan, base, space)
    study.enqueue_trial({"train.optimizer.lr": 0.05})
    study.enqueue_trial({"train.optimizer.lr": 1e-9})
    outputs = run_sweep(plan)

    good, bad = load_study(out, "prune").trials
    assert good.state == optuna.trial.TrialState.COMPLETE
    runs = good.user_attrs["runs"]
    assert [os.path.basename(r) for r in runs] == ["0000-r1", "0000-r2"]
    seeds = [load_config(os.path.join(r, "config.yaml")).train.seed for r in runs]
    assert seeds == [0, 1]
    assert good.value == pytest.approx(sum(good.user_attrs["run_mious"]) / 2)

    assert bad.state == optuna.trial.TrialState.PRUNED and bad.user_attrs["pruned_at_epoch"] == 0
    pruned_run = out / "trials" / "0001-r1"
    assert len((pruned_run / "history.csv").read_text().splitlines()) == 2  # header + the one validation
    assert (pruned_run / "checkpoints" / "last.ckpt").exists() and (pruned_run / "summary.json").exists()
    assert not (out / "trials" / "0001-r2").exists()
    assert outputs.best_trial == 0 and outputs.counts["pruned"] == 1 and outputs.counts["complete"] == 1
    assert any("importances" in note for note in outputs.notes)  # one completed trial: no importances


def _sweep_command(config, space, out, trials, *extra):
    return [
        sys.executable,
        "-m",
        "landseg.cli",
        "sweep",
        str(config),
        "--space",
        str(space),
        "--trials",
        str(trials),
        "--out",
        str(out),
        *extra,
    ]


def test_kill_9_mid_trial_then_resume_keeps_finished_trials(tmp_path, tiny_config, lr_space):
    out = tmp_path / "killed"
    lr_space.write_text("train.optimizer.lr: {choice: [0.01, 0.05]}\n")
    process = subprocess.Popen(
        _sweep_command(tiny_config, lr_space, out, 3, "--seed", "1", "--no-pruning"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 240
        while not (out / "trials" / "0001" / "config.yaml").exists():  # trial 1 is training
            assert process.poll() is None and time.monotonic() < deadline, "the sweep never reached trial 1"
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    before = {t.number: t for t in load_study(out).trials}
    assert before[0].state == optuna.trial.TrialState.COMPLETE
    assert before[1].state == optuna.trial.TrialState.RUNNING  # left behind by the dead process

    result = runner.invoke(
        app,
        [
            "sweep",
            str(tiny_config),
            "--space",
            str(lr_space),
            "--trials",
            "3",
            "--out",
            str(out),
            "--resume",
            "--no-pruning",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "were left running by a process that is gone" in result.output
    trials = load_study(out).trials
    states = [t.state.name for t in trials]
    assert states.count("COMPLETE") == 3 and states.count("FAIL") == 1 and trials[1].state.name == "FAIL"
    assert trials[0].value == before[0].value and trials[0].datetime_complete == before[0].datetime_complete
    retried = [t for t in trials if retry_of(t) == 1]
    assert len(retried) == 1 and retried[0].params == before[1].params and retried[0].state.name == "COMPLETE"
    # trial 0 was not trained again: its one run logged its one validation once
    assert len((out / "trials" / "0000" / "history.csv").read_text().splitlines()) == 2


def test_two_processes_share_one_journal_study(tmp_path, tiny_config, lr_space):
    out = tmp_path / "shared"
    lr_space.write_text("train.optimizer.lr: {log_uniform: [0.01, 0.05]}\n")
    plan = SweepPlan(
        config=str(tiny_config),
        space=str(lr_space),
        out=str(out),
        trials=3,
        study_name="shared",
        storage=f"journal:{tmp_path / 'study.journal'}",
        pruning=False,
        seed=0,
    )
    outputs = run_sweep(plan, workers=2)
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "study.journal"))
    )
    trials = optuna.load_study(study_name="shared", storage=storage).trials
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) == 3 and outputs.counts["complete"] == 3
    workers = {t.user_attrs["worker"].split(":")[1] for t in complete}
    assert len(workers) == 2  # both processes ran trials
    for trial in trials:  # nothing lost: every trial finished, or stood down unrun when the sweep was full
        assert trial.state.name == "COMPLETE" or trial.user_attrs.get("surplus")
    folders = sorted(p.name for p in (out / "trials").iterdir())
    assert folders == sorted(f"{t.number:04d}" for t in complete)
    assert storage_url(plan).startswith("journal:")


def test_config_first_runs_the_configs_own_values_as_trial_0(tmp_path, tiny_config):
    space = tmp_path / "space.yaml"
    space.write_text("train.optimizer.lr: {log_uniform: [1e-4, 0.05]}\n")
    out = tmp_path / "first"
    command = ["sweep", str(tiny_config), "--space", str(space), "--trials", "2", "--out", str(out)]
    result = runner.invoke(app, [*command, "--seed", "3", "--config-first", "--no-pruning"])
    assert result.exit_code == 0, result.output
    assert "trial 0 runs the config's own values: lr=0.001" in result.output
    with open(out / "trials.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [float(r["train.optimizer.lr"]) == 0.001 for r in rows] == [True, False]
    assert rows[0]["note"] == "the config's own values" and rows[0]["state"] == "COMPLETE"
    trained = load_config(out / "trials" / "0000" / "config.yaml")
    assert trained.train.optimizer.lr == load_config(tiny_config).train.optimizer.lr
