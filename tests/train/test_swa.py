"""Cyclic SWA: the learning-rate cycles, the average of the cycle-end weights, batch-norm statistics
recomputed, and an exact resume, on a tiny network trained by a real Lightning trainer."""

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from landseg.train.swa import CyclicSWA

BATCHES = 3


class Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.model = nn.Sequential(nn.BatchNorm2d(2, affine=False), nn.Conv2d(2, 1, 1))
        self.validated_at_step = 7

    def training_step(self, batch, batch_idx):
        images, targets = batch
        return ((self.model(images) - targets) ** 2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


class Recorder(L.Callback):
    def __init__(self):
        self.lrs, self.cycle_weights = [], {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    def on_train_epoch_end(self, trainer, pl_module):
        self.cycle_weights[trainer.current_epoch] = pl_module.model[1].weight.detach().clone()


def loader():
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(BATCHES * 4, 2, 5, 5, generator=generator) * 3 + torch.tensor([1.0, -2.0])[:, None, None]
    targets = torch.randn(BATCHES * 4, 1, 5, 5, generator=generator)
    return DataLoader(TensorDataset(images, targets), batch_size=4), images


def trainer(epochs, callbacks, tmp_path):
    return L.Trainer(
        max_epochs=epochs,
        callbacks=callbacks,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )


def test_cycles_average_and_batch_norm(tmp_path):
    swa, recorder = CyclicSWA(start_epoch=1, cycle_epochs=2, max_lr=0.01, min_lr=0.001), Recorder()
    module, (data, images) = Tiny(), loader()
    trainer(5, [swa, recorder], tmp_path).fit(module, data)

    steps = 2 * BATCHES
    cycle = [0.01 + (0.001 - 0.01) * i / (steps - 1) for i in range(steps)]
    assert recorder.lrs[:BATCHES] == pytest.approx([0.1] * BATCHES)  # before start_epoch: untouched
    assert recorder.lrs[BATCHES:] == pytest.approx(cycle + cycle)

    # Cycles end after epochs 2 and 4 (0-based); their weights are averaged, the others are not.
    expected = (recorder.cycle_weights[2] + recorder.cycle_weights[4]) / 2
    assert swa.n_averaged == 2 and swa.applied
    torch.testing.assert_close(module.model[1].weight, expected)
    assert not torch.allclose(module.model[1].weight, recorder.cycle_weights[4])
    # Batch-norm statistics recomputed over the training batches: the mean of every training input.
    torch.testing.assert_close(module.model[0].running_mean, images.mean(dim=(0, 2, 3)), rtol=1e-5, atol=1e-5)
    assert module.validated_at_step == -1  # the averaged weights still need a validation


def test_exact_resume_from_a_mid_cycle_checkpoint(tmp_path):
    def make_swa():
        return CyclicSWA(start_epoch=1, cycle_epochs=2, max_lr=0.01, min_lr=0.001)

    straight = Tiny()
    trainer(5, [make_swa()], tmp_path / "a").fit(straight, loader()[0])

    saver = ModelCheckpoint(
        dirpath=tmp_path / "ckpt", filename="e{epoch}", every_n_epochs=1, save_top_k=-1, auto_insert_metric_name=False
    )
    saving = L.Trainer(
        max_epochs=5,
        callbacks=[make_swa(), saver],
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    saving.fit(Tiny(), loader()[0])
    mid_cycle = tmp_path / "ckpt" / "e3.ckpt"  # one cycle averaged, the second half done
    state = torch.load(mid_cycle, weights_only=True)["callbacks"]
    assert [s["n_averaged"] for k, s in state.items() if "CyclicSWA" in k] == [1]

    resumed_swa, resumed = make_swa(), Tiny()
    trainer(5, [resumed_swa], tmp_path / "b").fit(resumed, loader()[0], ckpt_path=mid_cycle)
    assert resumed_swa.n_averaged == 2
    for ours, reference in zip(resumed.model.state_dict().values(), straight.model.state_dict().values(), strict=False):
        torch.testing.assert_close(ours, reference)


def test_no_completed_cycle_leaves_the_weights_alone(tmp_path):
    swa, module = CyclicSWA(start_epoch=1, cycle_epochs=4, max_lr=0.01, min_lr=0.001), Tiny()
    trainer(2, [swa], tmp_path).fit(module, loader()[0])
    assert swa.n_averaged == 0 and not swa.applied and module.validated_at_step == 7


def test_swa_config_mistakes_are_named():
    from landseg.config import parse_config
    from landseg.errors import ConfigError

    with pytest.raises(ConfigError, match="before the first cycle ends"):
        parse_config({"data": {"root": "d"}, "train": {"epochs": 10, "swa": {"start_epoch": 8, "cycle_epochs": 6}}})
    with pytest.raises(ConfigError, match="must not exceed"):
        parse_config({"data": {"root": "d"}, "train": {"swa": {"start_epoch": 0, "max_lr": 1e-5, "min_lr": 1e-4}}})
    with pytest.raises(ConfigError, match="start_epoch"):
        parse_config({"data": {"root": "d"}, "train": {"swa": {"cycle_epochs": 2}}})
