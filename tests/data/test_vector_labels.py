"""Vector labels (``data.vector_labels``): polygons, lines and points rasterized on each image's grid."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pyogrio.raw
import pytest
import rasterio
import shapely
import torch
from rasterio.features import shapes
from tests.helpers import experiment, write_geotiff
from typer.testing import CliRunner

from landseg.classes import IGNORE_INDEX, get_schema
from landseg.config import DataConfig, ExperimentConfig, TrainConfig
from landseg.data.catalog import build_catalog, load_pair
from landseg.data.sampling import EquibatchCrops, SampledCropDataset
from landseg.data.vector_labels import reproject
from landseg.errors import ConfigError, DataError
from landseg.io.raster import read_mask

SCHEMA = get_schema("synthetic")
UTM = "EPSG:32632"
WEST, NORTH, PIXEL = 500000.0, 5200000.0, 0.5
"""The synthetic data set's first scene: its top-left corner and pixel size in UTM 32N."""


def write_vectors(path: Path, geometries, crs: str | None = UTM, layer: str | None = None, **columns) -> Path:
    """Shapely geometries and their attribute columns as a vector file (driver from the suffix)."""
    geometries = list(geometries)
    kinds = {g.geom_type for g in geometries}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "'crs' was not provided")  # files without a CRS are meant here
        pyogrio.raw.write(
            path,
            shapely.to_wkb(np.array(geometries, dtype=object)),
            [np.asarray(values) for values in columns.values()],
            list(columns),
            layer=layer,
            geometry_type=kinds.pop() if len(kinds) == 1 else "Unknown",
            crs=crs,
            append=path.exists() and layer is not None,
        )
    return path


def pixel_box(col0: float, row0: float, col1: float, row1: float):
    """The box over pixel columns ``col0..col1`` and rows ``row0..row1`` of the first scene, in UTM."""
    return shapely.box(WEST + col0 * PIXEL, NORTH - row1 * PIXEL, WEST + col1 * PIXEL, NORTH - row0 * PIXEL)


def pixel_centre(col: int, row: int):
    return shapely.Point(WEST + (col + 0.5) * PIXEL, NORTH - (row + 0.5) * PIXEL)


def polygonized(mask_path: Path) -> tuple[list, list[int]]:
    """The class-code regions of a mask as polygons (GDAL polygonize through rasterio), no-data left out."""
    with rasterio.open(mask_path) as src:
        codes, transform = src.read(1), src.transform
    found = list(shapes(codes, mask=codes != IGNORE_INDEX, transform=transform))
    return [shapely.geometry.shape(g) for g, _ in found], [int(v) for _, v in found]


def data_config(root: Path, files: list[str], **options) -> DataConfig:
    vector = {"files": files, "attribute": "class", **options}
    return DataConfig.model_validate(
        {
            "root": str(root),
            "schema": "synthetic",
            "images": "images/scene_{id}.tif",
            "vector_labels": vector,
            "split": {"field": "id", "train": ["000"]},
        }
    )


def labels_of(config: DataConfig, scene: str = "000") -> np.ndarray:
    sample = next(s for s in build_catalog(config).samples if s.fields["id"] == scene)
    return load_pair(sample, SCHEMA, unknown=config.unknown_labels)[1]


@pytest.fixture
def scenes(tmp_path, synthetic_dataset) -> Path:
    """The first two synthetic scenes (96 x 96, side by side in UTM 32N) in a folder of this test's own."""
    for name in ("scene_000", "scene_001"):
        image = (synthetic_dataset / "images" / f"{name}.tif").read_bytes()
        (tmp_path / "images").mkdir(exist_ok=True)
        (tmp_path / "images" / f"{name}.tif").write_bytes(image)
    return tmp_path


def test_polygons_of_known_areas_label_their_pixels(scenes):
    field_box, water_box = pixel_box(10, 10, 40, 30), pixel_box(50, 60, 58, 90)  # 600 and 240 pixels
    write_vectors(scenes / "labels.gpkg", [field_box, water_box], **{"class": ["Field", "Water"]})
    labels = labels_of(data_config(scenes, ["labels.gpkg"]))
    assert labels.shape == (96, 96)
    assert (labels == 0).sum() == field_box.area / PIXEL**2 == 600
    assert (labels == 2).sum() == water_box.area / PIXEL**2 == 240
    assert (labels[10:30, 10:40] == 0).all() and (labels[60:90, 50:58] == 2).all()
    assert (labels == IGNORE_INDEX).sum() == 96 * 96 - 840  # no feature: unlabelled


def test_background_class_fills_what_no_feature_covers(scenes):
    write_vectors(scenes / "labels.gpkg", [pixel_box(0, 0, 10, 10)], **{"class": ["Water"]})
    labels = labels_of(data_config(scenes, ["labels.gpkg"], background="Field"))
    assert (labels == 2).sum() == 100 and (labels == 0).sum() == 96 * 96 - 100


def test_a_window_is_the_same_slice_of_the_scene(scenes):
    """Any window rasterized alone equals that window of the whole image's labels."""
    with rasterio.open(scenes / "images" / "scene_000.tif") as src:
        transform, crs = src.transform, src.crs
    write_vectors(
        scenes / "labels.gpkg",
        [pixel_box(5, 5, 70, 20), pixel_box(30, 0, 40, 96), pixel_centre(80, 30)],
        **{"class": ["Field", "Road", "Building"]},
    )
    config = data_config(scenes, ["labels.gpkg"])
    sample = build_catalog(config).samples[0]
    assert sample.vectors is not None
    files = list(sample.vector_files)
    whole = sample.vectors.rasterize(files, (96, 96), transform, crs, sample.image)
    part = sample.vectors.rasterize(files, (40, 60), transform @ rasterio.Affine.translation(25, 3), crs, sample.image)
    np.testing.assert_array_equal(part, whole[3:43, 25:85])
    assert set(np.unique(part)) == {0, 3, 4, IGNORE_INDEX}


def test_polygonized_mask_reads_back_as_the_same_labels(scenes, synthetic_dataset):
    """Equivalence: a synthetic mask polygonized into a GeoPackage gives back the mask, pixel for pixel."""
    mask_path = synthetic_dataset / "masks" / "scene_000.tif"
    geometries, codes = polygonized(mask_path)
    write_vectors(scenes / "labels.gpkg", geometries, **{"class": codes})
    labels = labels_of(data_config(scenes, ["labels.gpkg"]))
    np.testing.assert_array_equal(labels, read_mask(mask_path, SCHEMA))


def test_features_in_another_crs_are_reprojected(scenes, synthetic_dataset):
    mask_path = synthetic_dataset / "masks" / "scene_000.tif"
    geometries, codes = polygonized(mask_path)
    source = rasterio.crs.CRS.from_string(UTM)
    in_degrees = reproject(np.array(geometries, dtype=object), source, rasterio.crs.CRS.from_epsg(4326))
    write_vectors(scenes / "labels.geojson", in_degrees, crs="EPSG:4326", **{"class": codes})
    labels = labels_of(data_config(scenes, ["labels.geojson"]))
    # Vertices go to degrees and back within nanometres; pixel centres lie a quarter metre from any edge.
    np.testing.assert_array_equal(labels, read_mask(mask_path, SCHEMA))


def test_points_burn_one_pixel_or_a_buffer(scenes):
    points = [pixel_centre(10, 10), pixel_centre(50, 70), pixel_centre(90, 5)]
    write_vectors(scenes / "points.fgb", points, **{"class": ["Water", "Forest", "Road"]})
    single = labels_of(data_config(scenes, ["points.fgb"]))
    assert (single != IGNORE_INDEX).sum() == 3
    assert single[10, 10] == 2 and single[70, 50] == 1 and single[5, 90] == 3
    buffered = labels_of(data_config(scenes, ["points.fgb"], buffer=1.5))
    assert (buffered == 2).sum() == 9 and (buffered[9:12, 9:12] == 2).all()  # 3 x 3 pixels within 1.5 px


def test_points_survive_a_reduced_input_scale_only_with_a_buffer(scenes):
    """Labels are resampled by nearest neighbour at data.input_scale: at 1:2 a one-pixel point on an odd row
    or column vanishes, so a one-pixel burn is warned about; with the buffer the warning asks for (1.5 px,
    3 x 3 pixels) every point keeps a labelled pixel after resampling."""
    from landseg.data.dataset import LabelledImage, resample_pair

    places = [(row, col) for row in (11, 30, 61) for col in (7, 40, 81)]  # odd and even rows and columns
    points = [pixel_centre(col, row) for row, col in places]
    write_vectors(scenes / "points.fgb", points, **{"class": ["Water"] * len(points)})
    halved = data_config(scenes, ["points.fgb"]).model_copy(update={"input_scale": 0.5})
    with pytest.warns(UserWarning, match=r"9 points or lines .*input_scale 0\.5 .*buffer to 1\.5 or more"):
        single = labels_of(halved)
    survivors = resample_pair(LabelledImage(np.zeros((1, 96, 96)), single, "scene"), 0.5).mask
    assert 0 < (survivors == 2).sum() < 9  # nearest keeps even rows and columns: some points are lost
    buffered_config = data_config(scenes, ["points.fgb"], buffer=1.5).model_copy(update={"input_scale": 0.5})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        buffered = labels_of(buffered_config)
    assert not [w for w in caught if "input_scale" in str(w.message)]
    survivors = resample_pair(LabelledImage(np.zeros((1, 96, 96)), buffered, "scene"), 0.5).mask
    for row, col in places:
        assert (survivors[(row - 1) // 2 : (row + 1) // 2 + 1, (col - 1) // 2 : (col + 1) // 2 + 1] == 2).any()


def test_lines_burn_the_pixels_they_cross(scenes):
    line = shapely.LineString([pixel_centre(5, 40).coords[0], pixel_centre(60, 40).coords[0]])
    write_vectors(scenes / "roads.gpkg", [line], **{"class": ["Road"]})
    labels = labels_of(data_config(scenes, ["roads.gpkg"]))
    assert (labels[40, 5:61] == 3).all() and (labels == 3).sum() == 56


def test_overlaps_put_smaller_polygons_on_top_unless_a_priority_says_otherwise(scenes):
    large, small = pixel_box(0, 0, 60, 60), pixel_box(20, 20, 30, 30)
    write_vectors(scenes / "labels.gpkg", [small, large], **{"class": ["Building", "Field"], "rank": [1, 2]})
    by_size = labels_of(data_config(scenes, ["labels.gpkg"]))
    assert (by_size == 4).sum() == 100 and (by_size == 0).sum() == 3600 - 100
    by_rank = labels_of(data_config(scenes, ["labels.gpkg"], priority="rank"))
    assert (by_rank == 4).sum() == 0 and (by_rank == 0).sum() == 3600


def test_invalid_rings_are_repaired_and_counted(scenes):
    bowtie = shapely.Polygon(
        [pixel_box(0, 0, 20, 20).exterior.coords[i] for i in (0, 2, 1, 3, 0)]
    )  # self-intersecting: two triangles meeting at the centre
    assert not bowtie.is_valid
    write_vectors(scenes / "labels.gpkg", [bowtie], **{"class": ["Forest"]})
    with pytest.warns(UserWarning, match="1 invalid geometries repaired"):
        labels = labels_of(data_config(scenes, ["labels.gpkg"]))
    forest = labels == 1
    assert 150 <= forest.sum() <= 250  # the two triangles, half the 400-pixel box
    assert forest[10, 2] != forest[2, 10]  # one triangle is labelled, the one beside it is not


def test_features_without_geometry_are_counted_and_left_out(scenes):
    geometries = np.array([pixel_box(0, 0, 10, 10), None], dtype=object)
    pyogrio.raw.write(
        scenes / "labels.gpkg",
        shapely.to_wkb(geometries),
        [np.array(["Field", "Water"], dtype=object)],
        ["class"],
        geometry_type="Polygon",
        crs=UTM,
    )
    with pytest.warns(UserWarning, match="1 features without geometry left out"):
        labels = labels_of(data_config(scenes, ["labels.gpkg"]))
    assert (labels == 0).sum() == 100 and (labels == 2).sum() == 0


def test_a_background_that_is_no_class_is_refused(scenes):
    write_vectors(scenes / "labels.gpkg", [pixel_box(0, 0, 10, 10)], **{"class": ["Field"]})
    with pytest.raises(ConfigError, match="background 'Meadow' is not a class of 'synthetic'"):
        build_catalog(data_config(scenes, ["labels.gpkg"], background="Meadow"))


def test_value_mapping_and_class_codes(scenes):
    write_vectors(
        scenes / "labels.gpkg",
        [pixel_box(0, 0, 10, 10), pixel_box(20, 20, 30, 30), pixel_box(40, 40, 50, 50)],
        **{"class": ["wheat", "lake", "4"]},
    )
    labels = labels_of(data_config(scenes, ["labels.gpkg"], values={"wheat": "Field", "lake": 2, "4": "Building"}))
    assert labels[5, 5] == 0 and labels[25, 25] == 2 and labels[45, 45] == 4


def test_unknown_values_are_listed_with_counts(scenes):
    boxes = [pixel_box(0, 0, 10, 10), pixel_box(20, 20, 30, 30), pixel_box(40, 40, 50, 50)]
    write_vectors(scenes / "labels.gpkg", boxes, **{"class": ["Field", "Orchard", "Orchard"]})
    with pytest.raises(
        ConfigError, match=r"labels\.gpkg: class values not in schema 'synthetic': 'Orchard' \(2 features\)"
    ):
        build_catalog(data_config(scenes, ["labels.gpkg"]))
    config = data_config(scenes, ["labels.gpkg"])
    config.unknown_labels = "ignore"
    with pytest.warns(UserWarning, match=r"'Orchard' \(2 features\)"):
        labels = labels_of(config)
    assert (labels != IGNORE_INDEX).sum() == 100


def test_features_outside_every_image_are_counted(scenes):
    far = shapely.box(WEST - 5000, NORTH - 10, WEST - 4000, NORTH)
    write_vectors(scenes / "labels.gpkg", [pixel_box(0, 0, 10, 10), far, far], **{"class": ["Field"] * 3})
    with pytest.warns(UserWarning, match="2 of 3 features lie outside every image"):
        build_catalog(data_config(scenes, ["labels.gpkg"]))


def test_features_without_a_crs_are_refused_for_georeferenced_images(scenes):
    write_vectors(scenes / "labels.gpkg", [pixel_box(0, 0, 10, 10)], crs=None, **{"class": ["Field"]})
    with pytest.raises(DataError, match=r"labels\.gpkg: features have no CRS but scene_000\.tif is in EPSG:32632"):
        labels_of(data_config(scenes, ["labels.gpkg"]))


def test_pixel_coordinates_label_images_without_georeferencing(tmp_path):
    """A file without a CRS holds pixel coordinates (column, row) for plain images, one file per image."""
    image = np.full((3, 40, 50), 100, dtype=np.uint8)
    write_geotiff(tmp_path / "images" / "scene_000.tif", image, crs=None, transform=rasterio.Affine.identity())
    (tmp_path / "labels").mkdir()
    write_vectors(tmp_path / "labels" / "scene_000.gpkg", [shapely.box(5, 10, 25, 20)], crs=None, **{"class": ["Road"]})
    labels = labels_of(data_config(tmp_path, ["labels/scene_{id}.gpkg"]))
    assert (labels == 3).sum() == 200 and (labels[10:20, 5:25] == 3).all()


@pytest.mark.parametrize(
    ("prepare", "options", "error", "message"),
    [
        (lambda p: p.write_text("just some text\n"), {}, DataError, "not vector data GDAL can read"),
        (lambda p: None, {}, ConfigError, "images have no vector label file"),
        (
            lambda p: write_vectors(p, [pixel_box(0, 0, 5, 5)], kind=["Field"]),
            {},
            ConfigError,
            "no attribute 'class'; attributes: \\['kind'\\]",
        ),
        (
            lambda p: write_vectors(p, [pixel_box(0, 0, 5, 5)], layer="a", **{"class": ["Field"]}),
            {"layer": "b"},
            ConfigError,
            "has no layer 'b'; layers: \\['a'\\]",
        ),
        (
            lambda p: [write_vectors(p, [pixel_box(0, 0, 5, 5)], layer=n, **{"class": ["Field"]}) for n in "ab"],
            {},
            ConfigError,
            "holds 2 layers",
        ),
    ],
    ids=["not-vector-data", "missing-file", "missing-attribute", "missing-layer", "layer-not-named"],
)
def test_bad_vector_files_are_one_line_errors_naming_the_file(scenes, prepare, options, error, message):
    path = scenes / "labels.gpkg"
    prepare(path)
    with pytest.raises(error, match=message) as caught:
        build_catalog(data_config(scenes, ["labels.gpkg"], **options))
    assert "labels.gpkg" in str(caught.value) and "\n" not in str(caught.value)


def test_empty_layer_is_refused(scenes):
    path = scenes / "labels.gpkg"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "'crs' was not provided")  # files without a CRS are meant here
        pyogrio.raw.write(
            path, np.array([], dtype=object), [np.array([], dtype=object)], ["class"], geometry_type="Polygon", crs=UTM
        )
    with pytest.raises(DataError, match=r"labels\.gpkg: layer 'labels' has no features"):
        build_catalog(data_config(scenes, ["labels.gpkg"]))


def test_a_saved_config_with_vector_labels_reads_back(scenes):
    """Training and sweeps save the config with every key (the default masks template too) and read it again."""
    config = ExperimentConfig.model_validate({"data": data_config(scenes, ["labels.gpkg"]).model_dump(by_alias=True)})
    again = ExperimentConfig.model_validate(config.to_yaml_dict())
    assert again.data.vector_labels == config.data.vector_labels


def test_masks_and_vector_labels_do_not_mix(scenes):
    with pytest.raises(ValueError, match=r"give data\.masks or data\.vector_labels, not both"):
        DataConfig.model_validate(
            {"root": str(scenes), "masks": "m/{name}.tif", "vector_labels": {"files": ["a.gpkg"], "attribute": "c"}}
        )


def test_equibatch_finds_the_few_labelled_pixels_of_points(scenes):
    """Sparse labels: 12 points in two 96 x 96 images; every equibatch crop holds labelled pixels."""
    rng = np.random.default_rng(0)
    cells = rng.choice(96 * 96, size=12, replace=False)
    points = [pixel_centre(int(c % 96), int(c // 96)) for c in cells]
    write_vectors(
        scenes / "points.gpkg", points, **{"class": [["Field", "Water", "Building"][i % 3] for i in range(12)]}
    )
    from landseg.data.augment import Augmentation
    from landseg.data.dataset import load_labelled_images
    from landseg.normalization import Normalization

    config = data_config(scenes, ["points.gpkg"])
    items = [
        i
        for i in load_labelled_images(build_catalog(config).samples, SCHEMA, None, progress=False)
        if i.labelled_pixels
    ]
    assert sum(i.labelled_pixels for i in items) == 12
    strategy = EquibatchCrops(items, SCHEMA.num_classes)
    crops = SampledCropDataset(items, 32, Normalization.symmetric(3), 30, strategy, Augmentation(), min_labelled=0.0)
    seen = [crops[k][1] for k in range(30)]
    assert all((mask != IGNORE_INDEX).any() for mask in seen)
    assert {int(c) for mask in seen for c in mask[mask != IGNORE_INDEX].unique()} == {0, 2, 4}
    # The default loss learns from the handful of labelled pixels and ignores the rest.
    targets = torch.stack(seen[:8])
    logits = torch.zeros(8, SCHEMA.num_classes, 32, 32, requires_grad=True)
    loss = TrainConfig().loss.criterion(SCHEMA.num_classes)(logits, targets)
    loss.backward()
    assert torch.isfinite(loss) and loss > 0
    touched = logits.grad.abs().sum(dim=1) > 0
    assert torch.equal(touched, targets != IGNORE_INDEX)


def test_train_from_a_geopackage(tmp_path, synthetic_dataset):
    """``landseg train`` a step and ``landseg evaluate`` from polygons of the synthetic masks, not the masks."""
    from landseg.cli.main import app

    geometries, codes = [], []
    for name in ("scene_000", "scene_001", "scene_002"):
        found, found_codes = polygonized(synthetic_dataset / "masks" / f"{name}.tif")
        geometries += found
        codes += found_codes
    write_vectors(tmp_path / "labels.gpkg", geometries, **{"class": codes})
    config = experiment(synthetic_dataset)
    del config["data"]["masks"]
    config["data"]["vector_labels"] = {"files": [str(tmp_path / "labels.gpkg")], "attribute": "class"}
    config["train"]["onnx_export"] = False
    ExperimentConfig.model_validate(config)
    import yaml

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["train", str(path), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    checkpoint = tmp_path / "run" / "checkpoints" / "best.ckpt"
    assert checkpoint.is_file()
    arguments = ["evaluate", "-c", str(checkpoint), "--config", str(path), "--out", str(tmp_path / "eval")]
    evaluated = CliRunner().invoke(app, arguments)
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    truth = read_mask(synthetic_dataset / "masks" / "scene_002.tif", SCHEMA)  # the validation image
    assert np.array(metrics["confusion_matrix"]).sum() == (truth != IGNORE_INDEX).sum()


@pytest.mark.shared_data
def test_dubai_masks_polygonized_per_image_read_back_as_the_masks(tmp_path, shared_datasets):
    """Real data: each Dubai tile 1 mask (decoded, on its JPEG's pixel grid) polygonized into a GeoPackage
    in pixel coordinates and read back as vector labels gives the mask again on every pixel."""
    root = shared_datasets / "dubai"
    masks = DataConfig.model_validate(
        {"root": str(root), "schema": "dubai", "images": "tile_1/images/{name}.jpg", "masks": "tile_1/masks/{name}.png"}
    )
    schema = get_schema("dubai")
    truths = {}
    for sample in build_catalog(masks).samples:
        truth = load_pair(sample, schema)[1]
        found = list(shapes(truth, mask=truth != IGNORE_INDEX, connectivity=4))
        write_vectors(
            tmp_path / f"{sample.name}.gpkg",
            [shapely.geometry.shape(g) for g, _ in found],
            crs=None,
            **{"class": [schema.names[int(v)] for _, v in found]},
        )
        truths[sample.name] = truth
    vectors = DataConfig.model_validate(
        {
            "root": str(root),
            "schema": "dubai",
            "images": "tile_1/images/{name}.jpg",
            "vector_labels": {"files": [str(tmp_path / "{name}.gpkg")], "attribute": "class"},
        }
    )
    samples = build_catalog(vectors).samples
    assert len(samples) == len(truths) == 9
    agreeing = total = 0
    for sample in samples:
        labels = load_pair(sample, schema)[1]
        agreeing += int((labels == truths[sample.name]).sum())
        total += labels.size
    print(f"Dubai tile 1: {agreeing} of {total} pixels agree ({agreeing / total:.6%})")
    assert agreeing == total  # polygonize follows pixel edges; rasterize takes pixel centres: no pixel differs


def test_prepare_rasterize_writes_the_labels_window_by_window(tmp_path, synthetic_dataset):
    """``landseg prepare rasterize``: polygons in degrees burnt onto a UTM image in 32 px windows."""
    from landseg.cli.prepare import prepare_app

    mask_path = synthetic_dataset / "masks" / "scene_000.tif"
    geometries, codes = polygonized(mask_path)
    in_degrees = reproject(
        np.array(geometries, dtype=object), rasterio.crs.CRS.from_string(UTM), rasterio.crs.CRS.from_epsg(4326)
    )
    write_vectors(tmp_path / "labels.gpkg", in_degrees, crs="EPSG:4326", **{"class": codes})
    out = tmp_path / "label.tif"
    image = synthetic_dataset / "images" / "scene_000.tif"
    arguments = ["rasterize", str(image), str(tmp_path / "labels.gpkg"), "--out", str(out), "--schema", "synthetic"]
    result = CliRunner().invoke(prepare_app, [*arguments, "--attribute", "class", "--block", "32"])
    assert result.exit_code == 0, result.output
    assert "9 windows" in result.output
    with rasterio.open(out) as written, rasterio.open(image) as source:
        assert (written.crs, written.transform, written.shape) == (source.crs, source.transform, source.shape)
        np.testing.assert_array_equal(written.read(1), read_mask(mask_path, SCHEMA))
    bad = CliRunner().invoke(prepare_app, [*arguments, "--attribute", "kind"])
    assert bad.exit_code != 0 and "has no attribute 'kind'" in bad.output


def test_prepare_tile_cuts_chips_from_vector_labelled_scenes(tmp_path, synthetic_dataset):
    from landseg.data.prepare.config import parse_prepare_config
    from landseg.data.prepare.run import tile

    mask_path = synthetic_dataset / "masks" / "scene_000.tif"
    geometries, codes = polygonized(mask_path)
    write_vectors(tmp_path / "labels.gpkg", geometries, **{"class": codes})
    scene = {"image": str(synthetic_dataset / "images" / "scene_000.tif"), "label": str(tmp_path / "labels.gpkg")}
    config = {"out": str(tmp_path / "out"), "schema": "synthetic", "input": {"scenes": [scene]}, "tiling": {"size": 32}}
    with pytest.raises(ConfigError, match=r"labels\.gpkg is a vector file; .* input\.vector\.attribute"):
        tile(parse_prepare_config(config))
    config["input"]["vector"] = {"attribute": "class"}
    result = tile(parse_prepare_config(config), overwrite=True)
    aligned = tmp_path / "out" / "aligned" / "scene_000_label.tif"
    np.testing.assert_array_equal(read_mask(aligned, SCHEMA), read_mask(mask_path, SCHEMA))
    assert sum(r.kept for r in result.records) == 9
