"""int8 models: made at the end of training with a guard measured against fp32 on the validation images,
run by ``--precision int8`` and ``auto`` through the inference core, refused without a guard, cached by
checkpoint content, and made by ``landseg export --precision int8``."""

import json
import shutil
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import rasterio
import yaml
from tests.helpers import experiment, save_tiny_checkpoint
from typer.testing import CliRunner

from landseg.classes import IGNORE_INDEX
from landseg.cli import app
from landseg.config import parse_config
from landseg.data.dataset import LabelledImage
from landseg.errors import ConfigError
from landseg.predict import quantize
from landseg.predict.core import predict_array
from landseg.predict.engine import PredictOptions
from landseg.predict.ensemble import Ensemble, load_ensemble
from landseg.predict.int8 import describe_guard, find_int8, guard_passes
from landseg.predict.models import read_card
from landseg.predict.onnx import cached_export, load_onnx_member
from landseg.predict.quantize import guard_options, quantize_graph, stamp_card, top_margin
from landseg.predict.run import run_predict
from landseg.train.calibrate import write_calibration
from landseg.train.run import train

PASSING = {"agreement": 0.999, "miou_change": -0.001, "measured_on": {"images": 1, "split": "val"}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synthetic_dataset):
    """A tiny U-Net trained for a few steps with ``train.int8_export`` on: its config (a dict) and result."""
    config = experiment(synthetic_dataset, train={"int8_export": True, "steps_per_epoch": 6})
    result = train(parse_config(config), tmp_path_factory.mktemp("int8") / "run", progress=False)
    return config, result


def copy_run(result, folder: Path) -> tuple[Path, Path]:
    """best.ckpt and its int8 model copied into ``folder`` under their own names (keys follow content)."""
    folder.mkdir()
    int8 = Path(result.int8["path"])
    shutil.copy(result.best_checkpoint, folder / "best.ckpt")
    shutil.copy(int8, folder / int8.name)
    return folder / "best.ckpt", folder / int8.name


def class_map(out_dir: Path, image: Path, checkpoint: Path, precision: str) -> tuple[np.ndarray, dict]:
    options = PredictOptions(preview=False, areas=False)
    run_predict([image], [checkpoint], out_dir, options, precision=precision)
    with rasterio.open(out_dir / f"{image.stem}_classes.tif") as source:
        classes = source.read(1)
    return classes, json.loads((out_dir / f"{image.stem}_prediction.json").read_text())


def test_training_leaves_an_int8_model_and_its_guard_beside_the_best_checkpoint(trained):
    _, result = trained
    path = Path(result.int8["path"])
    side = read_card(result.best_checkpoint).tile_size
    assert path.parent == result.best_checkpoint.parent and path.name.endswith(f".t{side}.int8.onnx")
    assert find_int8(result.best_checkpoint, side) == path
    member = load_onnx_member(path)
    guard = member.card.int8
    assert member.precision == "int8" and guard == {
        k: v for k, v in result.int8.items() if k not in ("path", "auto_runs_it")
    }
    assert 0.0 <= guard["agreement"] <= 1.0 and guard["measured_on"]["images"] == 1
    assert guard["miou_change"] == pytest.approx(guard["miou_int8"] - guard["miou_fp32"])
    assert guard["calibrated_on"]["tiles"] >= 2 and guard["tile"] == side
    assert result.int8["auto_runs_it"] == guard_passes(guard)
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["int8"] == result.int8
    operators = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= operators


def test_predict_int8_agrees_with_fp32_at_the_rate_its_guard_recorded(trained, synthetic_dataset, tmp_path):
    """The guard is measured through the inference core on the validation image, so predicting that image
    from its file with each precision reproduces the recorded agreement."""
    _, result = trained
    guard = result.int8
    image = synthetic_dataset / "images" / "scene_002.tif"
    fp32, fp32_record = class_map(tmp_path / "fp32", image, result.best_checkpoint, "fp32")
    if guard_passes(guard):
        int8, record = class_map(tmp_path / "int8", image, result.best_checkpoint, "int8")
    else:
        with pytest.warns(UserWarning, match="misses the bars"):
            int8, record = class_map(tmp_path / "int8", image, result.best_checkpoint, "int8")
    assert np.mean(int8 == fp32) == pytest.approx(guard["agreement"], abs=1e-9)
    assert fp32_record["precisions"] == ["fp32"] and record["precisions"] == ["int8"]
    assert record["int8_guards"][0]["agreement"] == guard["agreement"]


def test_the_guard_also_reports_agreement_where_fp32_is_sure(trained, synthetic_dataset, monkeypatch):
    """Beside the bar's agreement, the guard says how much of it holds where fp32's top class leads by a
    margin: recomputed here from both precisions' probabilities on the validation image. The tiny model is
    nowhere 0.2 sure, so the margin is set to its median lead, leaving pixels on both sides."""
    _, result = trained
    with rasterio.open(synthetic_dataset / "images" / "scene_002.tif") as source:
        pixels = source.read()
    members, predicted = {}, {}
    for precision in ("fp32", "int8"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # int8 asked for below the bars warns
            members[precision] = load_ensemble([result.best_checkpoint], precision=precision).members[0]
        predicted[precision] = predict_array(pixels, Ensemble([members[precision]]), guard_options(pixels))
    margin = top_margin(predicted["fp32"].probabilities)
    monkeypatch.setattr(quantize, "CONFIDENT_MARGIN", float(np.median(margin)))
    unlabelled = np.full(pixels.shape[1:], IGNORE_INDEX, dtype=np.uint8)
    guard = quantize.measure_guard(members["fp32"], members["int8"], [LabelledImage(pixels, unlabelled, "val")])
    sure = margin >= guard["confident_margin"]
    kept = predicted["fp32"].probabilities.argmax(axis=0) == predicted["int8"].probabilities.argmax(axis=0)
    assert 0.3 < guard["confident_share"] < 0.7 and guard["confident_share"] == pytest.approx(sure.mean())
    assert guard["agreement_where_confident"] == pytest.approx(kept[sure].mean(), abs=1e-9)
    assert guard["agreement"] == pytest.approx(kept.mean(), abs=1e-9)
    assert f"where fp32 leads by {guard['confident_margin']:g}" in describe_guard(guard)


def test_top_margin_is_the_lead_of_the_most_likely_class():
    probabilities = np.array([[[0.5, 0.2]], [[0.3, 0.2]], [[0.2, 0.6]]], dtype=np.float32)
    np.testing.assert_allclose(top_margin(probabilities), [[0.2, 0.4]], atol=1e-7)


def test_auto_runs_int8_only_where_its_guard_passes(trained, tmp_path):
    _, result = trained
    checkpoint, int8 = copy_run(result, tmp_path / "run")
    card = load_onnx_member(int8).card
    for guard, expected in [
        (PASSING, "int8"),
        ({**PASSING, "agreement": 0.99}, "fp32"),
        ({**PASSING, "miou_change": -0.01}, "fp32"),
        ({**PASSING, "miou_change": None}, "int8"),  # measured on unlabelled images: agreement decides
    ]:
        stamp_card(int8, replace(card, int8=guard), card.tile_size, int8)
        (member,) = load_ensemble([checkpoint], precision="auto").members
        assert member.precision == expected, guard
        assert member.engine == "onnxruntime"
    (member,) = load_ensemble([checkpoint], precision="fp32").members
    assert member.precision == "fp32"


def test_int8_is_refused_for_a_model_without_a_guard(tmp_path):
    checkpoint = save_tiny_checkpoint(tmp_path / "plain.ckpt")
    with pytest.raises(ConfigError, match=r"no int8 model with a measured guard.*landseg export"):
        load_ensemble([checkpoint], precision="int8")
    (member,) = load_ensemble([checkpoint], precision="auto").members  # auto falls back to fp32
    assert member.precision == "fp32"
    with pytest.raises(ConfigError, match="ONNX Runtime"):
        load_ensemble([checkpoint], engine="torch", precision="int8")


def test_an_int8_file_whose_card_lost_its_guard_is_refused(trained, tmp_path):
    _, result = trained
    checkpoint, int8 = copy_run(result, tmp_path / "run")
    card = load_onnx_member(int8).card
    stamp_card(int8, replace(card, int8=None), card.tile_size, int8)
    with pytest.raises(ConfigError, match="no int8 model with a measured guard"):
        load_ensemble([checkpoint], precision="int8")


def test_the_int8_model_follows_the_checkpoint_content(trained, tmp_path):
    """A checkpoint rewritten (here by ``landseg calibrate``) has no int8 model until one is made again, and
    the next export beside it removes the old content's int8 file."""
    _, result = trained
    checkpoint, int8 = copy_run(result, tmp_path / "run")
    side = read_card(checkpoint).tile_size
    assert find_int8(checkpoint, side) == int8
    write_calibration(checkpoint, {"method": "temperature scaling", "temperature": 0.5})
    assert find_int8(checkpoint, side) is None
    cached_export(checkpoint, side)
    assert not int8.exists()


def test_export_precision_int8_writes_a_guarded_model(trained, tmp_path):
    config, result = trained
    checkpoint = tmp_path / "best.ckpt"
    shutil.copy(result.best_checkpoint, checkpoint)
    (tmp_path / "experiment.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "model_int8.onnx"
    runner = CliRunner()
    arguments = ["export", "-c", str(checkpoint), "--onnx", str(out), "--precision", "int8"]
    refused = runner.invoke(app, arguments)
    assert refused.exit_code != 0 and "--precision int8 needs --config" in refused.output
    done = runner.invoke(app, [*arguments, "--config", str(tmp_path / "experiment.yaml")])
    assert done.exit_code == 0, done.output
    member = load_onnx_member(out)
    assert member.precision == "int8" and member.card.int8["measured_on"]["split"] == "val"
    cached = find_int8(checkpoint, member.card.tile_size)
    assert cached is not None and cached.read_bytes() == out.read_bytes()
    # Calibration and guard are deterministic: the same numbers as training's own int8 model.
    assert member.card.int8["agreement"] == result.int8["agreement"]


def test_export_int8_from_unlabelled_images_guards_on_agreement_alone(synthetic_dataset, tmp_path):
    """A model without a labelled config (a zoo model's case): calibrated on some images, its guard
    measured on others, agreement only; predict then finds it beside the checkpoint."""
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.ckpt")
    images = [synthetic_dataset / "images" / f"scene_00{i}.tif" for i in range(3)]
    out = tmp_path / "tiny_int8.onnx"
    arguments = ["export", "-c", str(checkpoint), "--onnx", str(out), "--precision", "int8"]
    given = [
        "--calibration-image",
        str(images[0]),
        "--calibration-image",
        str(images[1]),
        "--guard-image",
        str(images[2]),
    ]
    done = CliRunner().invoke(app, [*arguments, *given])
    assert done.exit_code == 0, done.output
    guard = load_onnx_member(out).card.int8
    assert guard["miou_change"] is None and guard["measured_on"]["images"] == 1
    assert guard["measured_on"]["pixels"] == 96 * 96 and guard["calibrated_on"]["tiles"] >= 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a random network's guard may miss the bars; int8 runs as asked
        (member,) = load_ensemble([checkpoint], precision="int8").members
    assert member.precision == "int8" and member.card.int8 == guard


def test_nodes_named_to_stay_fp32_keep_float_weights(trained, tmp_path):
    """``quantize_graph(exclude=...)``, what ``benchmarks/int8_sensitivity.py`` measures with: the named
    convolution reads its weight as float; the others read it through DequantizeLinear."""
    _, result = trained
    side = read_card(result.best_checkpoint).tile_size
    fp32 = cached_export(result.best_checkpoint, side)
    convolutions = [node.name for node in onnx.load(str(fp32)).graph.node if node.op_type == "Conv"]
    kept = convolutions[len(convolutions) // 2]
    tiles = [np.random.default_rng(i).normal(size=(3, side, side)).astype(np.float32) for i in range(2)]
    quantized = onnx.load(str(quantize_graph(fp32, tmp_path / "int8.onnx", tiles, exclude=[kept])))
    dequantized = {out for node in quantized.graph.node if node.op_type == "DequantizeLinear" for out in node.output}
    weight_quantized = {
        node.name: node.input[1] in dequantized for node in quantized.graph.node if node.op_type == "Conv"
    }
    assert weight_quantized[kept] is False
    assert sum(weight_quantized.values()) == len(convolutions) - 3  # all but first, last and the kept one


def test_a_float16_network_is_refused_by_name(tmp_path):
    """The cloud models ship as float16 ONNX networks, which ONNX Runtime's static quantization cannot take."""
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((2, 3, 3, 3), dtype=np.float16), "weight")
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["input"], ["half"], to=TensorProto.FLOAT16),
            helper.make_node("Conv", ["half", "weight"], ["convolved"], pads=[1, 1, 1, 1]),
            helper.make_node("Cast", ["convolved"], ["output"], to=TensorProto.FLOAT),
        ],
        "half",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 2, 8, 8])],
        initializer=[weight],
    )
    path = tmp_path / "half.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(ConfigError, match="float16 network") as raised:
        quantize_graph(path, tmp_path / "int8.onnx", [np.zeros((3, 8, 8), dtype=np.float32)])
    assert str(path) in str(raised.value)


def test_a_float16_zoo_model_is_refused_before_any_calibration(monkeypatch, tmp_path):
    """ukis-csmask's cloud model is float16: refused at once, not after running it over the calibration
    images (none are given here, which calibration itself would refuse with another message)."""
    pytest.importorskip("ukis_csmask")
    monkeypatch.setenv("LANDSEG_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ConfigError, match="float16 network"):
        quantize.quantize_checkpoint("zoo:cloud-shadow", [], [])
    assert not list((tmp_path / "cache").rglob("*.int8.onnx"))
