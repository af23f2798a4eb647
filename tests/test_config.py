import pytest

from landseg.config import load_config, parse_assignment, parse_config, set_dotted
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


def test_the_new_region_recipe_is_the_one_measured():
    """configs/dubai_new_region.yaml trains what benchmark 1 scored as the sweep's winner: the config its
    result records, but for the budget, the images adapted to and the names."""
    import json
    from pathlib import Path

    repo = Path(__file__).parents[1]
    users = load_config(repo / "configs" / "dubai_new_region.yaml").to_yaml_dict()
    result = json.loads((repo / "benchmarks" / "results" / "dubai_adapt_sweep_best_seed0.json").read_text())
    measured = result["ablation"]["variants"]["defaults_focal_equibatch"]["config"]
    for config in (users, measured):
        for section, key in [(None, "name"), (None, "description"), ("data", "root"), ("data", "unlabeled")]:
            (config[section] if section else config).pop(key)
        for key in ("epochs", "max_minutes", "onnx_export"):
            config["train"].pop(key)
    assert users == measured
    assert users["train"]["adapt"]["weight"] == 1.0 and users["data"]["input_scale"] == 0.75


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


@pytest.mark.parametrize(
    "model, expected",
    [
        ({"arch": "unte"}, "model: unknown architecture 'unte' (did you mean 'unet'?)"),
        ({"arch": "fpn", "encoder": "resnet-18"}, "model: unknown encoder 'resnet-18' (did you mean 'resnet18'"),
        ({"arch": "unet", "encoder": "resnet18", "encoder_weights": "offline"}, "model: encoder 'resnet18' has no"),
        ({"arch": "classic_unet", "dropout": 1.5}, "model.dropout: must be in [0, 1), got 1.5"),
        ({"num_classes": 4}, "model.num_classes is set from data.schema: remove it"),
        ({"encoders": "resnet18"}, "model: unknown key 'encoders'; did you mean 'encoder'?"),
    ],
)
def test_model_mistakes_fail_when_the_config_is_read(model, expected):
    with pytest.raises(ConfigError) as info:
        parse_config(minimal(model=model), source="exp.yaml")
    assert str(info.value).startswith(f"exp.yaml: {expected}")


def test_a_misspelled_architecture_fails_before_any_image_is_read(tmp_path):
    # The data folder does not even exist: the model section alone stops the run.
    path = tmp_path / "exp.yaml"
    path.write_text("data: {root: nowhere}\nmodel: {arch: deeplabv3pluss}\n")
    with pytest.raises(ConfigError, match="did you mean 'deeplabv3plus'"):
        load_config(path)


def test_the_default_model_is_the_documented_one():
    config = parse_config(minimal())
    assert (config.model.arch, config.model.encoder, config.model.encoder_weights) == (
        "unet",
        "tu-tf_efficientnet_lite0",
        "offline",
    )
    assert "num_classes" not in config.to_yaml_dict()["model"]  # the data's, filled in by training
    assert parse_config(config.to_yaml_dict()) == config  # a run's config.yaml reads back as it was


def test_a_named_encoder_without_offline_weights_starts_from_random_weights():
    config = parse_config(minimal(model={"arch": "unet", "encoder": "resnet18"}))
    assert (config.model.encoder, config.model.encoder_weights) == ("resnet18", None)
    assert parse_config(config.to_yaml_dict()) == config


def test_dotted_overrides_make_sections_and_refuse_values_where_sections_go(tmp_path):
    data = {"train": {"swa": None, "batch_size": 4}}
    set_dotted(data, "train.swa.start_epoch", 3)
    set_dotted(data, "model.extra.decoder_channels", [8, 8])
    assert data == {
        "train": {"swa": {"start_epoch": 3}, "batch_size": 4},
        "model": {"extra": {"decoder_channels": [8, 8]}},
    }
    with pytest.raises(ConfigError, match=r"train\.batch_size is a value, not a section"):
        set_dotted(data, "train.batch_size.x", 1)
    assert parse_assignment("train.loss={name: ce, label_smoothing: 0.1}") == (
        "train.loss",
        {"name": "ce", "label_smoothing": 0.1},
    )
    path = tmp_path / "exp.yaml"
    path.write_text("data: {root: d}\ntrain: {loss: {name: focal, gamma: 3}}\n")
    config = load_config(path, ["train.loss.gamma=1.5"], updates={"train.loss": {"name": "focal", "gamma": 1}})
    assert config.train.loss.gamma == 1.5  # updates first, then --set


def write_base(folder):
    (folder / "base").mkdir()
    base = folder / "base" / "exp.yaml"
    base.write_text(
        "name: base\ndata:\n  root: images\n  schema: dubai\n"
        "train:\n  batch_size: 4\n  loss: {name: focal, gamma: 2.0}\n  optimizer: {lr: 0.001}\n"
    )
    return base


def test_a_recipe_merges_its_keys_over_its_base(tmp_path):
    write_base(tmp_path)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "base: base/exp.yaml\nname: recipe\ntrain:\n  optimizer: {lr: 0.0005}\n"
        "train.loss: {name: ce}\ndata.input_scale: 0.75\n"
    )
    config = load_config(recipe, ["train.batch_size=2"])
    assert (config.name, config.data.input_scale, config.train.batch_size) == ("recipe", 0.75, 2)
    assert config.train.optimizer.lr == 0.0005  # a nested key merges into its section
    assert config.train.loss.name == "ce"  # a dotted section replaces it whole
    assert not hasattr(config.train.loss, "gamma")
    assert config.data.root == (tmp_path / "base" / "images").resolve()  # paths: relative to the base


@pytest.mark.parametrize(
    "recipe, expected",
    [
        ("base: missing.yaml\n", "cannot read config"),
        ("base: base/exp.yaml\ntrain:\n  batch_sise: 3\n", "did you mean 'batch_size'? (recipe merged over"),
        ("base: base/exp.yaml\ntrain:\n  optimizer.lr: 0.1\n", "dotted keys go at the top level"),
        ("base: [a, b]\n", "base must name a config file"),
        ("base: other.yaml\n", "a recipe's base must be a whole config"),
    ],
)
def test_recipe_mistakes_name_the_recipe(tmp_path, recipe, expected):
    write_base(tmp_path)
    (tmp_path / "other.yaml").write_text("base: base/exp.yaml\n")
    path = tmp_path / "recipe.yaml"
    path.write_text(recipe)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(str(path))
    assert expected in str(info.value)


def test_updates_given_to_a_recipe_come_after_its_keys(tmp_path):
    write_base(tmp_path)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("base: base/exp.yaml\ntrain.loss: {name: focal}\ntrain.loss.gamma: 3.0\n")
    assert load_config(recipe).train.loss.gamma == 3.0
    replaced = load_config(recipe, updates={"train.loss": {"name": "ce"}}).train.loss
    assert replaced.name == "ce" and not hasattr(replaced, "gamma")
