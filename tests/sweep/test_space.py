"""The search space file: parsed, and checked against the config schema before any trial runs."""

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from landseg.cli import app
from landseg.config import load_config
from landseg.errors import ConfigError
from landseg.sweep.space import SearchSpace, load_space


@pytest.fixture(scope="module")
def base(tiny_config):
    return load_config(tiny_config).to_yaml_dict()


def space_file(tmp_path, text: str):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def test_every_kind_parses(tmp_path, base):
    space = load_space(
        space_file(
            tmp_path,
            """
train.optimizer.lr: {log_uniform: [1e-4, 3e-3]}
train.loss.name: {choice: [ce, focal]}
data.input_scale: {choice: [0.5, 1.0]}
train.augment.brightness: {uniform: [0.0, 0.3]}
train.batch_size: {int: [2, 8], step: 2}
train.loss: {choice: {ce: {name: ce}, focal: {name: focal, gamma: 2.0}}}
model.widths: {choice: [[4, 8], [8, 16]]}
""",
        ),
        base,
    )
    kinds = {p.key: p.kind for p in space.parameters}
    assert kinds["train.optimizer.lr"] == "log_uniform" and kinds["train.batch_size"] == "int"
    lr = space.parameters[0]
    assert (lr.low, lr.high) == (1e-4, 3e-3)  # YAML 1.1 reads 1e-4 as a string: taken as the number
    assert space.values_of({"train.loss": "focal"}) == {"train.loss": {"name": "focal", "gamma": 2.0}}
    assert space.values_of({"model.widths": "[8,16]"}) == {"model.widths": [8, 16]}
    assert not space.is_grid
    assert SearchSpace(space.parameters[1:3]).grid() == {
        "train.loss.name": ["ce", "focal"],
        "data.input_scale": [0.5, 1.0],
    }


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "train.optimzer.lr: {uniform: [0.1, 0.2]}",
            "train.optimzer.lr: 'optimzer' is not a key of train; did you mean 'optimizer'?",
        ),
        ("train.optimizer.lr: {log_uniform: [0.0, 1.0]}", "train.optimizer.lr: log_uniform needs a low end above 0"),
        (
            "train.optimizer.lr: {uniform: [0.3, 0.1]}",
            "train.optimizer.lr: uniform range [0.3, 0.1] needs low below high",
        ),
        ("train.batch_size: {int: [2.5, 8]}", "train.batch_size: int takes whole numbers"),
        ("train.loss.name: {choice: [ce, focall]}", "train.loss.name: choice 'focall' does not make a valid config"),
        (
            "data.input_scale: {choice: [0.5, 8.0]}",
            "data.input_scale: choice 8.0 does not make a valid config (data.input_scale: Input should be less than or equal to 4)",
        ),
        (
            "train.optimizer.lr: {normal: [0.1, 0.2]}",
            "train.optimizer.lr: unknown entry 'normal'; give one of uniform, log_uniform, int, choice",
        ),
        ("train.optimizer.lr: 0.1", "train.optimizer.lr: give a range or choices"),
        ("train.optimizer.lr: {uniform: [0.1, 0.2], choice: [0.1]}", "give exactly one of"),
        ("train.optimizer.lr: {uniform: [a, 0.2]}", "range endpoints must be finite numbers"),
        ("train.crop_size.x: {choice: [1]}", "train.crop_size.x: train.crop_size is a value, not a section"),
        ("train.loss.name: {choice: []}", "choice needs at least one value"),
        ("trian.epochs: {int: [1, 2]}", "trian.epochs: 'trian' is not a key of the config; did you mean 'train'?"),
        ("[1, 2]", "search space must be a YAML mapping"),
        (
            "train.loss.gama: {uniform: [0.5, 3.0]}",
            "train.loss.gama: 'gama' is not a key of train.loss; did you mean 'gamma'?",
        ),
        (
            "model.arch: {choice: [classic_unet, classic_unte]}",
            "model.arch: choice 'classic_unte' does not make a valid config (model: unknown architecture 'classic_unte'",
        ),
    ],
)
def test_bad_spaces_are_one_line_errors_naming_the_file(tmp_path, base, text, message):
    path = space_file(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_space(path, base)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_the_command_refuses_a_bad_space_before_any_trial(tmp_path, tiny_config):
    space = space_file(tmp_path, "train.optimizer.lr: {log_uniform: [3e-3, 1e-4]}")
    out = tmp_path / "sweep"
    result = CliRunner().invoke(
        app, ["sweep", str(tiny_config), "--space", str(space), "--trials", "2", "--out", str(out)]
    )
    assert result.exit_code == 1
    assert "space.yaml: train.optimizer.lr: log_uniform range [0.003, 0.0001] needs low below high" in result.output
    assert "Traceback" not in result.output and not (out / "trials").exists()

    space.write_text(yaml.safe_dump({"train.optimizer.lr": {"choice": [0.01]}}))
    result = CliRunner().invoke(
        app, ["sweep", str(tiny_config), "--space", str(space), "--trials", "1", "--out", str(out), "--resume"]
    )
    assert result.exit_code == 1 and "--resume: no study" in result.output


def test_the_dubai_space_fits_the_dubai_config():
    configs = Path(__file__).parents[2] / "configs"
    space = load_space(
        configs / "benchmark" / "dubai_sweep_space.yaml", load_config(configs / "dubai.yaml").to_yaml_dict()
    )
    assert [p.key for p in space.parameters] == [
        "train.optimizer.lr",
        "train.loss",
        "train.sampling",
        "model.encoder_weights",
        "data.input_scale",
    ]
    assert space.values_of({"model.encoder_weights": None}) == {"model.encoder_weights": None}


def test_the_dubai_recipe_space_fits_the_dubai_config():
    configs = Path(__file__).parents[2] / "configs"
    space = load_space(
        configs / "benchmark" / "dubai_recipe_space.yaml", load_config(configs / "dubai.yaml").to_yaml_dict()
    )
    assert [p.key for p in space.parameters] == [
        "train.optimizer.lr",
        "data.input_scale",
        "train.crop_size",
        "train.batch_size",
        "model.encoder",
        "train.augment.scale",
    ]
    assert space.values_of({"train.augment.scale": "[0.7,1.4]", "model.encoder": "tu-tf_efficientnet_lite2"}) == {
        "train.augment.scale": [0.7, 1.4],
        "model.encoder": "tu-tf_efficientnet_lite2",
    }


@pytest.mark.parametrize(
    "options, message",
    [
        (["--trials", "0"], "--trials must be at least 1"),
        (["--trials", "1", "--workers", "2", "--dask", "tcp://127.0.0.1:1"], "--dask and --workers exclude each other"),
        (["--trials", "1", "--storage", "nonsense"], "--storage 'nonsense': give an Optuna storage URL"),
        (["--trials", "1", "--sampler", "grid"], "train.optimizer.lr: the grid sampler needs choices or int ranges"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path, tiny_config, options, message):
    space = space_file(tmp_path, "train.optimizer.lr: {log_uniform: [1e-4, 1e-2]}")
    result = CliRunner().invoke(
        app, ["sweep", str(tiny_config), "--space", str(space), "--out", str(tmp_path / "s"), *options]
    )
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


def test_a_study_refuses_another_space(tmp_path, tiny_config):
    from landseg.sweep.objective import SweepPlan
    from landseg.sweep.study import open_study

    space = space_file(tmp_path, "train.optimizer.lr: {choice: [0.01, 0.02]}")
    plan = SweepPlan(config=str(tiny_config), space=str(space), out=str(tmp_path / "s"), trials=1, study_name="s")
    _, base, parsed = plan.load()
    open_study(plan, base, parsed)
    space.write_text("train.optimizer.lr: {choice: [0.01, 0.03]}")
    result = CliRunner().invoke(
        app,
        ["sweep", str(tiny_config), "--space", str(space), "--trials", "1", "--out", str(tmp_path / "s"), "--resume"],
    )
    assert result.exit_code == 1 and "was started with another config, search space" in result.output


def test_any_loss_option_is_a_key_and_the_values_say_which_loss_takes_it(tmp_path, base):
    # train.loss is a union of loss configs: gamma is focal's, label_smoothing cross-entropy's.
    space = load_space(space_file(tmp_path, "train.loss.gamma: {uniform: [0.5, 3.0]}\n"), base)
    assert [p.key for p in space.parameters] == ["train.loss.gamma"]
    ce_only = "train.loss.label_smoothing: {uniform: [0.0, 0.2]}\n"
    if base["train"]["loss"]["name"] != "ce":
        with pytest.raises(ConfigError, match="does not take 'label_smoothing'"):
            load_space(space_file(tmp_path, ce_only), base)


def test_the_configs_own_values_are_found_among_the_choices_and_ranges():
    configs = Path(__file__).parents[2] / "configs"
    base = load_config(configs / "dubai.yaml", ["data.input_scale=0.5"]).to_yaml_dict()
    space = load_space(configs / "benchmark" / "dubai_recipe_space.yaml", base)
    assert space.params_of_config(base) == {
        "train.optimizer.lr": 0.001,
        "data.input_scale": 0.5,
        "train.crop_size": 256,
        "train.batch_size": 8,
        "model.encoder": "tu-tf_efficientnet_lite0",
        "train.augment.scale": None,
    }


@pytest.mark.parametrize(
    "text, message",
    [
        ("train.optimizer.lr: {choice: [0.01, 0.02]}", "train.optimizer.lr: the config's own value is none of"),
        (
            "train.optimizer.lr: {log_uniform: [0.01, 0.1]}",
            "train.optimizer.lr: the config's own value 0.001 is outside",
        ),
    ],
)
def test_a_config_outside_its_space_cannot_go_first(tmp_path, base, text, message):
    space = load_space(space_file(tmp_path, text), base)
    with pytest.raises(ConfigError, match=message):
        space.params_of_config(base)


def test_named_section_choices_match_the_config_they_leave_unchanged(tmp_path, base):
    space = load_space(
        space_file(tmp_path, "train.loss: {choice: {focal: {name: focal, gamma: 2.0}, ce: {name: ce}}}"), base
    )
    assert space.params_of_config(base) == {"train.loss": "focal"}  # the default loss, focal with gamma 2
