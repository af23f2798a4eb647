"""Callbacks and plugins around Lightning's trainer: history CSV, time-budget cosine, atomic saves,
random states that survive a resume."""

from __future__ import annotations

import csv
import math
import random
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from landseg.checkpoint import read_checkpoint
from landseg.errors import OutputError
from landseg.io.write import atomic_output


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints are written as every output is (``io.write.atomic_output``: a temporary file, fsynced, then
    renamed): a kill never leaves a half-written ``last.ckpt`` where a good one used to be. They are read back (``--resume``) by
    landseg's safe loader, never by Lightning's own."""

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        # Lightning may ask for weights_only=False (its default before torch 2.6, or when told so):
        # a checkpoint is data whatever the caller asks, and the refusal is landseg's one-line error.
        return read_checkpoint(path)

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path) as temporary:
            try:
                with temporary.open("wb") as handle:
                    torch.save(checkpoint, handle)
            except (OSError, RuntimeError) as exc:
                # A full disk surfaces as OSError, or as torch's RuntimeError "PytorchStreamWriter failed writing".
                problem = getattr(exc, "strerror", None) or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise OutputError(
                    f"cannot write checkpoint ({problem[:200]}); an earlier one under this name is intact", path
                ) from exc


class RandomStateCheckpoint(L.Callback):
    """Checkpoints carry the global random generators' states, so that after ``--resume`` dropout (and
    anything else drawing from torch, numpy or Python's generators) continues as an uninterrupted run
    would. Training crops need none of this: they are keyed by ``(seed, epoch * length + i)``.

    States are stored as tensors and plain Python values, which Lightning's safe (``weights_only``)
    checkpoint loading accepts.
    """

    def state_dict(self) -> dict:
        numpy_state = np.random.get_state(legacy=True)
        if not isinstance(numpy_state, tuple):  # only for a bit generator other than the global MT19937
            raise TypeError(f"numpy's global generator is not MT19937: {numpy_state.get('bit_generator')}")
        kind, keys, position, has_gauss, cached_gaussian = numpy_state
        state: dict[str, object] = {
            "torch": torch.get_rng_state(),
            "numpy": {
                "kind": kind,
                "keys": torch.from_numpy(keys.astype(np.int64)),
                "position": int(position),
                "has_gauss": int(has_gauss),
                "cached_gaussian": float(cached_gaussian),
            },
            "python": random.getstate(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        torch.set_rng_state(state_dict["torch"])
        numpy_state = state_dict["numpy"]
        keys = numpy_state["keys"].numpy().astype(np.uint32)
        np.random.set_state(
            (
                numpy_state["kind"],
                keys,
                numpy_state["position"],
                numpy_state["has_gauss"],
                numpy_state["cached_gaussian"],
            )
        )
        version, internal, gauss = state_dict["python"]
        random.setstate((version, tuple(internal), gauss))
        if "cuda" in state_dict and torch.cuda.is_available() and len(state_dict["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


class HistoryCSV(L.Callback):
    """``history.csv``, the run's one CSV log: one row per validated epoch (epoch, step, minutes, train_loss,
    lr, val_miou, val_loss, per-class IoU). Rewritten whole (atomically) at each validation, dropping rows of
    epochs a resumed run redoes, so that it holds every epoch of all parts of a run once."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.fit_started: float | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # on_validation_end runs after the module's on_validation_epoch_end has computed the scores.
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        loss_sum, loss_count = getattr(pl_module, "epoch_loss", (0.0, 0))
        epoch = trainer.current_epoch
        row: dict[str, float | str] = {
            "epoch": epoch,
            "step": trainer.global_step,
            "minutes": round((time.monotonic() - self.fit_started) / 60, 3) if self.fit_started is not None else "",
            "train_loss": round(loss_sum / loss_count, 6) if loss_count else "",
            "lr": trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else "",
        }
        epoch_adaptation = getattr(pl_module, "epoch_adaptation", None)
        adaptation = epoch_adaptation() if callable(epoch_adaptation) else {}
        row.update({k: round(v, 6) for k, v in adaptation.items()})
        row.update({k: round(v, 6) for k, v in getattr(pl_module, "last_val_metrics", {}).items()})
        rows: list[dict[str, float | str]] = []
        if self.path.exists():
            with self.path.open(newline="") as handle:
                rows = [dict(r) for r in csv.DictReader(handle) if int(r["epoch"]) < epoch]
        rows.append(row)
        fields = list(dict.fromkeys(k for r in rows for k in r))
        with atomic_output(self.path) as temporary, temporary.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.fit_started = time.monotonic()


class TimeBudgetCosine(L.Callback):
    """Cosine learning-rate decay over a wall-clock budget rather than a step count.

    A fixed-time benchmark cannot know how many steps fit in it; decaying by elapsed time reaches the
    small learning rate exactly when the budget ends, whatever the machine's speed.
    """

    def __init__(self, budget_seconds: float, min_lr: float = 1e-6, warmup_fraction: float = 0.02):
        self.budget = budget_seconds
        self.min_lr = min_lr
        self.warmup = warmup_fraction
        self.start: float | None = None
        self.base_lrs: list[float] = []

    def on_train_start(self, trainer, pl_module) -> None:
        self.start = time.monotonic()
        self.base_lrs = [g.get("initial_lr", g["lr"]) for g in trainer.optimizers[0].param_groups]

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.start is None:  # not started (on_train_start sets it): no base rates to decay yet
            return
        fraction = min((time.monotonic() - self.start) / self.budget, 1.0)
        if fraction < self.warmup:
            factor = max(fraction / self.warmup, 0.05)
        else:
            factor = 0.5 * (1 + math.cos(math.pi * (fraction - self.warmup) / (1 - self.warmup)))
        for group, base in zip(trainer.optimizers[0].param_groups, self.base_lrs, strict=False):
            group["lr"] = self.min_lr + (base - self.min_lr) * factor
