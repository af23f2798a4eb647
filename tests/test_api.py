"""The Python API: docs/API.md's examples run as written, and what they produce is checked."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

import landseg
from landseg.errors import ConfigError
from landseg.predict import PredictOptions

API_DOC = Path(__file__).resolve().parents[1] / "docs" / "API.md"


def doc_examples() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", API_DOC.read_text(encoding="utf-8"), flags=re.S | re.M)


@pytest.fixture(scope="module")
def ran_examples(tmp_path_factory) -> tuple[Path, dict]:
    """Every example of docs/API.md, in order, in one namespace, in an empty folder (as a reader runs them)."""
    folder = tmp_path_factory.mktemp("api_doc")
    namespace: dict = {"__name__": "api_doc"}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        for number, example in enumerate(doc_examples(), 1):
            exec(compile(example, f"{API_DOC.name} example {number}", "exec"), namespace)
    return folder, namespace


def test_the_examples_train_a_model_and_write_its_run(ran_examples):
    folder, names = ran_examples
    run = names["run"]
    assert run.epochs == 3
    assert (folder / run.best_checkpoint).is_file() and (folder / run.last_checkpoint).is_file()
    assert (folder / "run" / "training_curves.png").is_file()
    assert names["model"].classes == ["Field", "Forest", "Water", "Road", "Building"]
    assert len(names["model"].palette) == 5 and names["model"].bands == ["red", "green", "blue"]


def test_the_examples_map_an_array_and_a_file_alike(ran_examples):
    folder, names = ran_examples
    result, pixels = names["result"], names["pixels"]
    assert result.classes.shape == pixels.shape[1:] and result.classes.dtype == np.uint8
    assert result.probabilities.shape == (5, *pixels.shape[1:])
    np.testing.assert_allclose(result.probabilities.sum(axis=0), 1.0, rtol=1e-4)
    np.testing.assert_array_equal(result.classes, result.probabilities.argmax(axis=0))
    assert len(np.unique(result.classes)) >= 2  # a trained model, not one class everywhere
    files = {kind: folder / path for kind, path in names["files"].items()}  # relative to the examples' folder
    assert {"classes", "color", "areas", "polygons", "record"} <= set(files)
    assert all(path.is_file() and path.parent == folder / "maps" for path in files.values())
    with rasterio.open(files["classes"]) as written, rasterio.open(folder / names["scene"]) as source:
        assert written.crs == source.crs and written.transform == source.transform
        np.testing.assert_array_equal(written.read(1), result.classes)


def test_the_examples_evaluate_the_written_maps(ran_examples):
    folder, names = ran_examples
    evaluation = names["evaluation"]
    assert evaluation.confusion.matrix.sum() == 2 * 96 * 96  # the two validation scenes, every pixel labelled
    assert evaluation.metrics["miou"] == pytest.approx(evaluation.confusion.miou, nan_ok=True)
    assert sorted(p.name for p in (folder / "evaluation" / "maps").glob("*_classes.tif")) == [
        "scene_004_classes.tif",
        "scene_005_classes.tif",
    ]
    assert (folder / evaluation.report_path).is_file()
    assert evaluation.metrics["miou"] > 0.1  # seeded: about 0.4 after these 24 steps


def test_the_examples_sample_and_assess_the_written_map(ran_examples):
    folder, names = ran_examples
    drawn, assessment, references = names["drawn"], names["assessment"], names["references"]
    assert len(drawn.points) == 60 and (folder / "points.design.json").is_file()
    with rasterio.open(folder / names["files"]["classes"]) as written:
        mapped = written.read(1)[drawn.points.rows, drawn.points.cols]
    summary = assessment.summary
    assert summary["points_used"] == 60 and summary["area_unit"] == "ha"
    # Every stratum is a map class here, so the sample's own agreement weighted by stratum size is the
    # estimate (Olofsson's formula); the points' plain agreement can differ, but not by much on 60 points.
    assert abs(summary["overall_accuracy"]["estimate"] - (mapped == references).mean()) < 0.25
    total = sum(row["estimated_area_ha"]["estimate"] for row in summary["per_class"])
    assert total == pytest.approx(sum(row["mapped_area_ha"] for row in summary["per_class"]), rel=1e-9)
    assert (folder / "assessment" / "accuracy.json").is_file() and (folder / "assessment" / "report.html").is_file()


def test_a_loaded_model_refuses_what_it_cannot_do(ran_examples):
    _, names = ran_examples
    model, pixels = names["model"], names["pixels"]
    with pytest.raises(ConfigError, match="min_area applies to maps written from files"):
        model.predict(pixels, options=PredictOptions(min_area=4))
    with pytest.raises(ConfigError, match=r"\(bands, H, W\) or \(H, W, bands\)"):
        model.predict(pixels[None])


def test_train_evaluate_and_assess_are_both_modules_and_functions():
    import landseg.assess.estimators as estimators_module
    import landseg.evaluate as evaluate_module
    import landseg.train.run as run_module
    from landseg import api

    assert landseg.train.run is run_module and landseg.evaluate is evaluate_module
    assert landseg.assess.estimators is estimators_module
    assert callable(landseg.train) and callable(landseg.evaluate) and callable(landseg.assess)
    assert sorted(landseg.__all__) == sorted(api.__all__)  # the package exposes every API function
    with pytest.raises(ConfigError, match=r"missing\.yaml: cannot read config"):
        landseg.train("missing.yaml", out="never")


def test_import_landseg_stays_light():
    code = (
        "import sys, landseg; landseg.__all__; assert 'torch' not in sys.modules and 'landseg.api' not in sys.modules"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
