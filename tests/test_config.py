import pytest

from landseg.config import load_config, parse_config
from landseg.errors import ConfigError


def minimal(**extra):
    return {"data": {"root": "data"}, **extra}


def test_defaults_and_overrides(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("name: x\ndata:\n  root: ../somewhere\n  schema: dubai\ntrain:\n  batch_size: 4\n")
    config = load_config(path, ["train.optimizer.lr=0.01", "model.arch=fpn", "train.augment.flips=false"])
    assert config.train.batch_size == 4
    assert config.train.optimizer.lr == 0.01
    assert config.model.arch == "fpn"
    assert config.train.augment.flips is False
    assert config.data.schema_ == "dubai"
    # relative roots are resolved against the config file's folder, not the working directory
    assert config.data.root == (tmp_path / ".." / "somewhere").resolve()


@pytest.mark.parametrize(
    "data, expected",
    [
        (minimal(train={"batch_sise": 4}), "train: Value error, unknown key 'batch_sise'; did you mean 'batch_size'?"),
        (minimal(modle={}), "did you mean 'model'?"),
        (minimal(train={"optimizer": {"name": "rmsprop"}}), "train.optimizer.name"),
        ({"data": {"root": "d", "split": {"ratios": {"train": 0.5, "val": 0.2}}}}, "must sum to 1"),
        ({"data": {"root": "d", "split": {"ratios": {"train": 1.0}, "field": "x"}}}, "only one of"),
    ],
)
def test_mistakes_are_named(data, expected):
    with pytest.raises(ConfigError) as info:
        parse_config(data, source="exp.yaml")
    message = str(info.value)
    assert message.startswith("exp.yaml:")
    assert expected.split("Value error, ")[-1] in message


def test_unreadable_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    good = tmp_path / "good.yaml"
    good.write_text("data: {root: x}\n")
    with pytest.raises(ConfigError, match="key=value"):
        load_config(good, ["novalue"])


def test_dubai_config_parses():
    from pathlib import Path

    config = load_config(Path(__file__).parents[1] / "configs" / "dubai.yaml")
    assert config.data.split.val == ["tile_4"]
    assert config.data.root.name == "dubai"


def test_schema_and_stats_files_are_relative_to_the_config(tmp_path):
    folder = tmp_path / "configs"
    folder.mkdir()
    path = folder / "exp.yaml"
    path.write_text(
        "data:\n  root: ../data\n  schema: ../prepared/schema.yaml\n"
        "  normalization: {stats_file: ../prepared/stats.json}\n"
    )
    config = load_config(path)
    assert config.data.schema_ == str(tmp_path / "prepared" / "schema.yaml")
    assert config.data.normalization.stats_file == tmp_path / "prepared" / "stats.json"
    assert load_config(path, ["data.schema=dubai"]).data.schema_ == "dubai"
