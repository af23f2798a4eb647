"""The Lightning module: a segmentation network, its loss, its optimizer, and honest validation.

Validation predicts each whole validation image, in its raw units at its native resolution, through the
inference core of ``landseg predict`` (``predict.core.predict_array``: the card's normalization and input
scale, mirrored margins, blended tiles), with the training network as a one-member ensemble, and
accumulates ONE confusion matrix over all of them; ``val_miou`` (what picks the best checkpoint) comes
from that matrix alone. The core runs the network on its own thread, outside Lightning's autocast, so
validation scores the float32 network whatever the training precision.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch

from landseg.checkpoint import CARD_KEY, ModelCard
from landseg.classes import IGNORE_INDEX
from landseg.config import TrainConfig
from landseg.losses import build_loss
from landseg.metrics import ConfusionMatrix
from landseg.models import ModelSpec, build_model
from landseg.predict.core import predict_array
from landseg.predict.ensemble import Ensemble
from landseg.predict.networks import Member, TorchNetwork
from landseg.predict.options import PredictOptions
from landseg.train.adapt import MeanTeacher
from landseg.train.precision import resolve_precision

TEACHER_KEY = "adapt_teacher"
"""Where a checkpoint of a run with unlabelled images keeps the mean teacher's weights, for --resume."""


class SegmentationModule(L.LightningModule):
    def __init__(self, card: dict, train: dict, network: torch.nn.Module | None = None):
        """``train``: a ``TrainConfig`` as a dict, its class-weight statistics already resolved to numbers
        (``landseg.losses.resolve_class_weights``), so that the checkpoint records the weights used.
        ``network``: the card's network with its starting weights (a zoo model's, for ``model.init``);
        by default ``build_model`` builds it freshly initialised."""
        super().__init__()
        # Stored in every checkpoint: the card is all that prediction needs.
        self.save_hyperparameters({CARD_KEY: card, "train": train})
        self.card = ModelCard.from_dict(card)
        self.train_config = TrainConfig.model_validate(train)
        self.model = network if network is not None else build_model(ModelSpec.from_dict(card["model"]))
        cfg = self.train_config
        if isinstance(cfg.channels_last, bool):
            self.channels_last = cfg.channels_last
        else:  # "auto": train() passes it resolved; a module built elsewhere resolves it here
            self.channels_last = resolve_precision(cfg.precision, "auto", cfg.accelerator).channels_last
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.class_names = [c["name"] for c in card["schema"]["classes"]]
        self.num_classes = len(self.class_names)
        self.criterion = build_loss(self.train_config.loss, self.num_classes)
        self.val_confusion = ConfusionMatrix(self.num_classes, ignore_index=IGNORE_INDEX)
        self.val_loss_sum = 0.0
        self.val_loss_pixels = 0
        self.last_val_metrics: dict = {}
        self.validated_at_step = -1
        self.epoch_loss = [0.0, 0]  # sum and count of training losses this epoch, for the history CSV
        self.adapt_epoch = [0.0, 0.0]  # sums of unlabelled losses and learnt shares this epoch
        self.teacher: MeanTeacher | None = None
        self.teacher_state: dict | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch, batch_idx):
        images, masks, *unlabelled = batch
        logits = self.model(self._layout(images))
        # Losses in float32 even under mixed precision: sums over many pixels lose too much in 16 bits.
        loss = self.criterion(logits.float(), masks)
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=images.shape[0])
        if unlabelled and self.train_config.adapt.weight > 0:
            weak, strong, valid = unlabelled
            step = self.mean_teacher().step(
                self.model, self._layout(weak), self._layout(strong), valid, self.global_step
            )
            self.log("adapt_loss", step.loss, on_step=True, on_epoch=True, batch_size=weak.shape[0])
            self.log("adapt_learnt_share", step.learnt_share, on_step=True, on_epoch=True, batch_size=weak.shape[0])
            self.adapt_epoch[0] += float(step.loss.detach())
            self.adapt_epoch[1] += step.learnt_share
            loss = loss + step.loss
        self.epoch_loss[0] += float(loss.detach())
        self.epoch_loss[1] += 1
        return loss

    def _layout(self, images: torch.Tensor) -> torch.Tensor:
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    def mean_teacher(self) -> MeanTeacher:
        """The teacher of unlabelled crops (``train.adapt``), made from the network at its first use."""
        if self.teacher is None:
            self.teacher = MeanTeacher(self.model, self.train_config.adapt)
            if self.teacher_state is not None:  # resumed: the teacher as it was, not a copy of the student
                self.teacher.teacher.load_state_dict(self.teacher_state)
        return self.teacher

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self.teacher is not None:
            self.teacher.update(self.model)

    def on_train_epoch_start(self) -> None:
        self.epoch_loss = [0.0, 0]
        self.adapt_epoch = [0.0, 0.0]

    def epoch_adaptation(self) -> dict[str, float]:
        """This epoch's mean unlabelled loss and share of pixels learnt, for the history; empty without."""
        steps = self.epoch_loss[1]
        if not steps or self.teacher is None:
            return {}
        return {"adapt_loss": self.adapt_epoch[0] / steps, "adapt_learnt_share": self.adapt_epoch[1] / steps}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # After --resume, train() must still know whether the final weights were validated already.
        checkpoint["validated_at_step"] = self.validated_at_step
        if self.teacher is not None:
            checkpoint[TEACHER_KEY] = self.teacher.teacher.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.validated_at_step = checkpoint.get("validated_at_step", -1)
        self.teacher_state = checkpoint.get(TEACHER_KEY)

    # -- validation on whole images ---------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self.val_confusion.reset()
        self.val_loss_sum, self.val_loss_pixels = 0.0, 0

    def validation_ensemble(self) -> Ensemble:
        """The network being trained, as the inference core's one-member ensemble on its current device, in
        float32 and the training's memory layout (so wrapping it changes nothing in the training network)."""
        network = TorchNetwork(self.model, self.device, precision="fp32", channels_last=self.channels_last)
        return Ensemble([Member(self.card, network, Path("<training network>"), self.device)])

    def validation_step(self, batch, batch_idx):
        image, mask = batch
        cfg = self.train_config
        pixels = image[0].cpu().numpy()
        # The validation images hold the card's bands already, in the card's order.
        # They are the training data's kind by construction, as float32: no input check.
        options = PredictOptions(
            tile=cfg.val_tile,
            overlap=cfg.val_overlap,
            bands=tuple(range(1, len(pixels) + 1)),
            allow_input_mismatch=True,
        )
        predicted = predict_array(pixels, self.validation_ensemble(), options)
        probabilities = torch.from_numpy(predicted.probabilities)
        target = mask[0].to(probabilities.device)
        labelled = target != IGNORE_INDEX
        if labelled.any():
            picked = probabilities.gather(0, target.clamp(max=self.num_classes - 1)[None])[0][labelled]
            self.val_loss_sum += float(-torch.log(picked.clamp_min(1e-7)).sum())
            self.val_loss_pixels += int(labelled.sum())
        self.val_confusion.update(probabilities.argmax(0), target)

    def on_validation_epoch_end(self) -> None:
        cm = self.val_confusion
        if self.trainer.world_size > 1:
            # Each rank saw some images: sum the matrices, never average per-rank scores.
            counts = self._summed_over_ranks(torch.as_tensor(cm.matrix, device=self.device))
            cm = ConfusionMatrix.from_matrix(counts.cpu().numpy(), ignore_index=IGNORE_INDEX)
            totals = self._summed_over_ranks(
                torch.tensor([self.val_loss_sum, self.val_loss_pixels], device=self.device)
            )
            self.val_loss_sum, self.val_loss_pixels = float(totals[0]), int(totals[1])
        self.validated_at_step = self.global_step
        self.last_val_metrics = {
            "val_miou": float(np.nan_to_num(cm.miou)),
            "val_pixel_accuracy": float(np.nan_to_num(cm.pixel_accuracy)),
            "val_loss": self.val_loss_sum / max(self.val_loss_pixels, 1),
        }
        for name, iou in zip(self.class_names, cm.iou, strict=False):
            self.last_val_metrics[f"val_iou/{name}"] = float(np.nan_to_num(iou))
        others = {k: v for k, v in self.last_val_metrics.items() if k != "val_miou"}
        # Every rank already holds the summed matrix, so the scores need no further reduction.
        self.log_dict(others, prog_bar=False)
        self.log("val_miou", self.last_val_metrics["val_miou"], prog_bar=True)

    def _summed_over_ranks(self, values: torch.Tensor) -> torch.Tensor:
        gathered = self.all_gather(values)
        if not isinstance(gathered, torch.Tensor):  # all_gather returns a tensor's gather as one tensor
            raise TypeError(f"all_gather of a tensor returned {type(gathered).__name__}")
        return gathered.sum(0)

    # -- optimization ------------------------------------------------------------------------------
    def configure_optimizers(self):
        cfg = self.train_config
        opt = cfg.optimizer
        params = self.model.parameters()
        optimizer: torch.optim.Optimizer
        if opt.name == "sgd":
            optimizer = torch.optim.SGD(params, lr=opt.lr, momentum=opt.momentum, weight_decay=opt.weight_decay)
        elif opt.name == "adam":
            optimizer = torch.optim.Adam(params, lr=opt.lr, weight_decay=opt.weight_decay)
        else:
            optimizer = torch.optim.AdamW(params, lr=opt.lr, weight_decay=opt.weight_decay)
        scheduler = build_scheduler(optimizer, cfg)
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": scheduler}


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> dict | None:
    s = cfg.scheduler
    sched: torch.optim.lr_scheduler.LRScheduler
    total_steps = max(cfg.epochs * cfg.steps_per_epoch, 1)
    if s.name == "none" or (s.name == "cosine" and cfg.max_minutes):
        # A time budget drives the cosine through TimeBudgetCosine instead (see callbacks).
        return None
    if s.name == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps, eta_min=s.min_lr)
        return {"scheduler": sched, "interval": "step"}
    if s.name == "step":
        return {
            "scheduler": torch.optim.lr_scheduler.StepLR(optimizer, s.step_size, gamma=s.gamma),
            "interval": "epoch",
        }
    if s.name == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=s.factor, patience=s.patience)
        return {"scheduler": sched, "monitor": "val_loss", "interval": "epoch", "frequency": cfg.val_every}
    if s.name == "onecycle":
        max_lr = cfg.optimizer.lr
        sched = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=total_steps)
        return {"scheduler": sched, "interval": "step"}
    if s.name == "poly":
        sched = torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=total_steps, power=s.power)
        return {"scheduler": sched, "interval": "step"}
    raise ValueError(f"unknown scheduler {s.name!r}")
