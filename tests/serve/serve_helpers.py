"""Helpers of the web app's tests: a small checkpoint saved the way Lightning saves one."""

from pathlib import Path

import numpy as np
import torch

from landseg.checkpoint import CARD_KEY, STATE_PREFIX, ModelCard
from landseg.classes import IGNORE_INDEX, get_schema
from landseg.data.synthetic import generate_scene
from landseg.models import ModelSpec, build_model
from landseg.normalization import Normalization

VALIDATION_MIOU = 0.734
CHECKPOINT_CALLBACK_KEY = (
    "ModelCheckpoint{'monitor': 'val_miou', 'mode': 'max', 'every_n_train_steps': 0, "
    "'every_n_epochs': 1, 'train_time_interval': None}"
)


def fitted_network(spec: ModelSpec, normalization: Normalization, steps: int = 60) -> torch.nn.Module:
    """The network after a few seeded Adam steps on one synthetic scene.

    Random weights predict one class everywhere, which would let a test comparing two class maps pass
    for the wrong reason; a briefly fitted network draws several classes that follow the image.
    """
    schema = get_schema("synthetic")
    scene = generate_scene(96, seed=11)
    image = torch.as_tensor(normalization.apply(scene.image.astype(np.float32)))[None]
    labels = torch.as_tensor(schema.decode(scene.labels, unknown="ignore").astype(np.int64))[None]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a network this small runs fastest on one thread, and the same on any machine
    try:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            network = build_model(spec)
            optimizer = torch.optim.Adam(network.parameters(), lr=0.02)
            for _ in range(steps):
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(network(image), labels, ignore_index=IGNORE_INDEX).backward()
                optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return network.eval()


def save_test_checkpoint(path: Path, tile_size: int = 64) -> Path:
    """A classic U-Net (widths 8, 16) fitted for a few steps, saved like a Lightning checkpoint."""
    schema = get_schema("synthetic")
    spec = ModelSpec(arch="classic_unet", in_channels=3, num_classes=schema.num_classes, widths=[8, 16])
    network = fitted_network(spec, Normalization.symmetric(3, 255.0))
    card = ModelCard(
        model=spec.to_dict(),
        schema=schema.to_dict(),
        normalization=Normalization.symmetric(3, 255.0).to_dict(),
        bands=[1, 2, 3],
        band_names=["red", "green", "blue"],
        tile_size=tile_size,
        training={
            "experiment": "serve-tests",
            "data_root": "/home/someone/private/synthetic",
            "train_images": 4,
            "val_images": 2,
            "landseg_version": "0.1.0",
        },
    )
    torch.save(
        {
            "epoch": 1,
            "global_step": 6,
            "hyper_parameters": {CARD_KEY: card.to_dict()},
            "state_dict": {STATE_PREFIX + k: v for k, v in network.state_dict().items()},
            "callbacks": {
                CHECKPOINT_CALLBACK_KEY: {"monitor": "val_miou", "best_model_score": torch.tensor(VALIDATION_MIOU)}
            },
        },
        path,
    )
    return path
