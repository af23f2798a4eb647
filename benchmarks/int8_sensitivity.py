"""Which layers of a trained model lose its classes when quantized to int8 (issue 35).

For one checkpoint and ``configs/dubai.yaml``: the fp32 ONNX export is quantized with landseg's recipe
(``predict.quantize``: QDQ, 7-bit per-channel weights, uint8 activations, first and last convolutions in
fp32) calibrated on tiles of the training images, with more nodes left in fp32 at each setting. Each
model is measured like the guard (``measure_guard``: argmax agreement with fp32 and the mIoU change on
held-out tile-4 images) and timed (raw tiles/s). One JSON row per setting, written as it comes.

- ``--stage noise``: ONNX Runtime's ``qdq_loss_debug`` gives every quantized activation's own noise
  (SQNR before and after its QuantizeLinear/DequantizeLinear pair, on a few tiles); the nodes around the
  2, 4, ... noisiest stay in fp32;
- ``--stage blocks``: each encoder stage and decoder block alone in fp32, the whole encoder, the whole
  decoder, the skip connections' Concat and Resize nodes;
- ``--stage combined``: unions of those (``combined_settings``);
- ``--stage margins``: the recipe alone, and where its classes differ from fp32's: agreement by how far
  fp32's most likely class leads its second (``margin_rows``), on every held-out image asked for.

    python benchmarks/int8_sensitivity.py CHECKPOINT --stage blocks --results benchmarks/results/int8_blocks.json
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import REPO, environment, write_json


def activation_noise(fp32: Path, int8: Path, tiles: list[np.ndarray], scratch: Path) -> dict[str, float]:
    """SQNR (dB) of each quantized activation against itself before its QDQ pair, over ``tiles``."""
    from onnxruntime.quantization import qdq_loss_debug as debug

    def reader(model_path: Path):
        import onnx

        name = onnx.load(str(model_path), load_external_data=False).graph.input[0].name
        return [{name: tile[None].astype(np.float32)} for tile in tiles]

    augmented = {}
    for label, path in (("fp32", fp32), ("int8", int8)):
        augmented[label] = scratch / f"{label}.augmented.onnx"
        debug.modify_model_output_intermediate_tensors(str(path), str(augmented[label]))
    qdq = debug.collect_activations(str(augmented["int8"]), reader(int8))
    matching = debug.create_activation_matching(qdq, debug.collect_activations(str(augmented["fp32"]), reader(fp32)))
    return {name: errors["qdq_err"] for name, errors in debug.compute_activation_error(matching).items()}


def nodes_touching(model, tensors: list[str]) -> list[str]:
    """The compute nodes that produce or consume any of ``tensors`` (QDQ nodes aside)."""
    wanted = set(tensors)
    names = []
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if wanted & (set(node.input) | set(node.output)) and node.name not in names:
            names.append(node.name)
    return names


def block_settings(model) -> dict[str, list[str]]:
    """Settings to measure, each a list of nodes left in fp32: none; each encoder stage and decoder
    block alone (its convolutions by their weights' names, with the activations that follow them); the
    whole encoder; the whole decoder; the skip connections' Concat and Resize nodes."""
    prefixes = {f"encoder stage {i}": f"net.encoder.model.blocks.{i}." for i in range(7)}
    prefixes |= {f"decoder block {i}": f"net.decoder.blocks.{i}." for i in range(5)}
    prefixes |= {"whole encoder": "net.encoder.", "whole decoder": "net.decoder."}
    settings: dict[str, list[str]] = {"all quantized (the recipe)": []}
    for label, prefix in prefixes.items():
        convolutions = [n for n in model.graph.node if n.op_type == "Conv" and n.input[1].startswith(prefix)]
        outputs = {name for n in convolutions for name in n.output}
        followers = [n for n in model.graph.node if n.op_type in ("Clip", "Relu", "Add") and outputs & set(n.input)]
        settings[label] = [n.name for n in convolutions + followers]
    settings["whole decoder"] += [n.name for n in model.graph.node if n.op_type in ("Concat", "Resize")]
    settings["skip Concat and Resize"] = [n.name for n in model.graph.node if n.op_type in ("Concat", "Resize")]
    return settings


def combined_settings(model) -> dict[str, list[str]]:
    """Unions of the blocks that helped alone (encoder stages 0 and 4), and the encoder with the two
    decoder blocks at the highest resolution."""
    blocks = block_settings(model)
    return {
        "encoder stages 0 and 4": blocks["encoder stage 0"] + blocks["encoder stage 4"],
        "encoder stages 0, 1 and 4": blocks["encoder stage 0"] + blocks["encoder stage 1"] + blocks["encoder stage 4"],
        "whole encoder and decoder blocks 3 and 4": blocks["whole encoder"]
        + blocks["decoder block 3"]
        + blocks["decoder block 4"],
    }


MARGIN_EDGES = (0.0, 0.05, 0.1, 0.2, 0.4, 1.0)
"""Bins of fp32's lead of its most likely class over the second (probabilities)."""


def margin_rows(fp32: np.ndarray, int8: np.ndarray) -> list[dict]:
    """Agreement of int8's classes with fp32's by fp32's margin (top-1 minus top-2 probability), from
    ``(K, pixels)`` probabilities: per bin, and over every pixel at or above each bin's lower edge."""
    from landseg.predict.quantize import top_margin

    margin = top_margin(fp32)
    same = fp32.argmax(axis=0) == int8.argmax(axis=0)
    rows = []
    for low, high in itertools.pairwise(MARGIN_EDGES):
        inside = (margin >= low) & ((margin < high) if high < 1.0 else (margin <= high))
        above = margin >= low
        rows.append(
            {
                "margin": f"{low:g}-{high:g}",
                "pixel_share": round(float(inside.mean()), 5),
                "agreement": round(float(same[inside].mean()), 5) if inside.any() else None,
                "share_of_disagreements": round(float((~same & inside).sum() / max(1, (~same).sum())), 5),
                f"agreement_at_margin_{low:g}_or_more": round(float(same[above].mean()), 5),
            }
        )
    return rows


def margins_stage(fp32, int8, held_out) -> dict:
    """``margin_rows`` over every valid pixel of ``held_out``, each image predicted as the guard does."""
    from landseg.predict.core import predict_array
    from landseg.predict.ensemble import Ensemble
    from landseg.predict.quantize import guard_options

    pairs: dict[str, list[np.ndarray]] = {"fp32": [], "int8": []}
    for item in held_out:
        for name, member in (("fp32", fp32), ("int8", int8)):
            predicted = predict_array(item.image, Ensemble([member]), guard_options(item.image))
            valid = predicted.valid if predicted.valid is not None else np.ones(item.mask.shape, dtype=bool)
            pairs[name].append(predicted.probabilities[:, valid])
    return {
        "pixels": int(sum(p.shape[1] for p in pairs["fp32"])),
        "rows": margin_rows(np.concatenate(pairs["fp32"], axis=1), np.concatenate(pairs["int8"], axis=1)),
    }


def raw_tiles_per_second(path: Path, tiles: list[np.ndarray], repeats: int = 3) -> float:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    batch = np.stack(tiles[:2]).astype(np.float32)
    session.run(None, {name: batch})
    started = time.perf_counter()
    for _ in range(repeats):
        session.run(None, {name: batch})
    return repeats * len(batch) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "dubai.yaml")
    parser.add_argument("--calibration-tiles", type=int, default=32)
    parser.add_argument("--noise-tiles", type=int, default=2, help="Tiles the per-activation noise is measured on.")
    parser.add_argument("--guard-images", type=int, default=3, help="Held-out images the agreement is measured on.")
    parser.add_argument("--steps", default="0,2,4,8,16,32", help="How many of the noisiest activations stay in fp32.")
    parser.add_argument("--stage", choices=("noise", "blocks", "combined", "margins"), default="noise")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results" / "int8_sensitivity.json")
    args = parser.parse_args(argv)

    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from landseg.config import load_config
    from landseg.predict.models import load_model, model_file, read_card
    from landseg.predict.networks import Member, OnnxNetwork
    from landseg.predict.onnx import cached_export
    from landseg.predict.quantize import calibration_tiles, first_and_last_convolutions, measure_guard, quantize_graph
    from landseg.train.calibrate import read_split

    config = load_config(args.config)
    card, weights = read_card(args.checkpoint), model_file(args.checkpoint)
    side = card.tile_size
    fp32_path = cached_export(weights, side, load=lambda: load_model(args.checkpoint))
    images = read_split(config, "train", card, weights, "calibrate int8 on", False, limit=args.calibration_tiles)
    held_out = read_split(config, "val", card, weights, "measure int8 on", False)[: args.guard_images]
    tiles = calibration_tiles(card, [item.image for item in images], side, args.calibration_tiles)
    fp32 = Member(card, OnnxNetwork(fp32_path), weights, engine="onnxruntime")
    results = {"checkpoint": str(args.checkpoint), "environment": environment(("onnxruntime", "onnx")), "rows": []}
    results["protocol"] = {
        "calibration_tiles": len(tiles),
        "noise_tiles": args.noise_tiles,
        "guard_images": [item.name for item in held_out],
        "fp32_tiles_per_s": round(raw_tiles_per_second(fp32_path, tiles), 2),
    }
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        prepared = scratch / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        model = onnx.load(str(prepared))
        first_and_last = first_and_last_convolutions(model)

        def measure(label: str, excluded: list[str], **row) -> None:
            path = quantize_graph(fp32_path, scratch / f"{len(results['rows'])}.onnx", tiles, exclude=excluded)
            int8 = Member(card, OnnxNetwork(path), weights, engine="onnxruntime", precision="int8")
            guard = measure_guard(fp32, int8, held_out)
            row = {
                "setting": label,
                **row,
                "nodes_in_fp32": len(set(excluded) | set(first_and_last)),
                "agreement": round(guard["agreement"], 5),
                "miou_change": round(guard["miou_change"], 4),
                "int8_tiles_per_s": round(raw_tiles_per_second(path, tiles), 2),
            }
            results["rows"].append(row)
            print(row, file=sys.stderr)
            write_json(args.results, results)

        if args.stage == "noise":
            baseline = quantize_graph(fp32_path, scratch / "int8.onnx", tiles)
            noise = activation_noise(prepared, baseline, tiles[: args.noise_tiles], scratch)
            ranked = sorted(noise, key=noise.get)
            results["noisiest"] = [{"tensor": name, "sqnr_db": round(noise[name], 2)} for name in ranked[:40]]
            for keep in [int(step) for step in args.steps.split(",")]:
                measure(f"{keep} noisiest in fp32", nodes_touching(model, ranked[:keep]), noisiest_in_fp32=keep)
        elif args.stage == "margins":
            path = quantize_graph(fp32_path, scratch / "int8.onnx", tiles)
            int8 = Member(card, OnnxNetwork(path), weights, engine="onnxruntime", precision="int8")
            results["margins"] = margins_stage(fp32, int8, held_out)
            print(results["margins"], file=sys.stderr)
            write_json(args.results, results)
        else:
            settings = block_settings(model) if args.stage == "blocks" else combined_settings(model)
            for label, excluded in settings.items():
                measure(label, excluded)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
