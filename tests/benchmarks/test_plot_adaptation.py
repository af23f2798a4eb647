"""``benchmarks/plot_adaptation.py`` reads the mIoU each benchmark writes, in its own shape, and draws
every measured setting, leaving out what was not run."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import plot_adaptation


def write(folder: Path, name: str, payload: dict) -> None:
    (folder / f"{name}.json").write_text(json.dumps(payload))


@pytest.fixture
def results(tmp_path):
    write(tmp_path, "dubai_a", {"ablation": {"variants": {"defaults_focal_equibatch": {"miou": 0.52}}}})
    write(tmp_path, "dubai_b", {"ablation": {"variants": {"defaults_focal_equibatch": {"miou": 0.56}}}})
    write(tmp_path, "korea", {"blocked_split": {"variants": {"ce": {"miou": 0.47}}}})
    write(tmp_path, "summary", {"runs": {"winner_seed0": {"miou": 0.61}}})
    write(tmp_path, "two_variants", {"ablation": {"variants": {"a": {"miou": 0.1}, "b": {"miou": 0.2}}}})
    return tmp_path


def test_each_benchmark_shape_gives_its_miou(results):
    assert plot_adaptation.miou("dubai_a", results) == 0.52
    assert plot_adaptation.miou("korea", results) == 0.47
    assert plot_adaptation.miou("summary#winner_seed0", results) == 0.61
    assert plot_adaptation.miou("summary#winner_seed1", results) is None
    assert plot_adaptation.miou("never_run", results) is None


def test_a_file_with_several_variants_is_refused_with_its_name(results):
    with pytest.raises(SystemExit, match=r"two_variants\.json"):
        plot_adaptation.miou("two_variants", results)


def test_the_picture_draws_one_bar_per_measured_setting(results, tmp_path, monkeypatch):
    bars = []
    import matplotlib.axes

    original = matplotlib.axes.Axes.bar
    monkeypatch.setattr(
        matplotlib.axes.Axes,
        "bar",
        lambda self, x, height, **kw: bars.append(height) or original(self, x, height, **kw),
    )
    panels = {
        "Dubai": {"default": ["dubai_a", "dubai_b"], "not run": ["never_run"]},
        "Korea": {"default": ["korea"], "winner": ["summary#winner_seed0"]},
    }
    out = plot_adaptation.plot(panels, tmp_path / "figure" / "adaptation.png", results)
    assert out.is_file() and out.stat().st_size > 1000
    assert bars == pytest.approx([0.54, 0.47, 0.61])
