"""Cloudy chips out of training data: ``filters.max_cloud_fraction`` reads each scene's cloud mask (a raster
shipped with the image, seed 003's Ghana workflow) or the zoo's cloud model, chip window by chip window."""

import json

import numpy as np
import pytest
import rasterio
import yaml
from rasterio.transform import from_origin
from typer.testing import CliRunner

from landseg.data.prepare.config import parse_prepare_config
from landseg.data.prepare.index import read_index
from landseg.data.prepare.run import tile
from landseg.errors import ConfigError, DataError

SIZE = 16
CLEAR, CLOUD, SHADOW, NO_DATA = 0, 1, 2, 255
GRID = from_origin(500000, 5200640, 10, 10)
FLOODS = "sen1floods11/Spain_7370579_S2Hand.tif"


def cloud_scene(folder, raster_writer, mask_resolution=10):
    """A 64 x 64 px labelled scene of 16 px chips and its cloud mask: chip (0, 0) all cloud, (0, 1) half
    shadow, (0, 2) a tenth cloud, (1, 0) three quarters mask no-data and the rest cloud; the rest clear."""
    image = np.random.default_rng(0).integers(1, 256, (3, 64, 64)).astype(np.uint8)
    mask = np.full((64, 64), CLEAR, np.uint8)
    mask[0:16, 0:16] = CLOUD
    mask[0:8, 16:32] = SHADOW
    mask[0:2, 32:48] = CLOUD
    mask[16:28, 0:16] = NO_DATA
    mask[28:32, 0:16] = CLOUD
    step = mask_resolution // 10  # a coarser mask of the same extent, read back onto the image's grid
    coarse = from_origin(GRID.c, GRID.f, mask_resolution, mask_resolution)
    raster_writer(folder / "images" / "a.tif", image, GRID)
    raster_writer(folder / "labels" / "a.tif", np.zeros((64, 64), np.uint8), GRID, nodata=255)
    raster_writer(folder / "clouds" / "a_cloud.tif", mask[::step, ::step], coarse, nodata=NO_DATA)
    return folder


def config(folder, **rule):
    return parse_prepare_config(
        {
            "out": str(folder / "out"),
            "schema": "synthetic",
            "input": {
                "root": str(folder),
                "images": "images/{id}.tif",
                "labels": "labels/{id}.tif",
                "cloud_masks": "clouds/{id}_cloud.tif",
            },
            "tiling": {"size": SIZE},
            "filters": {"max_cloud_fraction": {"fraction": 0.3, **rule}},
        }
    )


def cloudy_chips(result) -> set[tuple[int, int]]:
    records, _ = read_index(result.index)
    return {(r.row_off // SIZE, r.col_off // SIZE) for r in records if r.reason == "cloudy"}


@pytest.mark.parametrize("resolution", [10, 20])
def test_chips_under_cloud_or_shadow_are_dropped_and_counted(tmp_path, raster_writer, resolution):
    result = tile(config(cloud_scene(tmp_path, raster_writer, resolution)))
    # Half shadow is over the 0.3 limit, a tenth of cloud is not; mask no-data counts neither way.
    assert cloudy_chips(result) == {(0, 0), (0, 1), (1, 0)}
    report = json.loads(result.report_path.read_text())
    assert report["dropped"]["cloudy"] == {
        "count": 3,
        "chips": ["a_r00000_c00000", "a_r00000_c00016", "a_r00016_c00000"],
    }
    assert report["candidates"] == 16 and report["kept"] == 13
    assert not (tmp_path / "out" / "images" / "a_r00000_c00000.tif").exists()


def test_which_mask_values_count_as_cloud(tmp_path, raster_writer):
    result = tile(config(cloud_scene(tmp_path, raster_writer), values=[CLOUD]))  # Ghana-style binary masks
    assert cloudy_chips(result) == {(0, 0), (1, 0)}  # the shadowed chip stays


def test_a_scene_without_a_mask_is_a_one_line_error_before_anything_is_written(tmp_path, raster_writer):
    cloud_scene(tmp_path, raster_writer)
    prepared = config(tmp_path)
    prepared.input.cloud_masks = None
    with pytest.raises(ConfigError) as raised:
        tile(prepared)
    message = str(raised.value)
    assert "\n" not in message and "'a'" in message
    assert "give input.scenes[].cloud_mask or input.cloud_masks, or filters.max_cloud_fraction.source: model" in message
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match="source: model needs the cloud model"):
        tile(config(tmp_path, source="model"))  # from Python without the model's mask writer


def test_an_unreadable_mask_quarantines_its_scene_and_an_ungeoreferenced_one_on_another_grid_is_refused(
    tmp_path, raster_writer
):
    cloud_scene(tmp_path, raster_writer)
    (tmp_path / "clouds" / "a_cloud.tif").write_bytes(b"not a raster")
    report = tile(config(tmp_path)).report.to_dict()
    assert report["quarantined"]["items"][0]["source"].endswith("a_cloud.tif")
    raster_writer(tmp_path / "clouds" / "a_cloud.tif", np.zeros((32, 32), np.uint8), crs=None)
    with pytest.raises(DataError, match="cloud mask is 32x32 and not on its image's 64x64 grid"):
        tile(config(tmp_path), overwrite=True)


def test_cloud_rule_settings_are_checked(tmp_path):
    base = {"out": "out", "schema": "synthetic", "input": {"scenes": [{"image": "a.tif", "label": "b.tif"}]}}
    with pytest.raises(ConfigError, match=r"max_cloud_fraction\.fraction"):
        parse_prepare_config({**base, "filters": {"max_cloud_fraction": {"fraction": 1.5}}})
    with pytest.raises(ConfigError, match=r"input\.cloud_masks is a template"):
        parse_prepare_config({**base, "input": {**base["input"], "cloud_masks": "clouds/{id}.tif"}})
    scenes = [{"image": "a.tif", "label": "b.tif", "cloud_mask": "c.tif"}]
    resolved = parse_prepare_config({**base, "input": {"scenes": scenes}}, base=tmp_path)
    assert resolved.input.scenes[0].cloud_mask == tmp_path / "c.tif"


def cloud_share(mask: np.ndarray, row: int, col: int, size: int) -> float:
    """Cloud or shadow over the mask's valid pixels of one chip window."""
    window = mask[row : row + size, col : col + size]
    return float(np.isin(window, [CLOUD, SHADOW]).sum() / max(1, (window != NO_DATA).sum()))


@pytest.mark.shared_data
def test_the_cloud_model_drops_the_chips_under_a_painted_cloud(shared_datasets, tmp_path, raster_writer, blocky):
    from landseg.cli.prepare import prepare_app
    from landseg.data.synthetic import paint_cloud

    with rasterio.open(shared_datasets / "samples" / FLOODS) as chip:
        pixels, profile = chip.read(), chip.profile
    with rasterio.open(tmp_path / "cloudy.tif", "w", **profile) as target:
        target.write(paint_cloud(pixels, (192, 192), 50, seed=0))  # over chip (1, 1) of 128 px chips
    labels = blocky(pixels.shape[1:], 32, [0, 1, 2, 3, 4], seed=0).astype(np.uint8)
    raster_writer(tmp_path / "labels.tif", labels, profile["transform"], crs=profile["crs"], nodata=255)
    settings = {
        "out": "out",
        "schema": "synthetic",
        "input": {"scenes": [{"image": "cloudy.tif", "label": "labels.tif"}]},
        "tiling": {"size": 128},
        "filters": {"max_cloud_fraction": {"fraction": 0.5, "source": "model"}},
    }
    (tmp_path / "prepare.yaml").write_text(yaml.safe_dump(settings))
    result = CliRunner().invoke(prepare_app, ["tile", str(tmp_path / "prepare.yaml")])
    assert result.exit_code == 0, result.output
    with rasterio.open(tmp_path / "out" / "cloud_masks" / "cloudy_cloud.tif") as written:
        mask = written.read(1)
    records, _ = read_index(tmp_path / "out" / "chips.csv")
    cloudy = {(r.row_off // 128, r.col_off // 128) for r in records if r.reason == "cloudy"}
    shares = {(r.row_off // 128, r.col_off // 128): cloud_share(mask, r.row_off, r.col_off, 128) for r in records}
    rounded = {position: round(share, 3) for position, share in shares.items()}
    print(f"cloudy chips {sorted(cloudy)}; cloud and shadow shares {rounded}")
    # The chip's own clouds at its top left cover about a third of chips (0, 0) and (0, 1): under the limit.
    assert cloudy == {(1, 1)} == {position for position, share in shares.items() if share > 0.5}
    assert sum(r.status == "kept" for r in records) == 15
    report = json.loads((tmp_path / "out" / "filters.json").read_text())
    assert report["dropped"]["cloudy"]["count"] == len(cloudy)
