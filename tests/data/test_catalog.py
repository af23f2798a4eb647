import numpy as np
import pytest
from PIL import Image

from landseg.classes import IGNORE_INDEX, get_schema
from landseg.config import SplitConfig
from landseg.data.catalog import Sample, find_pairs, load_pair, reconcile_mask, split_samples
from landseg.errors import ConfigError, DataError

DUBAI = get_schema("dubai")
BUILDING, WATER = (0x3C, 0x10, 0x98), (0xE2, 0xA9, 0x29)


def write_rgb(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def dubai_like(root, tiles=("tile_1", "tile_2"), per_tile=2, mask_size=(20, 30)):
    rng = np.random.default_rng(0)
    for tile in tiles:
        for i in range(per_tile):
            write_rgb(root / tile / "images" / f"part_{i}.jpg", rng.integers(0, 255, (20, 30, 3), dtype=np.uint8))
            mask = np.zeros((*mask_size, 3), dtype=np.uint8)
            mask[:] = BUILDING
            mask[: mask_size[0] // 2] = WATER
            write_rgb(root / tile / "masks" / f"part_{i}.png", mask)
    return root


def test_folder_pairing_captures_fields(tmp_path):
    root = dubai_like(tmp_path)
    samples = find_pairs(root, "{tile}/images/{name}.jpg", "{tile}/masks/{name}.png")
    assert len(samples) == 4
    assert samples[0].fields == {"tile": "tile_1", "name": "part_0"}
    assert samples[0].mask == root / "tile_1" / "masks" / "part_0.png"


def test_suffix_pairing(tmp_path):
    for stem in ("a", "b"):
        write_rgb(tmp_path / f"{stem}_sat.jpg", np.zeros((4, 4, 3), np.uint8))
        write_rgb(tmp_path / f"{stem}_mask.png", np.zeros((4, 4, 3), np.uint8))
    samples = find_pairs(tmp_path, "{name}_sat.jpg", "{name}_mask.png")
    assert [s.name for s in samples] == ["a_sat", "b_sat"]


def test_missing_masks_are_listed(tmp_path):
    root = dubai_like(tmp_path)
    (root / "tile_2" / "masks" / "part_1.png").unlink()
    with pytest.raises(DataError, match=r"1 images have no mask.*tile_2/images/part_1.jpg"):
        find_pairs(root, "{tile}/images/{name}.jpg", "{tile}/masks/{name}.png")


def test_no_images_and_missing_folder(tmp_path):
    with pytest.raises(DataError, match="no images match"):
        find_pairs(tmp_path, "images/{name}.tif", "masks/{name}.tif")
    with pytest.raises(DataError, match="does not exist"):
        find_pairs(tmp_path / "nope", "images/{name}.tif", "masks/{name}.tif")


def test_duplicate_pairing_is_refused(tmp_path):
    for name in ("x.jpg", "x.png"):
        write_rgb(tmp_path / "images" / name, np.zeros((4, 4, 3), np.uint8))
    write_rgb(tmp_path / "masks" / "x.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DataError, match="both pair with this mask"):
        find_pairs(tmp_path, "images/{name}.{ext}", "masks/{name}.png")


def test_splits_by_field_ratio_and_file(tmp_path):
    root = dubai_like(tmp_path, tiles=("tile_1", "tile_2", "tile_3"), per_tile=4)
    samples = find_pairs(root, "{tile}/images/{name}.jpg", "{tile}/masks/{name}.png")
    by_field = split_samples(samples, SplitConfig(field="tile", train=["tile_1", "tile_3"], val=["tile_2"]), root)
    assert {s.fields["tile"] for s in by_field["val"]} == {"tile_2"} and len(by_field["train"]) == 8
    with pytest.raises(ConfigError, match="tile_9"):
        split_samples(samples, SplitConfig(field="tile", train=["tile_9"]), root)

    ratio = split_samples(samples, SplitConfig(ratios={"train": 0.75, "val": 0.25}, seed=3), root)
    assert len(ratio["train"]) == 9 and len(ratio["val"]) == 3
    assert not set(ratio["train"]) & set(ratio["val"])
    again = split_samples(samples, SplitConfig(ratios={"train": 0.75, "val": 0.25}, seed=3), root)
    assert again == ratio

    (root / "val.txt").write_text("tile_1/images/part_0.jpg\ntile_2/images/part_3.jpg\n")
    listed = split_samples(samples, SplitConfig(files={"val": "val.txt"}), root)
    assert [s.fields["tile"] for s in listed["val"]] == ["tile_1", "tile_2"]


def test_mask_off_by_one_pixel_is_reconciled_and_large_mismatch_refused(tmp_path):
    root = dubai_like(tmp_path, tiles=("t",), per_tile=1, mask_size=(21, 30))
    sample = find_pairs(root, "{tile}/images/{name}.jpg", "{tile}/masks/{name}.png")[0]
    image, mask = load_pair(sample, DUBAI)
    assert mask.shape == image.shape == (20, 30)
    assert (mask[:10] == 4).all() and (mask[11:] == 0).all()

    short = reconcile_mask(np.zeros((19, 30), np.uint8), (20, 30), 2, root, root)
    assert (short[19] == IGNORE_INDEX).all()
    with pytest.raises(DataError, match=r"mask is 30x25 but its image part_0.jpg is 30x20"):
        reconcile_mask(np.zeros((25, 30), np.uint8), (20, 30), 2, sample.mask, sample.image)


def test_unknown_mask_colour_names_the_file(tmp_path):
    root = dubai_like(tmp_path, tiles=("t",), per_tile=1)
    mask_path = root / "t" / "masks" / "part_0.png"
    mask = np.array(Image.open(mask_path))
    mask[0, 0] = (1, 2, 3)
    Image.fromarray(mask).save(mask_path)
    sample = Sample(root / "t" / "images" / "part_0.jpg", mask_path)
    with pytest.raises(DataError, match=r"part_0.png: mask has colours .*#010203 \(1 px\)"):
        load_pair(sample, DUBAI)
    _, decoded = load_pair(sample, DUBAI, unknown="ignore")
    assert decoded[0, 0] == IGNORE_INDEX
