"""Benchmark scripts 1, 2, 3, 4 and 9: recipe merging, the chip-index split, and each script's ``--smoke`` mode
on the real data (skipped where ../shared/datasets is absent). Smoke runs measure nothing; they check
that every run trains, is scored and lands in the JSON with the keys BENCHMARKS.md relies on."""

import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import common  # noqa: E402
import dubai_quality  # noqa: E402
import predict_precision  # noqa: E402
import predict_speed  # noqa: E402
import s2_korea_quality  # noqa: E402
import train_throughput  # noqa: E402
import zoo_throughput  # noqa: E402

DUBAI_CLASSES = ["Building", "Land", "Road", "Vegetation", "Water"]
S2_CLASSES = ["Building", "Road", "Field", "Forest", "Background"]


# -- recipes ------------------------------------------------------------------------------------------------
def test_assignments_merge_nested_keys_and_replace_dotted_sections():
    recipe = {
        "name": "x",
        "model": {"encoder": None, "widths": [16, 32]},
        "train": {"optimizer": {"lr": 0.01}},
        "train.loss": {"name": "focal", "gamma": 1.5},
        "extra": {},
    }
    assert common.assignments(recipe) == [
        'name="x"',
        "model.encoder=null",
        "model.widths=[16, 32]",
        "train.optimizer.lr=0.01",
        'train.loss={"name": "focal", "gamma": 1.5}',
        "extra={}",
    ]
    with pytest.raises(ValueError, match="top level"):
        common.assignments({"train": {"loss.name": "ce"}})


def test_recipe_merges_over_its_base_and_a_dotted_key_replaces_the_section(tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "base.yaml").write_text(
        "data: {root: data, schema: synthetic}\n"
        "model: {arch: unet, encoder: resnet18, encoder_weights: null}\n"
        "train: {batch_size: 4, optimizer: {name: sgd, lr: 0.1, momentum: 0.5},"
        " loss: {name: ce, class_weights: median_frequency}}\n"
    )
    recipe = tmp_path / "configs" / "bench" / "r.yaml"
    recipe.parent.mkdir()
    recipe.write_text("base: ../base.yaml\nname: r\ntrain:\n  optimizer: {lr: 0.001}\ntrain.loss: {name: focal}\n")
    config = common.load_recipe(recipe, ["train.batch_size=2"])
    assert config.name == "r"
    assert config.data.root == (tmp_path / "configs" / "data").resolve()  # relative to the base file
    assert config.model.encoder == "resnet18"
    assert config.train.optimizer.model_dump() == {"name": "sgd", "lr": 0.001, "weight_decay": 0.0001, "momentum": 0.5}
    # merged key by key, focal would have inherited class_weights, which it does not take
    assert config.train.loss.model_dump() == {"name": "focal", "weight": 1.0, "gamma": 2.0, "alpha": None}
    assert config.train.batch_size == 2


def test_benchmark_recipes_parse_and_differ_as_the_protocol_says():
    best = common.load_recipe(common.recipe_path("dubai_best"))
    seed004 = common.load_recipe(common.recipe_path("seed004_unet"))
    default = common.load_recipe(common.recipe_path("resnet18_default"))
    assert (best.model.encoder, best.model.encoder_weights, best.train.optimizer.name) == (
        "tu-tf_efficientnet_lite0",
        "offline",
        "adamw",
    )
    assert (seed004.model.arch, seed004.model.widths, seed004.train.optimizer.name) == (
        "classic_unet",
        [16, 32, 64, 128, 256],
        "adam",
    )
    assert seed004.model.dropout > 0 and seed004.train.loss.name == "ce"
    assert (default.model.encoder, default.model.encoder_weights, default.train.augment.rotate90) == (
        "resnet18",
        None,
        False,
    )
    for config in (best, seed004, default):
        assert config.data.split.train == ["tile_1", "tile_2", "tile_3", "tile_5", "tile_6", "tile_7"]
        assert config.data.split.val == ["tile_4"]
        assert common.without_validation(config).data.split.val == []
        assert config.data.split.val == ["tile_4"]  # the copy, not the config, lost its validation images


def test_swa_cycles_fill_the_last_fraction_of_the_epochs():
    (assignment,) = dubai_quality.swa_assignments({"cycles": 3, "last_fraction": 0.3, "max_lr": 3e-4}, epochs=20)
    assert json.loads(assignment.split("=", 1)[1]) == {"start_epoch": 14, "cycle_epochs": 2, "max_lr": 3e-4}
    (assignment,) = dubai_quality.swa_assignments({"cycles": 3, "last_fraction": 0.3}, epochs=1)
    assert json.loads(assignment.split("=", 1)[1]) == {"start_epoch": 0, "cycle_epochs": 1}


# -- the real data -------------------------------------------------------------------------------------------
def test_s2_korea_chip_index_split_follows_the_rule_and_measures_its_leak(shared_datasets):
    config = common.load_recipe(common.recipe_path("s2_korea_chips"))
    lists = s2_korea_quality.split_lists(config)
    train, val = lists["train.txt"].split(), lists["val.txt"].split()
    assert len(train) == 30 and len(val) == 10 and not set(train) & set(val)
    assert train[:2] == ["images/202309_patchN_0.tif", "images/202309_patchN_1.tif"]
    assert train[19:21] == ["images/202309_patchN_19.tif", "images/202412_patchN_0.tif"]
    assert val == [f"images/202412_patchN_{i}.tif" for i in range(10, 20)]
    s2_korea_quality.check_split(s2_korea_quality.SPLIT_FOLDER, lists)  # the committed files follow the rule
    leak = s2_korea_quality.split_leak(config, s2_korea_quality.SPLIT_FOLDER)
    assert set(leak["per_val_chip"]) == {Path(v).stem for v in val}
    assert 0.0 < leak["val_pixels_inside_training_chips"] < 1.0


def test_s2_korea_blocked_only_names_the_missing_prepared_data(shared_datasets, tmp_path, capsys):
    recipe = (common.REPO / "configs" / "s2_korea.yaml").read_text()
    unprepared = tmp_path / "configs" / "s2_korea.yaml"
    unprepared.parent.mkdir()
    unprepared.write_text(recipe)  # its data root, ../runs/prepared/s2_korea, does not exist under tmp_path
    with pytest.raises(SystemExit) as stopped:
        s2_korea_quality.main(["--blocked", "only", "--blocked-recipe", str(unprepared), "--out", str(tmp_path)])
    assert stopped.value.code == 2
    message = capsys.readouterr().err
    assert str(tmp_path / "runs" / "prepared" / "s2_korea") in message and "landseg prepare all" in message
    assert not (tmp_path / "chip_split").exists()


def check_run(run: dict, classes: list[str]) -> None:
    assert 0.0 <= run["miou"] <= 1.0
    assert list(run["per_class_iou"]) == classes
    assert run["steps"] == 2
    assert run["train_wall_s"] > 0 and run["eval_wall_s"] > 0
    assert sum(map(sum, run["metrics"]["confusion_matrix"])) > 0
    assert run["config"]["train"]["max_minutes"] is None


def test_smoke_modes_write_their_json(tmp_path, shared_datasets, capsys):
    dubai_out, s2_out, throughput_out = tmp_path / "dubai", tmp_path / "s2", tmp_path / "throughput"
    assert (
        dubai_quality.main(
            ["--smoke", "--out", str(dubai_out), "--baselines", "seed004_unet", "--ablation", "--variants", "swa_on"]
        )
        == 0
    )
    dubai = json.loads((dubai_out / "dubai.json").read_text())
    assert dubai["complete"] and dubai["smoke"]
    assert dubai["best"]["name"] == "dubai_best"
    check_run(dubai["best"], DUBAI_CLASSES)
    check_run(dubai["baselines"]["seed004_unet"], DUBAI_CLASSES)
    assert dubai["baselines"]["seed004_unet"]["config"]["model"]["arch"] == "classic_unet"
    assert dubai["best_beats_baselines"] == (dubai["best"]["miou"] > dubai["baselines"]["seed004_unet"]["miou"])
    swa = dubai["ablation"]["variants"]["swa_on"]
    check_run(swa, DUBAI_CLASSES)
    assert swa["config"]["train"]["swa"]["start_epoch"] == 0
    assert swa["config"]["model"] == dubai["best"]["config"]["model"]
    assert dubai["environment"]["git_commit"] and dubai["environment"]["cpu"] and dubai["environment"]["torch"]

    # --best-from: the ablation alone, from the stored best, which is not trained again.
    again = tmp_path / "dubai_again"
    assert (
        dubai_quality.main(
            [
                "--smoke",
                "--out",
                str(again),
                "--best-from",
                str(dubai_out / "dubai.json"),
                "--ablation",
                "--variants",
                "loss_focal",
                "--set",
                "train.augment.rotate90=false",
            ]
        )
        == 0
    )
    reused = json.loads((again / "dubai.json").read_text())
    assert reused["best"]["miou"] == dubai["best"]["miou"] and reused["best"]["from_results"]
    assert not (again / "dubai_best").exists() and list(reused["ablation"]["variants"]) == ["loss_focal"]
    assert reused["ablation"]["variants"]["loss_focal"]["config"]["train"]["loss"]["name"] == "focal"
    assert reused["settings"] == ["train.augment.rotate90=false"]
    assert reused["ablation"]["variants"]["loss_focal"]["config"]["train"]["augment"]["rotate90"] is False

    assert s2_korea_quality.main(["--smoke", "--out", str(s2_out), "--variants", "ce,focal", "--blocked", "none"]) == 0
    s2 = json.loads((s2_out / "s2_korea.json").read_text())
    assert list(s2["variants"]) == ["ce", "focal"]
    for run in s2["variants"].values():
        check_run(run, S2_CLASSES)
    assert s2["variants"]["focal"]["config"]["train"]["loss"]["name"] == "focal"
    assert len(s2["chip_split"]["train"]) == 2 and len(s2["chip_split"]["val"]) == 2

    assert train_throughput.main(["--smoke", "--out", str(throughput_out)]) == 0
    throughput = json.loads((throughput_out / "train_throughput.json").read_text())
    assert throughput["fixed_step_s"] > 0 and throughput["loop_step_s"] > 0
    assert throughput["efficiency"] == pytest.approx(throughput["fixed_step_s"] / throughput["loop_step_s"], rel=1e-3)
    assert len(throughput["rounds"][0]["loop"]["step_times_s"]) == 2  # warm-up left out
    assert throughput["config"]["train"]["batch_size"] == 2

    printed = capsys.readouterr().out  # the Dubai tables of both runs, then the Sentinel-2 one
    assert printed.count("| run |") == 3 and "efficiency a/b" in printed


def test_zoo_throughput_smoke_times_both_engines(tmp_path, capsys):
    results = tmp_path / "zoo.json"
    assert zoo_throughput.main(["--smoke", "--results", str(results), "--threads", "1"]) == 0
    payload = json.loads(results.read_text())
    assert [row["engine"] for row in payload["network"]] == ["torch", "onnxruntime"]
    for row in payload["network"]:
        assert row["wall_s"] > 0 and row["mpx_per_s"] > 0 and row["km2_per_core_hour"] > 0
    assert payload["end_to_end"] == [] and payload["environment"]["git_commit"]
    assert "network alone, 64² tile" in capsys.readouterr().out


def test_predict_speed_smoke_reports_the_targets_and_profiles_the_pipeline(tmp_path):
    results = tmp_path / "predict_speed.json"
    assert (
        predict_speed.main(
            [
                "--small",
                "--sizes",
                "256,384",
                "--raw-tiles",
                "4",
                "--naive-tiles",
                "2",
                "--work",
                str(tmp_path / "work"),
                "--results",
                str(results),
            ]
        )
        == 0
    )
    data = json.loads(results.read_text())
    scenes = data["scenes"]
    assert data["complete"] and [(s["size"], s["precision"]) for s in scenes] == [
        (size, precision) for size in (256, 384) for precision in ("fp32", "int8")
    ]
    # int8 is the benchmark model's own, guarded; the default engine is what --precision auto picks.
    int8 = data["int8_model"]
    assert 0 <= int8["agreement"] <= 1 and int8["miou_change"] is None
    assert data["default_precision"] == ("int8" if int8["auto_runs_it"] else "fp32")
    # The headline figures are the default engine's, the worst over the scene sizes, as the targets are judged.
    default = [scene for scene in scenes if scene["precision"] == data["default_precision"]]
    assert data["efficiency"] == min(scene["efficiency"] for scene in default)
    assert data["peak_rss_mb"] == max(scene["peak_rss_mb"] for scene in default)
    assert data["speedup_vs_naive"] == round(data["naive"]["wall_s"] / default[0]["predict_s"], 2)
    assert set(data["by_precision"]) == {"fp32", "int8"}
    profile = data["profile"]
    assert profile["size"] == 256 and profile["tiles_in_grid"] == scenes[0]["tiles_in_grid"]
    assert profile["precision"] == data["default_precision"] and profile["pipeline_over_forward"] > 0
    assert profile["wall_s"] > 0 and set(profile["stages_s"]) == set(scenes[0]["stages_s"])
    own_times = [entry["tottime_s"] for entry in profile["main_thread_top_tottime"]]
    assert len(own_times) == 15 and own_times == sorted(own_times, reverse=True)


def test_predict_precision_keeps_each_architecture_beside_the_others(shared_datasets, tmp_path):
    import rasterio
    from rasterio.windows import Window

    # A corner of a real Sentinel-2 L1C chip, the zoo model's own kind of image.
    with rasterio.open(shared_datasets / "samples" / "sen1floods11" / "Spain_7370579_S2Hand.tif") as src:
        profile = {**src.profile, "width": 96, "height": 80}
        pixels = src.read(window=Window(0, 0, 96, 80))
    image = tmp_path / "s2_corner.tif"
    with rasterio.open(
        image, "w", **{k: v for k, v in profile.items() if k not in ("blockxsize", "blockysize", "tiled")}
    ) as dst:
        dst.write(pixels)
    results = tmp_path / "precision.json"
    for label in ("first", "second"):
        assert (
            predict_precision.main(
                [
                    "--checkpoint",
                    "zoo:dynamic-world",
                    "--images",
                    str(image),
                    "--label",
                    label,
                    "--results",
                    str(results),
                ]
            )
            == 0
        )
    measured = json.loads(results.read_text())["architectures"]
    assert list(measured) == ["first", "second"]
    for run in measured.values():
        assert run["architecture"]["arch"] == "dynamic_world" and run["pixels"] == 96 * 80
        assert 0.9 < run["agreement"] <= 1.0 and run["bf16_default"] == (run["agreement"] >= run["threshold"])
