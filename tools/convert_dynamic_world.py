"""Convert the Dynamic World forward SavedModel to the safetensors file of ``landseg.zoo.dynamic_world``.

Run with a TensorFlow that is not a landseg dependency, once, by whoever updates the bundled weights:

    python3 -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu numpy safetensors
    /tmp/tfenv/bin/python tools/convert_dynamic_world.py [--saved-model DIR] [--out FILE]

The layer table below is what the SavedModel's graph wires together (Keras numbers its layers in
creation order, which is not the order data flows through them). Before writing anything the script
checks that the graph still holds the ops the port reproduces, and that every variable is used once.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO.parent / "shared" / "models" / "dynamic_world"
OUT = REPO / "src" / "landseg" / "zoo" / "weights" / "dynamic_world.safetensors"

EXPECTED_OPS = {
    "Conv2D": 15,
    "DepthwiseConv2dNative": 10,
    "FusedBatchNormV3": 24,
    "Softplus": 24,
    "Tanh": 24,
    "ScaleAndTranslate": 1,
    "ResizeBilinear": 1,
    "ConcatV2": 1,
    "AddV2": 3,
    "Rsqrt": 1,
}
"""Op counts of the forward function: any other network fails here instead of converting wrongly."""


def keras_name(layer: str, index: int) -> str:
    return layer if index == 0 else f"{layer}_{index}"


def block_layers(
    prefix: str, pointwise: list[int], depthwise: list[int], first_norm: int, shortcut: int, shortcut_norm: int
) -> list[tuple[str, str, str]]:
    """(torch module, TF conv layer, TF batch-norm layer) for one residual block."""
    rows = []
    for unit, (pw, dw) in enumerate(zip(pointwise, depthwise, strict=False)):
        norm = first_norm + 2 * unit
        rows.append(
            (f"{prefix}.units.{unit}.pointwise", keras_name("conv2d", pw), keras_name("batch_normalization", norm))
        )
        rows.append(
            (
                f"{prefix}.units.{unit}.depthwise",
                keras_name("depthwise_conv2d", dw),
                keras_name("batch_normalization", norm + 1),
            )
        )
    rows.append(
        (f"{prefix}.shortcut", keras_name("conv2d", shortcut), keras_name("batch_normalization", shortcut_norm))
    )
    return rows


LAYERS = [
    ("stem", "conv2d", "batch_normalization"),
    *block_layers("block1", [2, 3, 4], [1, 2, 3], 3, 5, 9),
    *block_layers("block2", [6, 7, 8], [4, 5, 6], 10, 9, 16),
    ("side.pointwise", "conv2d_1", "batch_normalization_1"),
    ("side.depthwise", "depthwise_conv2d", "batch_normalization_2"),
    *block_layers("block3", [10, 11, 12], [7, 8, 9], 17, 13, 23),
    ("head", "conv2d_14", None),
]
NORM_FIELDS = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}


def torch_kernel(name: str, kernel: np.ndarray) -> np.ndarray:
    # TF keeps (kh, kw, in, out) for convolutions and (kh, kw, channels, 1) for depthwise ones;
    # torch wants (out, in / groups, kh, kw) for both.
    if name.startswith("depthwise_conv2d"):
        return kernel.transpose(2, 3, 0, 1)
    return kernel.transpose(3, 2, 0, 1)


def convert(variables: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    tensors, used = {}, set()

    def take(key: str) -> np.ndarray:
        used.add(key)
        return variables[key]

    for module, conv, norm in LAYERS:
        conv_target = f"{module}.conv" if norm else module
        kernel_key = f"{conv}/depthwise_kernel" if conv.startswith("depthwise") else f"{conv}/kernel"
        tensors[f"{conv_target}.weight"] = torch_kernel(conv, take(kernel_key))
        tensors[f"{conv_target}.bias"] = take(f"{conv}/bias")
        for tf_field, torch_field in NORM_FIELDS.items() if norm else ():
            tensors[f"{module}.norm.{torch_field}"] = take(f"{norm}/{tf_field}")
    unused = sorted(set(variables) - used)
    if unused:
        sys.exit(f"the SavedModel has variables the port does not use: {unused}")
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}


def forward_function(model):
    graph = model.signatures["serving_default"].graph.as_graph_def()
    return max(graph.library.function, key=lambda f: len(f.node_def))


def check_graph(model) -> None:
    nodes = forward_function(model).node_def
    counts = {op: sum(n.op == op for n in nodes) for op in EXPECTED_OPS}
    if counts != EXPECTED_OPS:
        sys.exit(f"the SavedModel's graph is not the network the port reproduces: {counts} != {EXPECTED_OPS}")
    for node in nodes:
        attr = node.attr
        if node.op == "ScaleAndTranslate":
            require(attr["antialias"].b and attr["kernel_type"].s == b"triangle", node)
        if node.op == "ResizeBilinear":
            require(attr["half_pixel_centers"].b and not attr["align_corners"].b, node)
        if node.op == "FusedBatchNormV3":
            require(abs(attr["epsilon"].f - 1e-3) < 1e-9 and not attr["is_training"].b, node)
        if node.op in ("Conv2D", "DepthwiseConv2dNative"):
            require(
                list(attr["strides"].list.i) == [1, 1, 1, 1] and list(attr["dilations"].list.i) == [1, 1, 1, 1], node
            )


def require(condition: bool, node) -> None:
    if not condition:
        sys.exit(f"the SavedModel's op {node.name} ({node.op}) differs from what the port reproduces")


def read_variables(model) -> dict[str, np.ndarray]:
    return {v.name.removesuffix(":0"): v.numpy() for v in model.variables}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saved-model", type=Path, default=SOURCE / "saved_model_forward")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)

    import tensorflow as tf
    from safetensors.numpy import save_file

    model = tf.saved_model.load(str(args.saved_model))
    check_graph(model)
    tensors = convert(read_variables(model))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    metadata = {
        "source": "google/dynamicworld@0dd288f model/forward",
        "license": "Apache-2.0",
        "converted_with": f"tensorflow {tf.__version__}",
    }
    save_file(tensors, str(args.out), metadata=metadata)
    args.out.chmod(0o644)  # safetensors writes owner-only files; this one ships in the wheel
    for name in ("LICENSE", "NOTICE"):
        shutil.copyfile(args.saved_model.parent / name, args.out.parent / f"DYNAMIC_WORLD_{name}")
    print(f"{args.out}: {len(tensors)} tensors, {args.out.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
