"""Training with Lightning DDP on CPU: 2 processes (gloo), a few steps; both ranks end with the same
weights, the ones in the checkpoint, and validation sees every image exactly once."""

from __future__ import annotations

import hashlib
import itertools
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from tests.helpers import validation_confusion

from landseg.checkpoint import STATE_PREFIX, read_checkpoint
from landseg.config import parse_config
from landseg.train.sampling import UnpaddedDistributedSampler

# Each rank reports, at the end of fit: a digest of its weights, the validation images and the training
# samples it was given. Lightning's ddp launcher starts rank 1 by running this same script again.
RANK_REPORTER = textwrap.dedent("""
    import hashlib, json, sys
    from pathlib import Path

    from landseg.config import load_config
    from landseg.train.module import SegmentationModule
    from landseg.train.run import train


    def weights_digest(state):
        digest = hashlib.sha256()
        for name in sorted(state):
            digest.update(name.encode())
            digest.update(state[name].detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()


    def report(module):
        trainer = module.trainer
        record = {
            "rank": trainer.global_rank, "world": trainer.world_size, "steps": trainer.global_step,
            "weights": weights_digest(module.model.state_dict()),
            "validated": list(trainer.val_dataloaders.sampler),
            "trained": list(trainer.train_dataloader.sampler),
        }
        Path(sys.argv[3], f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


    if __name__ == "__main__":
        SegmentationModule.on_fit_end = report
        train(load_config(sys.argv[1]), Path(sys.argv[2]), progress=False)
""")


def weights_digest(state: dict) -> str:
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@pytest.mark.slow
def test_two_cpu_processes_train_one_model(tmp_path, synthetic_dataset):
    config = {
        "name": "ddp",
        "data": {
            "root": str(synthetic_dataset),
            "schema": "synthetic",
            "images": "images/scene_{id}.tif",
            "masks": "masks/scene_{id}.tif",
            # 3 validation images on 2 ranks: a padding sampler would validate one of them twice.
            "split": {"field": "id", "train": ["000", "001", "002"], "val": ["003", "004", "005"]},
        },
        "model": {"arch": "classic_unet", "encoder": None, "encoder_weights": None, "widths": [8, 16]},
        "train": {
            "crop_size": 32,
            "batch_size": 2,
            "epochs": 2,
            "steps_per_epoch": 2,
            "val_tile": 64,
            "accelerator": "cpu",
            "devices": 2,
            "strategy": "ddp",
            "num_workers": 0,
        },
    }
    config_path = tmp_path / "ddp.yaml"
    config_path.write_text(yaml.safe_dump(config))
    script = tmp_path / "train_and_report.py"
    script.write_text(RANK_REPORTER)
    reports = tmp_path / "reports"
    reports.mkdir()
    run = tmp_path / "run"
    env = {
        "PATH": "/usr/bin:/bin",
        "CUDA_VISIBLE_DEVICES": "",
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
        "HOME": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, str(script), str(config_path), str(run), str(reports)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    ranks = [json.loads((reports / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    # 8 training samples per epoch shared by 2 ranks in batches of 2: 2 optimizer steps per epoch, 4 in all.
    assert [r["steps"] for r in ranks] == [4, 4]
    # The ranks trained on different crops...
    assert set(ranks[0]["trained"]).isdisjoint(ranks[1]["trained"])
    assert sorted(ranks[0]["trained"] + ranks[1]["trained"]) == list(range(8, 16))  # the second epoch's
    # ... yet ended with the same weights, and those are the checkpoint's.
    assert ranks[0]["weights"] == ranks[1]["weights"]
    saved = read_checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"]
    network = {k[len(STATE_PREFIX) :]: v for k, v in saved.items() if k.startswith(STATE_PREFIX)}
    assert weights_digest(network) == ranks[0]["weights"]
    # Every validation image was validated by exactly one rank.
    assert sorted(ranks[0]["validated"] + ranks[1]["validated"]) == [0, 1, 2]
    # The best score is the one matrix of both ranks' images: the best checkpoint scored again in this one
    # process on all three images gives it (one rank's share alone, or an average of two scores, would not).
    summary = json.loads((run / "summary.json").read_text())
    alone = validation_confusion(Path(summary["best_checkpoint"]), parse_config(config))
    assert alone.total == 3 * 96 * 96
    assert summary["best_val_miou"] == pytest.approx(alone.miou, abs=1e-6)


def test_unpadded_sampler_without_a_process_group_is_sequential():
    assert list(UnpaddedDistributedSampler(list(range(5)))) == [0, 1, 2, 3, 4]


def test_unpadded_sampler_shards_without_repeats(monkeypatch):
    import torch.distributed as dist

    seen = []
    for rank in range(3):
        monkeypatch.setattr(dist, "is_initialized", lambda: True)
        monkeypatch.setattr(dist, "get_world_size", lambda: 3)
        monkeypatch.setattr(dist, "get_rank", lambda rank=rank: rank)
        sampler = UnpaddedDistributedSampler(list(range(7)))
        seen.append(list(sampler))
        assert len(sampler) == len(seen[-1])
    assert seen == [[0, 3, 6], [1, 4], [2, 5]]
    # Lightning's own DistributedSampler pads the last round with repeats instead:
    padded = [
        list(torch.utils.data.DistributedSampler(list(range(7)), num_replicas=3, rank=r, shuffle=False))
        for r in range(3)
    ]
    assert sorted(itertools.chain.from_iterable(padded)) != list(range(7))
