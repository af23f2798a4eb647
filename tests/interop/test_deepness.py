"""Deepness (QGIS) interop: the exported metadata as the plugin reads it, folded graphs, and Deepness-only
models predicted through landseg's one inference core."""

import json

import numpy as np
import onnxruntime as ort
import pytest
import rasterio
import torch
import torch.nn.functional as F
import typer
from interop_helpers import DEEPNESS_KEYS, SCHEMA, Raw, cli_app, deepness_model, write_scene
from typer.testing import CliRunner

from landseg.errors import CheckpointError
from landseg.predict import deepness
from landseg.predict.ensemble import load_ensemble
from landseg.predict.onnx import CARD_METADATA, load_onnx_member


def deepness_reads(path) -> tuple[ort.InferenceSession, dict]:
    """The session and metadata exactly as Deepness gets them: custom_metadata_map, values JSON-decoded."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    raw = session.get_modelmeta().custom_metadata_map
    return session, {k: json.loads(v) for k, v in raw.items() if not k.startswith("landseg_")}


def deepness_run(session, metadata: dict, tiles_nhwc: np.ndarray) -> np.ndarray:
    """Deepness's preprocessing (values / 255, standardization, NHWC to NCHW) and one run."""
    batch = np.float32(tiles_nhwc * (1.0 / 255.0))
    batch = (batch - np.float32(metadata["standardization_mean"])) / np.float32(metadata["standardization_std"])
    batch = np.ascontiguousarray(np.transpose(batch, (0, 3, 1, 2)), dtype=np.float32)
    return session.run(None, {session.get_inputs()[0].name: batch})[0]


def test_card_key_matches_the_onnx_module():
    assert deepness.CARD_METADATA == CARD_METADATA


def test_export_writes_every_deepness_key_as_the_plugin_reads_it(plain_export):
    session, metadata = deepness_reads(plain_export["onnx"])
    assert metadata["model_type"] == "Segmentor"
    names = [v for _, v in sorted(metadata["class_names"].items(), key=lambda kv: int(kv[0]))]
    assert names == SCHEMA.names
    assert metadata["resolution"] == 50.0  # 0.5 m training pixels in cm
    assert metadata["tiles_size"] == metadata["tile_size"] == 32 == session.get_inputs()[0].shape[-1]
    assert metadata["tiles_overlap"] == 50
    assert metadata["standardization_mean"] == metadata["standardization_std"] == [0.5, 0.5, 0.5]
    assert metadata["seg_thresh"] == 0.0 and metadata["seg_small_segment"] == 0
    raw = session.get_modelmeta().custom_metadata_map
    assert json.loads(raw[CARD_METADATA])["schema"]["name"] == SCHEMA.name  # landseg's card travels beside
    assert [o.name for o in session.get_outputs()] == ["probabilities"]


def test_deepness_run_of_the_export_equals_landseg_on_the_checkpoint(plain_export):
    session, metadata = deepness_reads(plain_export["onnx"])
    tiles = np.random.default_rng(1).integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    probabilities = deepness_run(session, metadata, tiles)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)  # softmax outputs, as Deepness expects
    ensemble = load_ensemble([plain_export["checkpoint"]], engine="torch")
    raw = np.ascontiguousarray(np.transpose(tiles, (0, 3, 1, 2)))
    expected = ensemble.predict(raw, ensemble.plan(3, (None,) * 3, "tiles"))
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    assert (probabilities.argmax(1) == expected.argmax(1)).all()


def test_a_calibrated_export_gives_qgis_the_tempered_probabilities_once(plain_export, tmp_path):
    """The card's temperature goes into the graph (logits / T before the softmax), so Deepness shows the
    probabilities landseg writes for a tile; read back by landseg, the file is not tempered a second time."""
    from landseg.checkpoint import load_checkpoint
    from landseg.interop.deepness import export_for_deepness
    from landseg.train.calibrate import write_calibration

    checkpoint = tmp_path / "calibrated.ckpt"
    checkpoint.write_bytes(plain_export["checkpoint"].read_bytes())
    write_calibration(checkpoint, {"method": "temperature scaling", "temperature": 2.5})
    exported = export_for_deepness(load_checkpoint(checkpoint), tmp_path / "calibrated.onnx")
    session, metadata = deepness_reads(exported)
    tiles = np.random.default_rng(2).integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
    probabilities = deepness_run(session, metadata, tiles)
    ensemble = load_ensemble([checkpoint], engine="torch")
    raw = np.ascontiguousarray(np.transpose(tiles, (0, 3, 1, 2)))
    plain = ensemble.predict(raw, ensemble.plan(3, (None,) * 3, "tiles"))
    tempered = np.stack([ensemble.calibrate(tile) for tile in plain])
    np.testing.assert_allclose(probabilities, tempered, atol=1e-5)
    assert np.abs(probabilities - plain).max() > 0.01
    read_back = load_ensemble([exported]).members[0].card
    assert read_back.temperature == 1.0 and read_back.training["deepness"]["temperature_in_graph"] == 2.5


def test_folded_graph_gives_the_classes_of_the_landseg_path(folded_export):
    session, metadata = deepness_reads(folded_export["onnx"])
    assert metadata["standardization_mean"] == [0.0] * 3 and metadata["standardization_std"] == [1.0] * 3
    assert metadata["tiles_size"] == 64 == session.get_inputs()[0].shape[-1]  # 32 network px at input scale 0.5
    raw = np.random.default_rng(2).integers(0, 4000, size=(2, 3, 64, 64)).astype(np.uint16)
    folded = deepness_run(session, metadata, np.transpose(raw, (0, 2, 3, 1)))
    with torch.no_grad():  # the core's steps for this card: normalize, resize, network, softmax, resize back
        batch = folded_export["normalization"].apply_torch(torch.from_numpy(raw.astype(np.float32)))
        batch = F.interpolate(batch, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
        expected = torch.softmax(folded_export["loaded"].network(batch), dim=1)
        expected = F.interpolate(expected, size=(64, 64), mode="bilinear", align_corners=False).numpy()
    np.testing.assert_allclose(folded, expected, atol=1e-4)
    assert (folded.argmax(1) == expected.argmax(1)).mean() >= 0.999
    core = load_ensemble([folded_export["loaded"].path], engine="torch")  # the inference core on the checkpoint
    landseg_path = core.predict(raw, core.plan(3, (None,) * 3, "tiles"))
    np.testing.assert_allclose(landseg_path, expected, atol=1e-4)
    assert (folded.argmax(1) == landseg_path.argmax(1)).mean() >= 0.999
    member = load_onnx_member(folded_export["onnx"])  # and landseg reads the folded file back the same way
    assert member.card.input_scale == 1.0 and member.card.tile_size == 64
    assert member.card.class_schema().names == SCHEMA.names
    ensemble = load_ensemble([folded_export["onnx"]])
    again = ensemble.predict(raw, ensemble.plan(3, (None,) * 3, "tiles"))
    np.testing.assert_allclose(again, expected, atol=1e-4)


def test_deepness_only_model_runs_through_landseg_predict(tmp_path):
    model = deepness_model(tmp_path / "third_party.onnx", DEEPNESS_KEYS)
    member = load_onnx_member(model)
    card = member.card
    assert card.class_schema().names == ["background", "field", "forest", "water"]
    assert len(set(map(tuple, card.class_schema().palette))) == 4 and card.tile_size == 16 and card.bands == [1, 2, 3]
    np.testing.assert_allclose(card.normalization["mean"], [102.0, 114.75, 127.5])
    assert card.training["deepness"] == {
        "resolution_cm": 50.0,
        "tiles_overlap_percent": 25,
        "seg_thresh": 0.5,
        "seg_small_segment": 3,
    }
    data = np.random.default_rng(3).integers(0, 256, size=(3, 40, 52), dtype=np.uint8)
    scene = write_scene(tmp_path / "scene.tif", data)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli_app(),
        ["predict", str(scene), "-c", str(model), "--out", str(out), "--probabilities", "--no-preview", "--no-areas"],
    )
    assert result.exit_code == 0, result.output
    # ONNX Runtime directly on the scene's 16 px tiles (the model is per pixel, so any tiling agrees)
    session, metadata = deepness_reads(model)
    padded = np.pad(np.transpose(data, (1, 2, 0)), ((0, 8), (0, 12), (0, 0)), mode="reflect")
    tiles = padded.reshape(3, 16, 4, 16, 3).transpose(0, 2, 1, 3, 4).reshape(12, 16, 16, 3)
    scores = deepness_run(session, metadata, tiles).reshape(3, 4, 4, 16, 16).transpose(2, 0, 3, 1, 4)
    scores = scores.reshape(4, 48, 64)[:, :40, :52]
    with rasterio.open(out / "scene_classes.tif") as src:
        classes = src.read(1)
    with rasterio.open(out / "scene_probabilities.tif") as src:
        probabilities = src.read().astype(np.float32) / 255.0
    assert (classes == scores.argmax(0)).mean() >= 0.999
    assert np.abs(probabilities - scores).max() <= 1.5 / 255.0


def test_landseg_export_predicts_back_like_its_checkpoint(plain_export, tmp_path):
    data = np.random.default_rng(4).integers(1, 255, size=(3, 45, 70), dtype=np.uint8)
    scene = write_scene(tmp_path / "scene.tif", data)
    maps = {}
    for name, flags in (
        ("checkpoint", ["-c", str(plain_export["checkpoint"]), "--engine", "torch"]),
        ("onnx", ["-c", str(plain_export["onnx"])]),
        ("stac", ["--stac", str(plain_export["item"])]),
    ):
        out = tmp_path / name
        result = CliRunner().invoke(
            cli_app(), ["predict", str(scene), *flags, "--out", str(out), "--no-preview", "--no-areas"]
        )
        assert result.exit_code == 0, result.output
        with rasterio.open(out / "scene_classes.tif") as src:
            maps[name] = src.read(1)
    assert (maps["onnx"] == maps["checkpoint"]).mean() >= 0.999
    assert (maps["stac"] == maps["onnx"]).all()


def with_keys(**changes) -> dict:
    metadata = dict(DEEPNESS_KEYS)
    for key, value in changes.items():
        if value is None:
            metadata.pop(key)
        else:
            metadata[key] = value
    return metadata


@pytest.mark.parametrize(
    "metadata, problem",
    [
        (with_keys(model_type=None), "'model_type' is missing"),
        (with_keys(model_type="Detector"), "model_type is 'Detector'"),
        (with_keys(class_names=None), "'class_names' is missing"),
        (with_keys(class_names=Raw("{0: 'a'}")), "'class_names' is not JSON-encoded"),
        (with_keys(class_names={"0": "a", "2": "b", "3": "c", "4": "d"}), "without gaps"),
        (with_keys(class_names={"0": "a", "1": "b"}), "2 classes but the model returns 4 channels"),
        (with_keys(standardization_std=None), "'standardization_std' is missing, but 'standardization_mean' is given"),
        (with_keys(standardization_std=[0.2, 0.3]), "'standardization_std' has 2 values but the model takes 3 bands"),
        (with_keys(standardization_std=[0.2, 0, 0.3]), "'standardization_std' must be positive"),
        (with_keys(standardization_mean=Raw("red")), "'standardization_mean' is not JSON-encoded"),
        (with_keys(tiles_size=32), "'tiles_size' is 32, but the model takes 16 px tiles"),
        (with_keys(tiles_overlap=120), "'tiles_overlap' is a percentage below 100"),
        (with_keys(seg_thresh=2), "'seg_thresh' must lie in 0-1"),
        (with_keys(resolution=-5), "'resolution' must be positive"),
        (with_keys(seg_small_segment=1.5), "'seg_small_segment' must be a whole number"),
    ],
)
def test_missing_or_malformed_deepness_keys_fail_with_one_clear_error(tmp_path, metadata, problem):
    model = deepness_model(tmp_path / "bad.onnx", metadata)
    with pytest.raises(CheckpointError, match=r"bad\.onnx") as caught:
        load_onnx_member(model)
    assert problem in caught.value.problem and "\n" not in str(caught.value)


def test_cli_reports_a_bad_deepness_model_in_one_line(tmp_path):
    from landseg.cli.errors import friendly_errors
    from landseg.cli.predict import predict_command

    model = deepness_model(tmp_path / "bad.onnx", with_keys(class_names=None))
    scene = write_scene(tmp_path / "scene.tif", np.zeros((3, 16, 16), dtype=np.uint8))
    app = typer.Typer()
    app.command("predict")(friendly_errors(predict_command))
    app.command("export")(lambda: None)  # two commands, so that typer keeps the command name
    result = CliRunner().invoke(app, ["predict", str(scene), "-c", str(model), "--out", str(tmp_path / "out")])
    assert result.exit_code != 0
    assert "bad.onnx" in result.output and "'class_names' is missing" in result.output
