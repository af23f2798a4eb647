"""Every file landseg reads is data, never code: checkpoints (also through Lightning's ``--resume``),
YAML, JSON sidecars, ONNX models and archives. ``test_malicious_checkpoint.py`` covers the refusal by
``predict``, ``evaluate``, ``train --resume``, ``serve`` and Dask workers; this file covers the rest."""

from __future__ import annotations

import argparse
import io
import re
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from lightning.fabric.utilities.data import AttributeDict
from reliability_helpers import assert_one_line_error, experiment, write_geotiff, write_yaml
from typer.testing import CliRunner

from landseg.checkpoint import UnsafeCheckpointError, convert_checkpoint, read_checkpoint
from landseg.cli import app
from landseg.config import load_config
from landseg.errors import CheckpointError, DataError
from landseg.io.safety import check_member_paths, read_json_limited, safe_extract
from landseg.predict.onnx import load_onnx_member
from landseg.train.callbacks import AtomicCheckpointIO
from landseg.train.run import train

runner = CliRunner()
SRC = Path(__file__).parents[2] / "src" / "landseg"


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, synthetic_dataset) -> Path:
    """A real two-epoch landseg run with SWA, early stopping and a plateau schedule: every callback
    and scheduler state that lands in a checkpoint."""
    folder = tmp_path_factory.mktemp("trained")
    config = experiment(
        synthetic_dataset,
        train={
            "epochs": 2,
            "swa": {"start_epoch": 0, "cycle_epochs": 1, "max_lr": 0.01, "min_lr": 0.001},
            "scheduler": {"name": "plateau"},
            "early_stopping": {"patience": 3},
        },
    )
    train(load_config(write_yaml(folder / "config.yaml", config)), folder / "run", progress=False)
    return folder / "run"


def leaf_types(value) -> set[str]:
    if isinstance(value, dict):
        return set().union(*(leaf_types(v) for v in value.values()), {type(k).__name__ for k in value})
    if isinstance(value, (list, tuple)):
        return set().union(set(), *(leaf_types(v) for v in value))
    return {type(value).__name__}


PLAIN = {"Tensor", "str", "int", "float", "bool", "NoneType"}


# -- checkpoints ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["last.ckpt", "best.ckpt"])
def test_landseg_checkpoints_hold_only_tensors_and_plain_data(trained_run, name):
    stored = torch.load(trained_run / "checkpoints" / name, map_location="cpu", weights_only=True)
    assert {"RandomStateCheckpoint", "CyclicSWA"} <= {key.split("{")[0] for key in stored["callbacks"]}
    assert leaf_types(stored) <= PLAIN


def test_lightnings_own_resume_loading_refuses_code(tmp_path, malicious, synthetic_dataset, monkeypatch):
    """With landseg's resume check out of the way, ``Trainer.fit(ckpt_path=...)`` itself reads the file."""
    path, marker = malicious
    with pytest.raises(UnsafeCheckpointError, match="arbitrary code"):
        AtomicCheckpointIO().load_checkpoint(path, weights_only=False)
    monkeypatch.setattr("landseg.train.run.check_resumable", lambda *args: None)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(path.read_bytes())
    config = write_yaml(tmp_path / "config.yaml", experiment(synthetic_dataset))
    result = runner.invoke(app, ["train", str(config), "--out", str(run), "--resume"])
    assert_one_line_error(result, "last.ckpt", "arbitrary code", "convert-checkpoint --trust")
    assert not marker.exists()


def test_a_refused_checkpoint_names_the_way_out(tmp_path, malicious, synthetic_scene):
    path, marker = malicious
    image = write_geotiff(tmp_path / "scene.tif", synthetic_scene.image)
    result = runner.invoke(app, ["predict", "-c", str(path), str(image), "--out", str(tmp_path / "out")])
    line = assert_one_line_error(result, path.name, "arbitrary code", "convert-checkpoint --trust")
    assert re.search(r"needs unpickling of (posix\.system|builtins\.eval) ", line)
    assert not marker.exists() and not (tmp_path / "out").exists()


def resaved_with_objects(source: Path, target: Path) -> Path:
    """``source`` as older Lightning versions and user scripts save one: an ``AttributeDict`` of
    hyper-parameters, an ``argparse.Namespace`` of arguments and a numpy scalar score."""
    stored = torch.load(source, map_location="cpu", weights_only=True)
    stored["hyper_parameters"] = AttributeDict(stored["hyper_parameters"], args=argparse.Namespace(lr=0.1))
    stored["best_score"] = np.float64(0.5)
    torch.save(stored, target)
    return target


def predicted_maps(checkpoint: Path, image: Path, out: Path) -> dict[str, np.ndarray]:
    result = runner.invoke(app, ["predict", "-c", str(checkpoint), str(image), "--out", str(out), "--engine", "torch"])
    assert result.exit_code == 0, result.output
    maps = {}
    for raster in sorted(out.glob("*.tif")):
        with rasterio.open(raster) as dataset:
            maps[raster.name] = dataset.read()
    assert maps
    return maps


def test_convert_checkpoint_with_trust_gives_a_safe_copy_that_predicts_the_same(tmp_path, trained_run, synthetic_scene):
    original = trained_run / "checkpoints" / "last.ckpt"
    pickled = resaved_with_objects(original, tmp_path / "pickled.ckpt")
    with pytest.raises(UnsafeCheckpointError, match="convert-checkpoint --trust"):
        read_checkpoint(pickled)
    converted = tmp_path / "safe.ckpt"
    result = runner.invoke(app, ["convert-checkpoint", "--trust", str(pickled), str(converted)])
    assert result.exit_code == 0, result.output
    stored = torch.load(converted, map_location="cpu", weights_only=True)
    assert leaf_types(stored) <= PLAIN and set(stored["hyper_parameters"]) == {"card", "train"}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    image = write_geotiff(tmp_path / "scene.tif", synthetic_scene.image)
    expected = predicted_maps(original, image, tmp_path / "from_original")
    got = predicted_maps(converted, image, tmp_path / "from_converted")
    assert expected.keys() == got.keys()
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name])


def test_convert_checkpoint_without_trust_refuses_and_writes_nothing(tmp_path, malicious):
    path, marker = malicious
    result = runner.invoke(app, ["convert-checkpoint", str(path), str(tmp_path / "safe.ckpt")])
    assert_one_line_error(result, path.name, "--trust")
    assert not marker.exists() and not (tmp_path / "safe.ckpt").exists()
    with pytest.raises(CheckpointError, match="--trust"):
        convert_checkpoint(path, tmp_path / "safe.ckpt", trust=False)


def test_no_loader_in_landseg_unpickles_or_constructs_objects():
    """Only ``convert_checkpoint`` unpickles (``weights_only=False``); YAML is read safely everywhere."""
    unsafe = re.compile(
        r"yaml\.(load|unsafe_load|full_load)\(|yaml\.(Unsafe|Full)?Loader\b|pickle\.loads?\("
        r"|allow_pickle\s*=\s*True|torch\.jit\.load\(|torch\.load\((?![^)]*weights_only\s*=\s*True)"
    )
    trusting = re.compile(r"torch\.load\([^)]*weights_only\s*=\s*False")
    found, trusted = [], []
    for source in sorted(SRC.rglob("*.py")):
        for number, line in enumerate(source.read_text().splitlines(), 1):
            where = f"{source.relative_to(SRC).as_posix()}:{number}"
            if trusting.search(line):
                trusted.append(where.split(":")[0])
            elif unsafe.search(line):
                found.append(f"{where} {line.strip()}")
    assert found == []
    assert trusted == ["checkpoint.py"]


# -- YAML -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["config", "schema"])
def test_yaml_that_would_construct_objects_is_one_line(tmp_path, synthetic_dataset, where):
    marker = tmp_path / "code_ran"
    tag = f'!!python/object/apply:os.system ["touch {marker}"]'
    config = experiment(synthetic_dataset)
    if where == "schema":
        (tmp_path / "evil_schema.yaml").write_text(f"name: evil\nclasses: {tag}\n")
        config["data"]["schema"] = "evil_schema.yaml"
    text = write_yaml(tmp_path / "config.yaml", config).read_text()
    if where == "config":
        (tmp_path / "config.yaml").write_text(text.replace(f"name: {config['name']}", f"name: {tag}"))
    result = runner.invoke(app, ["train", str(tmp_path / "config.yaml"), "--out", str(tmp_path / "run")])
    assert_one_line_error(result, "could not determine a constructor", "python/object/apply:os.system")
    assert not marker.exists() and not (tmp_path / "run").exists()


# -- JSON sidecars ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "content, problem",
    [
        (b" " * (16 * 2**20 + 1), "larger than 16,777,216 bytes"),
        (b"[" * 200_000, "nested too deeply"),
        (b'{"normalization": ', "not valid JSON"),
    ],
    ids=["too_large", "too_deep", "truncated"],
)
def test_a_bad_statistics_file_is_one_line(tmp_path, synthetic_dataset, content, problem):
    stats = tmp_path / "stats.json"
    stats.write_bytes(content)
    config = experiment(synthetic_dataset, data={"normalization": {"stats_file": str(stats)}})
    result = runner.invoke(
        app, ["train", str(write_yaml(tmp_path / "config.yaml", config)), "--out", str(tmp_path / "run")]
    )
    assert_one_line_error(result, "stats.json", problem)
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_json_size_is_measured_by_reading_not_by_stat():
    """``/dev/zero`` says it holds 0 bytes and never ends: the read stops at the limit."""
    with pytest.raises(DataError, match="larger than 1,024 bytes"):
        read_json_limited("/dev/zero", max_bytes=1024)


# -- ONNX models ------------------------------------------------------------------------------------
def onnx_model_with_external_data(path: Path, location: str) -> Path:
    """An ``Add`` of an input and a 4-float initializer whose data lives at ``location``."""
    from onnx import TensorProto, helper, save

    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1, 4], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", location), ("offset", "0"), ("length", "16")):
        weight.external_data.add(key=key, value=value)
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [weight],
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    return path


@pytest.mark.parametrize(
    "location, problem",
    [
        ("../secret.bin", "climbs out of its folder"),
        ("/etc/hostname", "absolute path"),
        ("link.bin", "through a link"),
    ],
    ids=["dotdot", "absolute", "symlink"],
)
def test_onnx_external_data_outside_the_models_folder_is_refused(tmp_path, synthetic_scene, location, problem):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(4, dtype=np.float32).tobytes())
    model = onnx_model_with_external_data(tmp_path / "models" / "model.onnx", location)
    (tmp_path / "models" / "link.bin").symlink_to(secret)
    with pytest.raises(CheckpointError, match=problem):
        load_onnx_member(model)
    image = write_geotiff(tmp_path / "scene.tif", synthetic_scene.image)
    result = runner.invoke(
        app, ["predict", "--engine", "onnxruntime", "-c", str(model), str(image), "--out", str(tmp_path / "out")]
    )
    assert_one_line_error(result, "model.onnx", "tensor 'w' keeps its data outside the model's folder", problem)
    assert not (tmp_path / "out").exists()


def test_onnx_external_data_next_to_the_model_passes_the_check(tmp_path):
    (tmp_path / "weights.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    model = onnx_model_with_external_data(tmp_path / "model.onnx", "weights.bin")
    with pytest.raises(CheckpointError, match="carries no landseg model card"):
        load_onnx_member(model)


# -- archives ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, problem",
    [
        ("../evil.txt", "climbs out"),
        ("maps/../../evil.txt", "climbs out"),
        ("/tmp/evil.txt", "absolute path"),
        ("C:/evil.txt", "absolute path"),
        ("..\\evil.txt", "climbs out"),
    ],
)
def test_archive_members_outside_the_destination_are_refused(tmp_path, name, problem):
    with pytest.raises(DataError, match=problem):
        check_member_paths(["maps/ok.tif", name], tmp_path / "dest", "upload.zip")
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("maps/ok.tif", b"fine")
        bundle.writestr(name, b"evil")
    with pytest.raises(DataError, match=problem):
        safe_extract(archive, tmp_path / "dest")
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "dest" / "maps").exists()


def test_tar_links_are_refused_before_anything_is_written(tmp_path):
    archive = tmp_path / "upload.tar"
    with tarfile.open(archive, "w") as bundle:
        data = tarfile.TarInfo("maps/ok.tif")
        data.size = 4
        bundle.addfile(data, io.BytesIO(b"fine"))
        link = tarfile.TarInfo("maps/passwd")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        bundle.addfile(link)
    with pytest.raises(DataError, match="link or special file"):
        safe_extract(archive, tmp_path / "dest")
    assert not (tmp_path / "dest" / "maps").exists()


def test_a_clean_archive_is_extracted_within_its_size_limit(tmp_path):
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("maps/a.tif", b"a" * 1000)
        bundle.writestr("b.json", b"{}")
    assert (safe_extract(archive, tmp_path / "dest") / "maps" / "a.tif").read_bytes() == b"a" * 1000
    with pytest.raises(DataError, match="unpacks to 1,002 bytes"):
        safe_extract(archive, tmp_path / "small", max_bytes=1001)


def test_a_clean_tar_archive_is_extracted_with_its_folders(tmp_path):
    archive = tmp_path / "bundle.tar"
    with tarfile.open(archive, "w") as bundle:
        folder = tarfile.TarInfo("maps")
        folder.type = tarfile.DIRTYPE
        bundle.addfile(folder)
        data = tarfile.TarInfo("maps/a.tif")
        data.size = 5
        bundle.addfile(data, io.BytesIO(b"abcde"))
    extracted = safe_extract(archive, tmp_path / "dest")
    assert (extracted / "maps").is_dir() and (extracted / "maps" / "a.tif").read_bytes() == b"abcde"
