"""STAC MLM items: what ``landseg export --stac`` writes validates offline, and ``--stac`` reads only
model files beside the item."""

import json
import socket

import pytest
from interop_helpers import SCHEMA, cli_app, write_checkpoint
from typer.testing import CliRunner

from landseg.checkpoint import load_checkpoint
from landseg.errors import ConfigError, DataError
from landseg.interop.stac import mlm_item, model_from_item
from landseg.normalization import DynamicWorldNormalization


@pytest.fixture
def offline(monkeypatch):
    """Validation must not need the network: any connection attempt fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("validation tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_exported_item_validates_offline(plain_export, offline):
    pystac = pytest.importorskip("pystac")
    from pystac.extensions.mlm import MLMExtension
    from pystac.validation import validate_dict
    from stac_model.schema import MLModelProperties

    item = json.loads(plain_export["item"].read_text())
    # the STAC core Item schema pystac ships (extension schemas are online only, so checked below instead)
    validate_dict({**item, "stac_extensions": []})
    # the MLM fields against stac-model's pydantic models of the extension
    fields = MLModelProperties.model_validate({k[4:]: v for k, v in item["properties"].items() if k.startswith("mlm:")})
    assert (
        fields.name == "tiny"
        and fields.architecture == "classic_unet"
        and set(fields.tasks) == {"semantic-segmentation"}
    )
    assert fields.total_parameters == sum(
        p.numel() for p in load_checkpoint(plain_export["checkpoint"]).network.parameters()
    )
    assert fields.framework == "PyTorch" and fields.pretrained is False
    (given,) = fields.input
    assert list(given.bands) == ["red", "green", "blue"] and given.input.shape == [-1, 3, 32, 32]
    assert given.input.dim_order == ["batch", "bands", "height", "width"] and given.input.data_type == "float32"
    assert [(s.mean, s.stddev) for s in given.value_scaling] == [(127.5, 127.5)] * 3
    (output,) = fields.output
    assert [c.to_dict()["name"] for c in output.classes] == SCHEMA.names
    assert output.classes[1].to_dict()["color_hint"] == "{:02X}{:02X}{:02X}".format(*SCHEMA.classes[1].color)
    # pystac's MLM extension reads it, and the assets name both artifacts relative to the item
    extension = MLMExtension.ext(pystac.Item.from_dict(item))
    assert extension.architecture == "classic_unet" and extension.total_parameters == fields.total_parameters
    model, checkpoint = item["assets"]["model"], item["assets"]["checkpoint"]
    assert "mlm:model" in model["roles"] and model["mlm:artifact_type"] == "onnx" and model["href"] == "./tiny.onnx"
    assert "mlm:model" in checkpoint["roles"] and checkpoint["mlm:artifact_type"] == "torch.save"
    assert (plain_export["item"].parent / checkpoint["href"]).resolve() == plain_export["checkpoint"].resolve()
    assert model_from_item(plain_export["item"]) == plain_export["onnx"].resolve()


def test_folded_models_declare_raw_values_over_255(tmp_path):
    normalization = DynamicWorldNormalization((5.0, 5.2, 5.4), (1.0, 1.1, 0.9))
    loaded = load_checkpoint(write_checkpoint(tmp_path / "dw.ckpt", normalization.to_dict(), input_scale=0.5))
    item = mlm_item(loaded.card, tmp_path / "dw.onnx", tmp_path / "dw.json", 64)
    (given,) = item["properties"]["mlm:input"]
    assert given["value_scaling"] == [{"type": "scale", "value": 255.0}] and given["input"]["shape"] == [-1, 3, 64, 64]


def write_item(folder, assets) -> object:
    path = folder / "item.json"
    path.write_text(
        json.dumps(
            {
                "type": "Feature",
                "stac_version": "1.1.0",
                "id": "x",
                "geometry": None,
                "properties": {"datetime": "2024-01-01T00:00:00Z"},
                "links": [],
                "assets": assets,
            }
        )
    )
    return path


@pytest.mark.parametrize(
    "href, error, problem",
    [
        ("../elsewhere/model.onnx", DataError, "climbs out"),
        ("/etc/model.onnx", DataError, "absolute path"),
        ("https://example.com/model.onnx", ConfigError, "is a URL"),
    ],
)
def test_model_hrefs_outside_the_item_folder_are_refused(tmp_path, href, error, problem):
    item = write_item(tmp_path, {"model": {"href": href, "roles": ["mlm:model"], "mlm:artifact_type": "onnx"}})
    with pytest.raises(error, match=problem) as caught:
        model_from_item(item)
    assert "item.json" in str(caught.value)


def test_items_without_a_model_or_not_items_are_refused(tmp_path):
    item = write_item(tmp_path, {"data": {"href": "./a.tif", "roles": ["data"]}})
    with pytest.raises(ConfigError, match="no asset with role 'mlm:model'"):
        model_from_item(item)
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="not a STAC Item"):
        model_from_item(tmp_path / "list.json")


def test_export_refuses_an_item_outside_the_model_folder_before_exporting(tmp_path):
    (tmp_path / "models").mkdir()
    result = CliRunner().invoke(
        cli_app(),
        [
            "export",
            "-c",
            str(tmp_path / "missing.ckpt"),
            "--onnx",
            str(tmp_path / "models" / "m.onnx"),
            "--stac",
            str(tmp_path / "x" / "m.json"),
        ],
    )
    assert isinstance(result.exception, ConfigError) and "folder of m.onnx or a folder above it" in str(
        result.exception
    )
    assert not (tmp_path / "models" / "m.onnx").exists()
