"""How train() is put together: the data module, where the network starts, the caller's config left alone,
one CSV history, and checkpoints written as every other output is."""

import csv
import errno

import pytest
import torch
import yaml
from tests.helpers import experiment

from landseg.config import parse_config
from landseg.errors import OutputError
from landseg.train.callbacks import AtomicCheckpointIO
from landseg.train.datamodule import SegmentationDataModule
from landseg.train.run import remove_stale_temporaries, train
from landseg.train.start import FreshStart, ZooStart, model_start


def test_train_leaves_the_callers_config_alone_and_records_what_it_trained(tmp_path, synthetic_dataset):
    config = parse_config(experiment(synthetic_dataset, train={"onnx_export": False}))
    before = config.model_copy(deep=True)
    run = tmp_path / "run"
    result = train(config, run, max_minutes=5.0, progress=False)
    assert config == before and config.train.max_minutes is None
    recorded = yaml.safe_load((run / "config.yaml").read_text())
    assert recorded["train"]["max_minutes"] == 5.0  # the budget the run trained with
    assert parse_config(recorded).model == config.model
    # One CSV history: history.csv, one row per validated epoch; no second log beside it.
    with result.history.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["epoch"]) for row in rows] == [0]
    assert 0 <= float(rows[0]["val_miou"]) <= 1 and float(rows[0]["train_loss"]) > 0
    assert [path.name for path in run.rglob("*.csv")] == ["history.csv"]


def test_a_zoo_start_settles_a_copy_of_the_config(synthetic_dataset):
    config = parse_config(experiment(synthetic_dataset, base_model={"init": "dynamic-world"}))
    start = model_start(config)
    assert isinstance(start, ZooStart)
    trained = start.trained_config(config)
    assert (trained.model.arch, trained.model.encoder, trained.model.encoder_weights) == ("dynamic_world", None, None)
    assert (config.model.arch, config.model.encoder) == ("unet", "tu-tf_efficientnet_lite0")
    assert isinstance(model_start(parse_config(experiment(synthetic_dataset))), FreshStart)


def test_the_data_module_reads_the_split_once_and_serves_crops_and_whole_images(synthetic_dataset):
    config = parse_config(
        experiment(
            synthetic_dataset, ["000", "001", "002"], ["003", "004"], train={"batch_size": 3, "steps_per_epoch": 2}
        )
    )
    data = SegmentationDataModule(config, FreshStart(), progress=False)
    data.setup("fit")
    items = data.train_items
    data.setup("fit")  # Lightning calls it again: nothing is read twice
    assert data.train_items is items and (data.train_images, data.val_images) == (3, 2)
    assert data.bands == [1, 2, 3] and data.normalization.bands == 3
    batches = list(data.train_dataloader())
    assert len(batches) == 2
    images, masks = batches[0]
    assert images.shape == (3, 3, 32, 32) and masks.shape == (3, 32, 32)
    whole = [image.shape for image, _ in data.val_dataloader()]
    assert whole == [torch.Size([1, 3, 96, 96])] * 2
    assert data.statistics.pixels.sum() == sum(int((item.mask != 255).sum()) for item in items)


def test_a_failed_checkpoint_write_keeps_the_earlier_one_and_leaves_no_temporary(tmp_path, monkeypatch):
    writer = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    writer.save_checkpoint({"weights": torch.ones(2)}, path)

    def disk_full(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OutputError, match=r"last\.ckpt: cannot write checkpoint \(No space left on device\)"):
        writer.save_checkpoint({"weights": torch.zeros(2)}, path)
    monkeypatch.undo()
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]
    assert torch.equal(torch.load(path, weights_only=True)["weights"], torch.ones(2))


def test_resume_removes_what_a_killed_run_was_writing(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    litter = [
        tmp_path / "checkpoints" / ".last.1a2b3c4d.partial.ckpt",  # atomic_output's temporary
        tmp_path / "checkpoints" / ".last.ckpt.x8y9.tmp",  # what older versions wrote through
        tmp_path / ".history.5e6f7a8b.partial.csv",
    ]
    kept = [tmp_path / "checkpoints" / "last.ckpt", tmp_path / "history.csv"]
    for path in litter + kept:
        path.write_bytes(b"x")
    remove_stale_temporaries(tmp_path)
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == sorted(kept)
