import base64
import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image
from rich.console import Console

from landseg.classes import IGNORE_INDEX, get_schema
from landseg.errors import DataError
from landseg.metrics import ConfusionMatrix, metrics_dict
from landseg.report import (
    blend_overlay,
    legend_patches,
    metrics_table,
    plot_class_distribution,
    plot_confusion_matrix,
    plot_per_class,
    plot_training_curves,
    plots,
    render_comparison,
    save_colorized_png,
    write_report,
)
from landseg.report.overlay import ERROR_COLOR, error_map
from landseg.report.plots import save_figure

SCHEMA = get_schema("synthetic")


@pytest.fixture(scope="module")
def scene():
    """A small striped scene: truth with an unlabelled corner, a prediction with noise and one blob."""
    rng = np.random.default_rng(42)
    _rows, cols = np.mgrid[0:48, 0:64]
    truth = ((cols // 13) % SCHEMA.num_classes).astype(np.uint8)
    truth[20:25] = 3
    truth[:6, :6] = IGNORE_INDEX
    pred = truth.copy()
    noise = rng.random(truth.shape) < 0.08
    pred[noise] = rng.integers(0, SCHEMA.num_classes, noise.sum())
    pred[:6, :6] = 0
    pred[30:40, 5:12] = 2
    colours = SCHEMA.palette[np.clip(truth, 0, 4)] * 0.7
    image = np.clip(colours + rng.integers(0, 60, (48, 64, 3)), 0, 255).astype(np.uint8)
    cm = ConfusionMatrix(SCHEMA.num_classes)
    cm.update(pred, truth)
    return image, truth, pred, cm


def assert_readable_png(path: Path, min_size=(100, 100)) -> np.ndarray:
    assert path.is_file() and path.suffix == ".png"
    with Image.open(path) as png:
        assert png.format == "PNG"
        pixels = np.asarray(png.convert("RGB"))
    assert pixels.shape[1] >= min_size[0] and pixels.shape[0] >= min_size[1]
    assert pixels.reshape(-1, 3).std(axis=0).max() > 10, "figure is blank"
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")], "temporary file left behind"
    return pixels


def has_color(pixels: np.ndarray, rgb, tolerance=3) -> bool:
    return bool((np.abs(pixels.astype(int) - np.array(rgb)).max(axis=-1) <= tolerance).any())


def test_confusion_matrix_figure(scene, tmp_path):
    _, _, _, cm = scene
    path = plot_confusion_matrix(cm, SCHEMA, tmp_path / "cm.png", title="validation")
    assert path == tmp_path / "cm.png"
    assert_readable_png(path, (300, 300))
    with pytest.raises(ValueError, match="schema"):
        plot_confusion_matrix(ConfusionMatrix(3), SCHEMA, tmp_path / "bad.png")


def test_failed_figure_leaves_previous_file_and_no_temporary(scene, tmp_path, monkeypatch):
    _, _, _, cm = scene
    path = plot_confusion_matrix(cm, SCHEMA, tmp_path / "cm.png")
    before = path.read_bytes()

    def broken_savefig(self, fname, **kwargs):
        Path(fname).write_bytes(b"half a png")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        plot_confusion_matrix(cm, SCHEMA, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["cm.png"]


def test_per_class_figure_uses_class_colours(scene, tmp_path):
    _, _, _, cm = scene
    path = plot_per_class(metrics_dict(cm, SCHEMA.names), SCHEMA, tmp_path / "per_class.png")
    pixels = assert_readable_png(path, (300, 200))
    for color in SCHEMA.palette:
        assert has_color(pixels, color), f"no bar in class colour {color}"


def test_per_class_figure_with_undefined_scores(tmp_path, monkeypatch):
    """Undefined scores are written "n/a", never drawn as bars of height zero."""
    cm = ConfusionMatrix(SCHEMA.num_classes)
    cm.update(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]))  # classes 2-4 absent
    drawn = []

    def keep_figure(fig, path):
        drawn.append(fig)
        return save_figure(fig, path)

    monkeypatch.setattr(plots, "save_figure", keep_figure)
    assert_readable_png(plot_per_class(metrics_dict(cm, SCHEMA.names), SCHEMA, tmp_path / "sparse.png"))
    (axes,) = drawn[0].axes
    bar_colours = {tuple(np.round(np.array(bar.get_facecolor()[:3]) * 255).astype(int)) for bar in axes.patches}
    assert bar_colours == {tuple(SCHEMA.palette[0]), tuple(SCHEMA.palette[1])}
    assert [text.get_text() for text in axes.texts] == ["n/a"] * 12  # 3 absent classes x 4 scores


def test_training_curves_from_lightning_style_log(tmp_path):
    # train and validation values on separate rows, an extra column, empty cells, no val_loss column
    lines = ["epoch,step,train_loss,val_miou,lr,extra"]
    for epoch in range(6):
        lines.append(f"{epoch},{epoch * 10},{1 / (epoch + 1):.4f},,{1e-3 * 0.7**epoch},x")
        lines.append(f"{epoch},{epoch * 10 + 9},,{0.3 + 0.05 * epoch},,y")
    log = tmp_path / "metrics.csv"
    log.write_text("\n".join(lines) + "\n")
    path = plot_training_curves(log, tmp_path / "curves.png")
    assert_readable_png(path, (500, 200))


def test_training_curves_reject_unusable_logs(tmp_path):
    with pytest.raises(DataError, match="cannot read") as error:
        plot_training_curves(tmp_path / "missing.csv", tmp_path / "x.png")
    assert "missing.csv" in str(error.value)
    useless = tmp_path / "useless.csv"
    useless.write_text("epoch,accuracy\n0,0.5\n")
    with pytest.raises(DataError, match="none of the columns"):
        plot_training_curves(useless, tmp_path / "x.png")
    broken = tmp_path / "broken.csv"
    broken.write_text("epoch,train_loss\n0,0.5\n1,oops\n")
    with pytest.raises(DataError, match="row 3: train_loss"):
        plot_training_curves(broken, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_class_distribution_accepts_arrays_and_mappings(scene, tmp_path):
    _, _, _, cm = scene
    pixels = assert_readable_png(plot_class_distribution(cm.support, SCHEMA, tmp_path / "dist.png"))
    for color in SCHEMA.palette:
        assert has_color(pixels, color)
    assert_readable_png(plot_class_distribution({"Water": 10, "Road": 5}, SCHEMA, tmp_path / "dist2.png"))
    with pytest.raises(ValueError, match="3 class counts"):
        plot_class_distribution([1, 2, 3], SCHEMA, tmp_path / "bad.png")


def test_blend_overlay_mixes_known_pixels():
    image = np.full((4, 5, 3), 100, dtype=np.uint8)
    index = np.array([[0, 1, 2, 3, 4]] * 3 + [[IGNORE_INDEX] * 5], dtype=np.uint8)
    blended = blend_overlay(image, index, SCHEMA, alpha=0.5)
    assert blended.dtype == np.uint8 and blended.shape == (4, 5, 3)
    for k in range(5):
        expected = np.rint((100 + SCHEMA.palette[k].astype(float)) / 2)
        np.testing.assert_array_equal(blended[1, k], expected)
    np.testing.assert_array_equal(blended[3], image[3])  # ignore pixels keep the image
    np.testing.assert_array_equal(blend_overlay(image, index, SCHEMA, alpha=1.0)[0], SCHEMA.palette)
    np.testing.assert_array_equal(blend_overlay(image, index, SCHEMA, alpha=0.0), image)
    with pytest.raises(ValueError, match="outside"):
        blend_overlay(image, np.full((4, 5), 7, dtype=np.uint8), SCHEMA)
    with pytest.raises(ValueError, match="mask is"):
        blend_overlay(image, index[:3], SCHEMA)


def test_error_map_marks_wrong_pixels_red_and_ignore_transparent():
    image = np.full((2, 3, 3), 50, dtype=np.uint8)
    truth = np.array([[0, 1, 2], [IGNORE_INDEX, 1, 1]], dtype=np.uint8)
    pred = np.array([[0, 2, 2], [1, 1, 0]], dtype=np.uint8)
    rgba = error_map(image, truth, pred)
    wrong = np.array([[0, 1, 0], [0, 0, 1]], dtype=bool)
    assert (rgba[wrong, :3] == ERROR_COLOR).all()
    right = ~wrong & (truth != IGNORE_INDEX)
    assert (rgba[right, 0] == rgba[right, 1]).all() and (rgba[right, 1] == rgba[right, 2]).all()  # grey
    assert rgba[1, 0, 3] == 0 and (rgba[truth != IGNORE_INDEX, 3] == 255).all()


def test_render_comparison_shows_classes_and_errors(scene, tmp_path):
    image, truth, pred, _ = scene
    path = render_comparison(image, truth, pred, SCHEMA, tmp_path / "compare.png", title="tile 4")
    pixels = assert_readable_png(path, (600, 150))
    for color in SCHEMA.palette:
        assert has_color(pixels, color)
    assert has_color(pixels, ERROR_COLOR)
    no_truth = assert_readable_png(render_comparison(image, None, pred, SCHEMA, tmp_path / "pred_only.png"))
    assert not has_color(no_truth, ERROR_COLOR)
    assert no_truth.shape[1] < pixels.shape[1]  # two panels instead of four


def test_colorized_png_without_legend_is_exact(tmp_path):
    index = np.array([[0, 1, 2], [3, 4, IGNORE_INDEX]], dtype=np.uint8)
    path = save_colorized_png(index, SCHEMA, tmp_path / "map.png", legend=False)
    with Image.open(path) as png:
        rgba = np.asarray(png)
    assert rgba.shape == (2, 3, 4)
    np.testing.assert_array_equal(rgba[0, :, :3], SCHEMA.palette[:3])
    np.testing.assert_array_equal(rgba[1, :2, :3], SCHEMA.palette[3:])
    assert rgba[1, 2, 3] == 0 and (rgba[0, :, 3] == 255).all()


def test_colorized_png_with_legend(scene, tmp_path):
    _, _, pred, _ = scene
    pixels = assert_readable_png(save_colorized_png(pred, SCHEMA, tmp_path / "legend.png"), (300, 150))
    for color in SCHEMA.palette:
        assert has_color(pixels, color)


def test_legend_patches_follow_schema():
    patches = legend_patches(SCHEMA, shares=[0.5, 0.25, 0.25, 0.0, 0.0])
    assert [p.get_label() for p in patches][:2] == ["Field (50.0%)", "Forest (25.0%)"]
    colors = [tuple(round(255 * v) for v in p.get_facecolor()[:3]) for p in legend_patches(SCHEMA)]
    assert colors == [tuple(c) for c in SCHEMA.palette.tolist()]


def test_metrics_table_lists_classes_and_summary(scene):
    _, _, _, cm = scene
    metrics = metrics_dict(cm, SCHEMA.names)
    console = Console(width=120, record=True, color_system=None)
    console.print(metrics_table(metrics, SCHEMA))
    text = console.export_text()
    for name in SCHEMA.names:
        assert name in text
    assert f"{100 * metrics['miou']:.2f}" in text
    assert f"{100 * metrics['pixel_accuracy']:.2f}" in text
    water_share = metrics["per_class"]["Water"]["support"] / cm.total
    assert f"{100 * water_share:.2f}" in text


def test_html_report_is_self_contained(scene, tmp_path):
    _image, _truth, _pred, cm = scene
    metrics = metrics_dict(cm, SCHEMA.names)
    figure = plot_confusion_matrix(cm, SCHEMA, tmp_path / "cm.png")
    out_dir = tmp_path / "report"
    path = write_report(
        out_dir,
        "Run <42>",
        metrics,
        [("Confusion matrix", figure)],
        {"Configuration": "model: unet\nnote: a < b"},
        SCHEMA,
    )
    assert path == out_dir / "report.html"
    html = path.read_text(encoding="utf-8")
    for name in SCHEMA.names:
        assert name in html
    assert f"{100 * metrics['miou']:.2f}" in html
    assert "Run &lt;42&gt;" in html and "a &lt; b" in html  # text is escaped
    assert SCHEMA.classes[2].color == (0x1F, 0x77, 0xB4) and "background:#1F77B4" in html
    embedded = re.search(r'src="data:image/png;base64,([^"]+)"', html).group(1)
    assert base64.b64decode(embedded) == figure.read_bytes()
    assert not re.search(r'src="(?!data:)', html)  # nothing loaded from elsewhere
    assert list(out_dir.iterdir()) == [path]


def test_html_report_without_metrics_and_with_a_missing_figure(tmp_path):
    path = write_report(tmp_path, "Prediction only", None, [], {"Notes": "hello"})
    assert "hello" in path.read_text() and "mIoU" not in path.read_text()
    with pytest.raises(DataError, match="cannot read") as error:
        write_report(tmp_path, "x", None, [("missing", tmp_path / "nope.png")])
    assert "nope.png" in str(error.value)
    assert path.read_text().count("Prediction only") == 2  # the earlier report survives the failure
