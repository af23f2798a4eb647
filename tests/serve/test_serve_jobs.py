"""The job queue, the model card's validation score, settings and the command, without HTTP."""

import threading
import time

import pytest
import torch
import typer
from lightning.pytorch.callbacks import ModelCheckpoint
from typer.testing import CliRunner

from landseg.checkpoint import read_checkpoint
from landseg.cli.serve import serve_command
from landseg.errors import ConfigError
from landseg.serve.jobs import JobManager, JobStatus, QueueFull
from landseg.serve.model_info import describe_model, validation_miou
from landseg.serve.settings import ServeSettings


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def start_job(manager, name="scene"):
    job = manager.reserve(name)
    (job.directory / "input.png").write_bytes(b"x")
    return manager.start(job, options=None, image=None)


def test_capacity_counts_uploads_in_progress_running_and_queued_jobs(tmp_path):
    gate = threading.Event()
    manager = JobManager(tmp_path / "root", lambda job, report: gate.wait(10), max_running=1, max_queued=2)
    (tmp_path / "root").mkdir()
    running = start_job(manager)
    wait_for(lambda: running.status == JobStatus.RUNNING)
    queued = start_job(manager)
    uploading = manager.reserve("big upload")
    with pytest.raises(QueueFull, match="1 job\\(s\\) running and 2 waiting"):
        manager.reserve("one too many")
    manager.discard(uploading)
    assert not uploading.directory.exists()
    third = start_job(manager)
    assert [manager.queue_position(j) for j in (running, queued, third)] == [None, 1, 2]
    gate.set()
    wait_for(lambda: third.status == JobStatus.DONE)
    assert manager.reserve("room again").directory.is_dir()
    manager.close()
    assert not (tmp_path / "root").exists()


def test_finished_jobs_expire_after_the_ttl_and_running_ones_never(tmp_path):
    clock = FakeClock()
    gate = threading.Event()
    root = tmp_path / "root"
    root.mkdir()
    manager = JobManager(
        root, lambda job, report: gate.wait(10) and {"ok": True}, max_running=2, ttl_seconds=60, clock=clock
    )
    finished, running = start_job(manager, "a"), None
    gate.set()
    wait_for(lambda: finished.status == JobStatus.DONE)
    gate.clear()
    running = start_job(manager, "b")
    wait_for(lambda: running.status == JobStatus.RUNNING)
    clock.now += 59.9
    assert manager.purge_expired() == []
    clock.now += 0.1
    assert manager.purge_expired() == [finished.id]
    assert not finished.directory.exists() and running.directory.exists()
    with pytest.raises(KeyError):
        manager.get(finished.id)
    clock.now += 10_000
    assert manager.purge_expired() == []  # still running: never expires
    gate.set()
    wait_for(lambda: running.status == JobStatus.DONE)
    assert manager.elapsed_seconds(running) == pytest.approx(60 + 10_000)  # from its upload at t=100
    manager.close()


def test_a_bug_fails_one_job_and_the_worker_goes_on(tmp_path, caplog):
    calls = []

    def process(job, report):
        calls.append(job.filename)
        if job.filename == "bad":
            raise ZeroDivisionError("boom")
        return {"ok": True}

    (tmp_path / "root").mkdir()
    manager = JobManager(tmp_path / "root", process)
    bad, good = start_job(manager, "bad"), start_job(manager, "good")
    wait_for(lambda: good.finished is not None)
    assert bad.status == JobStatus.FAILED and "internal error" in bad.error and "ZeroDivisionError" in bad.error
    assert good.status == JobStatus.DONE and good.result == {"ok": True}
    assert f"job {bad.id} failed" in caplog.text
    manager.close()


def test_close_cancels_the_running_job_at_its_next_report(tmp_path):
    reports = []

    def endless(job, report):
        while True:
            report(0.5, "predicting")
            reports.append(1)
            time.sleep(0.01)

    root = tmp_path / "root"
    root.mkdir()
    manager = JobManager(root, endless, max_running=1, max_queued=3)
    start_job(manager)  # takes the one running slot
    waiting = start_job(manager)
    wait_for(lambda: len(reports) > 2)
    manager.close()
    assert waiting.status == JobStatus.QUEUED and waiting.future.cancelled()
    assert not root.exists()
    with pytest.raises(QueueFull, match="shutting down"):
        manager.reserve("late")


def test_validation_miou_is_read_from_lightnings_checkpoint_state(serve_model):
    # The same callback train() configures; Lightning stores {state_key: state_dict()} under "callbacks".
    callback = ModelCheckpoint(dirpath=".", filename="best", monitor="val_miou", mode="max", save_last=True)
    callback.best_model_score = torch.tensor(0.6125)
    raw = {"callbacks": {callback.state_key: callback.state_dict()}, "global_step": 42}
    assert validation_miou(raw) == pytest.approx(0.6125)
    assert validation_miou({"callbacks": {}}) is None
    unmonitored = ModelCheckpoint(dirpath=".", monitor=None)
    assert validation_miou({"callbacks": {unmonitored.state_key: unmonitored.state_dict()}}) is None
    card = describe_model(serve_model, raw)
    assert card["validation_miou"] == pytest.approx(0.6125) and card["training"]["training_steps"] == 42
    assert describe_model(serve_model)["validation_miou"] == pytest.approx(
        validation_miou(read_checkpoint(serve_model.path))
    )


def test_settings_errors_name_the_command_line_option(tmp_path):
    with pytest.raises(ConfigError, match="--max-running-jobs: Input should be greater than or equal to 1"):
        ServeSettings.from_options(checkpoint=tmp_path / "m.ckpt", max_running_jobs=0)
    settings = ServeSettings.from_options(checkpoint=tmp_path / "m.ckpt", max_upload_mb=1.5, job_ttl_minutes=2)
    assert settings.max_upload_bytes == 1_572_864 and settings.job_ttl_seconds == 120


def test_serve_command_passes_its_options_on(monkeypatch, tmp_path):
    served = {}

    def fake_run_server(settings, host, port):
        served.update(settings=settings, host=host, port=port)

    monkeypatch.setattr("landseg.serve.app.run_server", fake_run_server)
    app = typer.Typer()
    app.command()(serve_command)
    result = CliRunner().invoke(
        app,
        ["--checkpoint", str(tmp_path / "m.ckpt"), "--port", "8123", "--max-pixels", "1000", "--max-queued-jobs", "0"],
    )
    assert result.exit_code == 0, result.output
    assert served["host"] == "127.0.0.1" and served["port"] == 8123
    assert served["settings"].max_pixels == 1000 and served["settings"].max_queued_jobs == 0


def test_serve_takes_the_engines_predict_takes_and_refuses_others_on_the_command_line(monkeypatch, tmp_path):
    served = {}
    monkeypatch.setattr("landseg.serve.app.run_server", lambda settings, host, port: served.update(settings=settings))
    app = typer.Typer()
    app.command()(serve_command)
    chosen = CliRunner().invoke(app, ["--checkpoint", str(tmp_path / "m.ckpt"), "--engine", "torch"])
    assert chosen.exit_code == 0, chosen.output
    assert served.pop("settings").engine == "torch"
    refused = CliRunner().invoke(app, ["--checkpoint", str(tmp_path / "m.ckpt"), "--engine", "cuda"])
    assert refused.exit_code == 2, refused.output
    assert "Invalid value for '--engine'" in refused.output and "'cuda'" in refused.output
    assert served == {}
