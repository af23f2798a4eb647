"""Write tests/zoo/data/dw_reference_small.npz: seeded raw patches and the SavedModel's logits for them.

The always-run exactness test of the PyTorch port reads it, so that a fresh clone without
``../shared`` still checks the port against TensorFlow. Run with the conversion environment
(see tools/convert_dynamic_world.py):

    /tmp/tfenv/bin/python tools/dynamic_world_reference.py

The normalization here is written out from Dynamic World's published formula, independently of
landseg's, so the test checks ``DynamicWorldNormalization`` too. One patch has odd sides, where the
internal half-resolution resize is not exactly a factor of two.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SAVED_MODEL = REPO.parent / "shared" / "models" / "dynamic_world" / "saved_model_forward"
OUT = REPO / "tests" / "zoo" / "data" / "dw_reference_small.npz"
PATCHES = {"odd": (9, 11), "even": (8, 10)}
SEED = 17
PERCENTILES = np.array(
    [
        [1.7417268007636313, 2.023298706048351],
        [1.7261204997060209, 2.038905204308012],
        [1.6798346251414997, 2.179592821212937],
        [1.7734969472909623, 2.2890068333026603],
        [2.289154079164943, 2.6171674549378166],
        [2.382939712192371, 2.773418590375327],
        [2.3828939530384052, 2.7578332604178284],
        [2.1952484264967844, 2.789092484314204],
        [1.554812948247501, 2.4140534947492487],
    ],
    dtype=np.float32,
)


def normalize(raw: np.ndarray) -> np.ndarray:
    """(9, H, W) digital numbers to the (H, W, 9) float32 input of the SavedModel."""
    x = np.log(raw.astype(np.float32) * np.float32(0.005) + np.float32(1))
    x = (x - PERCENTILES[:, :1, None]) / PERCENTILES[:, 1:, None]
    x = np.exp(np.float32(5) * x - np.float32(1))
    return (x / (x + np.float32(1))).transpose(1, 2, 0)


def raw_patch(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    # A smooth surface plus noise keeps the values in the range of real L1C scenes (dark water to bright soil).
    base = rng.uniform(300, 3500, size=(9, 1, 1))
    gradient = np.linspace(0, 1, height)[None, :, None] * rng.uniform(-500, 2500, size=(9, 1, 1))
    noise = rng.normal(0, 250, size=(9, height, width))
    return np.clip(base + gradient + noise, 1, 10000).astype(np.uint16)


def main() -> None:
    import tensorflow as tf

    forward = tf.saved_model.load(str(SAVED_MODEL)).signatures["serving_default"]
    rng = np.random.default_rng(SEED)
    arrays = {}
    for name, (height, width) in PATCHES.items():
        raw = raw_patch(rng, height, width)
        logits = forward(input_3=tf.constant(normalize(raw)[None]))["functional_1"].numpy()[0]
        arrays[f"{name}_raw"] = raw
        arrays[f"{name}_logits"] = logits.transpose(2, 0, 1).astype(np.float32)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **arrays)
    print(f"{OUT}: {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main()
