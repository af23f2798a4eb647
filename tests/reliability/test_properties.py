"""Properties that must hold for every input, checked by hypothesis against brute-force references:
mask decoding and code remapping, tile and chip arithmetic, blending weights, config parsing."""

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from landseg.checkpoint import ModelCard
from landseg.classes import IGNORE_INDEX, ClassSchema, LandClass, get_schema
from landseg.config import (
    AugmentConfig,
    DataConfig,
    OptimizerConfig,
    SamplingConfig,
    SchedulerConfig,
    TrainConfig,
    parse_assignment,
    parse_config,
    set_dotted,
)
from landseg.data.prepare.align import LabelDecoder
from landseg.data.prepare.tiling import chip_origins, chip_windows
from landseg.errors import ConfigError, DataError
from landseg.losses import FocalConfig
from landseg.models import ModelSpec
from landseg.normalization import Normalization
from landseg.predict.blocks import column_blocks, reflect_indices, scene_grid
from landseg.predict.core import predict_array
from landseg.predict.ensemble import Ensemble
from landseg.predict.networks import Member
from landseg.predict.options import PredictOptions
from landseg.predict.tiling import MIN_BLEND_WEIGHT, blend_weights, tile_origins, tile_stride

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- mask decoding and code remapping ------------------------------------------------------------------
@st.composite
def code_schemas(draw):
    codes = draw(st.lists(st.integers(0, 400), min_size=1, max_size=6, unique=True))
    ignore = draw(st.lists(st.integers(0, 400).filter(lambda c: c not in codes), max_size=2, unique=True))
    classes = tuple(LandClass(f"class{i}", (i, 2 * i, 3 * i), code) for i, code in enumerate(codes))
    return ClassSchema("property", classes, ignore_codes=tuple(ignore))


def brute_force_codes(mask: np.ndarray, schema: ClassSchema) -> np.ndarray:
    lookup = {c.code: i for i, c in enumerate(schema.classes)}
    return np.array([lookup.get(int(v), IGNORE_INDEX) for v in mask.ravel()], dtype=np.uint8).reshape(mask.shape)


@FAST
@given(data=st.data(), schema=code_schemas(), dtype=st.sampled_from(["uint16", "int32", "int64"]))
def test_code_masks_decode_like_a_lookup_and_unknown_codes_are_named(data, schema, dtype):
    known = [c.code for c in schema.classes] + list(schema.ignore_codes)
    values = st.one_of(st.sampled_from(known), st.integers(0, 400))
    mask = data.draw(
        hnp.arrays(np.dtype(dtype), hnp.array_shapes(min_dims=2, max_dims=2, max_side=12), elements=values)
    )
    expected = brute_force_codes(mask, schema)
    np.testing.assert_array_equal(schema.decode(mask, unknown="ignore"), expected)
    unknown = sorted(set(mask.ravel().tolist()) - set(known))
    if not unknown:
        np.testing.assert_array_equal(schema.decode(mask, unknown="error", source="m.tif"), expected)
        return
    with pytest.raises(DataError) as error:
        schema.decode(mask, unknown="error", source="m.tif")
    assert error.value.path == "m.tif"
    if len(unknown) <= 10:  # up to ten are listed, each with its pixel count
        for value in unknown:
            assert f"{value} ({int((mask == value).sum())} px)" in error.value.problem


@st.composite
def colour_schemas(draw):
    colours = draw(st.lists(st.tuples(*[st.integers(0, 255)] * 3), min_size=1, max_size=6, unique=True))
    ignore = draw(
        st.lists(st.tuples(*[st.integers(0, 255)] * 3).filter(lambda c: c not in colours), max_size=2, unique=True)
    )
    classes = tuple(LandClass(f"class{i}", colour, None, colour) for i, colour in enumerate(colours))
    return ClassSchema("colours", classes, ignore_colors=tuple(ignore))


@FAST
@given(data=st.data(), schema=colour_schemas())
def test_colour_masks_decode_like_a_lookup(data, schema):
    palette = [c.mask_color for c in schema.classes] + list(schema.ignore_colors)
    height, width = data.draw(st.integers(1, 10)), data.draw(st.integers(1, 10))
    colour = st.one_of(st.sampled_from(palette), st.tuples(*[st.integers(0, 255)] * 3))
    pixels = data.draw(st.lists(colour, min_size=height * width, max_size=height * width))
    mask = np.array(pixels, dtype=np.uint8).reshape(height, width, 3)
    lookup = {c.mask_color: i for i, c in enumerate(schema.classes)}
    expected = np.array([lookup.get(p, IGNORE_INDEX) for p in pixels], dtype=np.uint8).reshape(height, width)
    np.testing.assert_array_equal(schema.decode(mask, unknown="ignore"), expected)
    if set(pixels) - set(palette):
        with pytest.raises(DataError, match="mask has colours that schema 'colours' does not define"):
            schema.decode(mask, unknown="error")


@FAST
@given(
    data=st.data(),
    schema=code_schemas(),
    dtype=st.sampled_from(["uint8", "uint16", "int16"]),
    nodata=st.one_of(st.none(), st.integers(0, 255)),
)
def test_prepare_label_decoder_agrees_with_the_schema(data, schema, dtype, nodata):
    """The prepare stage decodes windows through a lookup table; it must give what the schema gives."""
    info = np.iinfo(dtype)
    assume(all(info.min <= c.code <= info.max for c in schema.classes))
    known = [c.code for c in schema.classes] + list(schema.ignore_codes)
    values = st.one_of(
        st.sampled_from([c for c in known if info.min <= c <= info.max] or [0]),
        st.integers(max(info.min, -50), min(info.max, 400)),
    )
    raw = data.draw(hnp.arrays(np.dtype(dtype), (6, 7), elements=values))
    decoded = LabelDecoder(schema, dtype, nodata, "ignore", "label.tif")(raw)
    expected = brute_force_codes(raw, schema)
    if nodata is not None:
        expected[raw == nodata] = IGNORE_INDEX
    np.testing.assert_array_equal(decoded, expected)
    unknown = set(raw.ravel().tolist()) - set(known) - ({nodata} if nodata is not None else set())
    strict = LabelDecoder(schema, dtype, nodata, "error", "label.tif")
    if unknown:
        with pytest.raises(DataError, match="does not define"):
            strict(raw)
    else:
        np.testing.assert_array_equal(strict(raw), expected)


# -- tiles, chips and blocks ---------------------------------------------------------------------------
@FAST
@given(length=st.integers(1, 700), tile=st.integers(1, 256), overlap=st.floats(0, 0.95))
def test_tiles_cover_every_pixel_flush_with_the_end(length, tile, overlap):
    stride = tile_stride(tile, overlap)
    assert 1 <= stride <= tile
    origins = tile_origins(length, tile, stride)
    assert origins[0] == 0 and origins == sorted(set(origins))
    assert origins[-1] == max(length - tile, 0)  # flush with the end, never past it
    assert all(b - a <= stride for a, b in itertools.pairwise(origins))
    covered = np.zeros(length, dtype=bool)
    for origin in origins:
        covered[origin : origin + tile] = True
    assert covered.all()
    # The preparation stage cuts chips with the same rule, implemented apart to keep torch out of it.
    assert chip_origins(length, tile, stride) == origins


@FAST
@given(height=st.integers(1, 300), width=st.integers(1, 300), size=st.integers(8, 128), data=st.data())
def test_chips_lie_inside_the_scene_and_cover_it(height, width, size, data):
    stride = data.draw(st.integers(1, size))
    windows = chip_windows(width, height, size, stride)
    covered = np.zeros((height, width), dtype=np.int32)
    for window in windows:
        assert window.col_off >= 0 and window.row_off >= 0
        assert window.col_off + window.width <= width and window.row_off + window.height <= height
        assert (window.width, window.height) == (min(size, width), min(size, height))
        covered[window.row_off : window.row_off + window.height, window.col_off : window.col_off + window.width] += 1
    assert covered.min() >= 1


@FAST
@given(
    height=st.integers(1, 200),
    width=st.integers(1, 400),
    tile=st.integers(4, 64),
    overlap=st.floats(0, 0.9),
    block_width=st.integers(1, 300),
)
def test_column_blocks_partition_the_scene_and_hold_every_touching_tile(height, width, tile, overlap, block_width):
    grid = scene_grid(height, width, tile, overlap)
    assert grid.cols[0] == -grid.margin and grid.cols[-1] + tile == max(width + 2 * grid.margin, tile) - grid.margin
    blocks = column_blocks(grid, block_width)
    assert blocks[0].start == 0 and blocks[-1].stop == width
    assert all(a.stop == b.start for a, b in itertools.pairwise(blocks))
    for block in blocks:
        touching = tuple(c for c in grid.cols if c < block.stop and c + tile > block.start)
        assert block.tile_cols == touching
        covered = np.zeros(block.stop - block.start, dtype=bool)
        for col in block.tile_cols:
            covered[max(col, block.start) - block.start : min(col + tile, block.stop) - block.start] = True
        assert covered.all()


@FAST
@given(length=st.integers(1, 40), pad=st.integers(0, 100))
def test_reflected_reads_match_numpy_reflect_padding(length, pad):
    expected = np.pad(np.arange(length), pad, mode="reflect") if length > 1 else np.zeros(length + 2 * pad, int)
    np.testing.assert_array_equal(reflect_indices(np.arange(-pad, length + pad), length), expected)


# -- blending weights ---------------------------------------------------------------------------------
@FAST
@given(tile=st.integers(1, 160), kind=st.sampled_from(["uniform", "hann", "gaussian"]))
def test_blend_weights_are_bounded_symmetric_and_peak_in_the_centre(tile, kind):
    weights = blend_weights(tile, kind)
    assert weights.shape == (tile, tile) and weights.dtype == np.float32
    assert weights.min() >= MIN_BLEND_WEIGHT - 1e-9 and np.isclose(weights.max(), 1.0)
    for symmetric in (weights[::-1], weights[:, ::-1], weights.T):
        np.testing.assert_allclose(weights, symmetric, rtol=1e-6)
    middle = weights[tile // 2, tile // 2 :]
    assert (np.diff(middle) <= 1e-7).all()  # never rises away from the centre


class TileMean(torch.nn.Module):
    """Logits from each pixel and from the mean of its tile: every tile predicts probabilities of its own."""

    def __init__(self, bands: int, classes: int, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.pixel = torch.nn.Conv2d(bands, classes, 1)
        self.context = torch.nn.Conv2d(bands, classes, 1)
        with torch.no_grad():
            self.context.weight.mul_(20.0)

    def forward(self, x):
        return self.pixel(x) + self.context(x.mean(dim=(-2, -1), keepdim=True))


@FAST
@given(
    height=st.integers(1, 40),
    width=st.integers(1, 40),
    tile=st.integers(2, 16),
    overlap=st.floats(0, 0.9),
    kind=st.sampled_from(["uniform", "hann", "gaussian"]),
    seed=st.integers(0, 2**16),
)
def test_blending_is_the_weighted_mean_of_the_overlapping_tiles(height, width, tile, overlap, kind, seed):
    schema = get_schema("synthetic")
    rng = np.random.default_rng(seed)
    image = rng.normal(size=(3, height, width)).astype(np.float32)
    network = TileMean(3, schema.num_classes, seed)
    card = ModelCard(
        model={},
        schema=schema.to_dict(),
        normalization=Normalization((0.0,) * 3, (1.0,) * 3).to_dict(),
        bands=[1, 2, 3],
        tile_size=tile,
    )
    options = PredictOptions(overlap=overlap, blend=kind, batch_size=int(rng.integers(1, 6)))
    blended = predict_array(image, Ensemble([Member(card, network, Path("net.ckpt"))]), options).probabilities
    # Brute force over the grid the core lays out: every tile cut from the mirrored image, its softmax
    # weighted into a canvas whose origin is the grid's first tile.
    grid = scene_grid(height, width, tile, overlap)
    m, top, left = grid.margin, grid.rows[0], grid.cols[0]
    bottom, right = grid.rows[-1] + tile - height, grid.cols[-1] + tile - width
    padded = np.pad(image, ((0, 0), (m, bottom), (m, right)), mode="reflect")
    weights = blend_weights(tile, kind).astype(np.float64)
    numerator = np.zeros((schema.num_classes, *padded.shape[1:]))
    denominator = np.zeros(padded.shape[1:])
    with torch.no_grad():
        for row in grid.rows:
            for col in grid.cols:
                r, c = row - top, col - left
                window = torch.from_numpy(np.ascontiguousarray(padded[:, r : r + tile, c : c + tile]))[None]
                probabilities = torch.softmax(network(window), dim=1)[0].double().numpy()
                numerator[:, r : r + tile, c : c + tile] += weights * probabilities
                denominator[r : r + tile, c : c + tile] += weights
    expected = (numerator / denominator)[:, -top : -top + height, -left : -left + width]
    np.testing.assert_allclose(blended, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(blended.sum(axis=0), 1.0, atol=1e-5)  # still a probability distribution


# -- config parsing -----------------------------------------------------------------------------------
def user_keys(section) -> list[str]:
    """Keys as users write them: the alias where a field has one (``schema``, not ``schema_``)."""
    return sorted(field.alias or name for name, field in section.model_fields.items())


SECTIONS = {
    "train": TrainConfig,
    "model": ModelSpec,
    "data": DataConfig,
    "train.optimizer": OptimizerConfig,
    "train.scheduler": SchedulerConfig,
    "train.loss": FocalConfig,  # the default loss
    "train.augment": AugmentConfig,
    "train.sampling": SamplingConfig,
}


@st.composite
def one_typo(draw):
    section = draw(st.sampled_from(sorted(SECTIONS)))
    key = draw(st.sampled_from(user_keys(SECTIONS[section])))
    position = draw(st.integers(0, len(key) - 1))
    edit = draw(st.sampled_from(["drop", "double", "swap"]))
    if edit == "drop":
        typo = key[:position] + key[position + 1 :]
    elif edit == "double":
        typo = key[:position] + key[position] + key[position:]
    else:
        position = min(position, len(key) - 2)
        typo = key[:position] + key[position + 1] + key[position] + key[position + 2 :] if len(key) > 1 else key + key
    assume(typo and typo not in user_keys(SECTIONS[section]) and typo != key)
    return section, key, typo


@FAST
@given(case=one_typo())
def test_a_one_letter_typo_in_any_key_names_the_right_key(case):
    section, key, typo = case
    data = {"data": {"root": "."}}
    set_dotted(data, f"{section}.{typo}", 1)
    with pytest.raises(ConfigError) as error:
        parse_config(data, source="experiment.yaml")
    message = str(error.value)
    assert message.startswith("experiment.yaml: ") and "\n" not in message
    assert f"unknown key {typo!r}; did you mean {key!r}?" in message


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(st.characters(codec="ascii", categories=["L", "N"]), max_size=8),
)


@FAST
@given(path=st.lists(st.from_regex(r"[a-z][a-z_]{0,7}", fullmatch=True), min_size=1, max_size=4), value=json_scalars)
def test_set_dotted_puts_the_value_at_its_path(path, value):
    data = {}
    set_dotted(data, *parse_assignment(".".join(path) + "=" + json.dumps(value)))
    node = data
    for part in path[:-1]:
        node = node[part]
    assert node[path[-1]] == value


json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=6,
)


@FAST
@given(section=st.sampled_from(sorted(SECTIONS)), data=st.data(), value=json_values)
def test_any_value_for_any_key_parses_or_is_a_config_error(section, data, value):
    """Never a traceback: whatever a YAML file holds, parsing gives a config or a one-line ConfigError."""
    key = data.draw(st.sampled_from(user_keys(SECTIONS[section])))
    config = {"data": {"root": "."}}
    set_dotted(config, f"{section}.{key}", value)
    try:
        parse_config(config, source="experiment.yaml")
    except ConfigError as exc:
        assert "\n" not in str(exc)
