import numpy as np
import pytest

from landseg.classes import BUILTIN_SCHEMAS, IGNORE_INDEX, ClassSchema, get_schema, parse_color
from landseg.errors import ConfigError, DataError


def test_dubai_decodes_the_true_mask_colours_and_ignores_unlabelled():
    schema = get_schema("dubai")
    rgb = np.array(
        [
            [[0x3C, 0x10, 0x98], [0x84, 0x29, 0xF6], [0x6E, 0xC1, 0xE4]],
            [[0xFE, 0xDD, 0x3A], [0xE2, 0xA9, 0x29], [0x9B, 0x9B, 0x9B]],
            [[0, 0, 0], [0x3C, 0x10, 0x98], [0xE2, 0xA9, 0x29]],
        ],
        dtype=np.uint8,
    )
    index = schema.decode(rgb)
    assert index.tolist() == [[0, 1, 2], [3, 4, IGNORE_INDEX], [IGNORE_INDEX, 0, 4]]
    assert schema.names == ["Building", "Land", "Road", "Vegetation", "Water"]


def test_unknown_colours_are_listed_with_pixel_counts():
    schema = get_schema("dubai")
    rgb = np.zeros((4, 4, 3), dtype=np.uint8)
    rgb[0, :3] = (0x50, 0xE3, 0xC2)  # a classes.json colour that no mask uses
    rgb[1, 0] = (1, 2, 3)
    with pytest.raises(DataError) as info:
        schema.decode(rgb, source="tile_1/masks/x.png")
    message = str(info.value)
    assert "tile_1/masks/x.png" in message
    assert "#50E3C2 (3 px)" in message and "#010203 (1 px)" in message
    decoded = schema.decode(rgb, unknown="ignore")
    assert (decoded == IGNORE_INDEX).all()


def test_codes_are_remapped_to_indices():
    schema = get_schema("s2_korea")
    codes = np.array([[10, 30, 50], [70, 100, 10]], dtype=np.uint8)
    assert schema.decode(codes).tolist() == [[0, 1, 2], [3, 4, 0]]
    with pytest.raises(DataError, match=r"20 \(2 px\)"):
        schema.decode(np.array([[20, 20, 10]], dtype=np.uint8))


def test_no_data_code_becomes_ignore():
    schema = get_schema("catalonia")
    index = schema.decode(np.array([[0, 1, 12]], dtype=np.uint16))
    assert index.tolist() == [[IGNORE_INDEX, 0, 11]]


def test_float_codes_must_be_integral():
    schema = get_schema("alpine")
    assert schema.decode(np.array([[0.0, 7.0]], dtype=np.float32)).tolist() == [[0, 7]]
    with pytest.raises(DataError, match="non-integer"):
        schema.decode(np.array([[0.5, np.nan]], dtype=np.float32))


def test_colour_schema_refuses_code_masks_and_vice_versa():
    with pytest.raises(DataError, match="defines colours"):
        get_schema("deepglobe").decode(np.zeros((2, 2), dtype=np.uint8))
    with pytest.raises(DataError, match="defines codes"):
        get_schema("alpine").decode(np.zeros((2, 2, 3), dtype=np.uint8))


def test_colorize_uses_display_palette_and_black_for_ignore():
    schema = get_schema("synthetic")
    index = np.array([[0, 4, IGNORE_INDEX]], dtype=np.uint8)
    rgb = schema.colorize(index)
    assert rgb[0, 0].tolist() == list(schema.classes[0].color)
    assert rgb[0, 1].tolist() == list(schema.classes[4].color)
    assert rgb[0, 2].tolist() == [0, 0, 0]
    assert schema.colormap()[IGNORE_INDEX][3] == 0


@pytest.mark.parametrize("name", sorted(BUILTIN_SCHEMAS))
def test_builtin_schemas_round_trip_through_dict(name):
    schema = BUILTIN_SCHEMAS[name]
    again = ClassSchema.from_dict(schema.to_dict())
    assert again == schema


def test_seed_class_counts():
    counts = {name: s.num_classes for name, s in BUILTIN_SCHEMAS.items()}
    assert counts["deepglobe"] == 6  # 7 colours, Unknown ignored
    assert counts["alpine"] == 8
    assert counts["catalonia"] == 12
    assert counts["landcoverai"] == 5
    assert counts["s2_korea"] == 5


def test_user_schema_from_yaml(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(
        "name: mine\nclasses:\n  - {name: crop, color: '#00ff00', code: 3}\n  - {name: town, color: [200, 0, 0], code: 9}\n"
        "ignore_codes: [0]\n"
    )
    schema = get_schema(str(path))
    assert schema.decode(np.array([[0, 3, 9]])).tolist() == [[IGNORE_INDEX, 0, 1]]
    assert schema.classes[1].color == (200, 0, 0)


def test_bad_schemas_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="Did you mean 'dubai'"):
        get_schema("dubia")
    with pytest.raises(ConfigError, match="#RRGGBB"):
        parse_color("#12345")
    path = tmp_path / "dup.yaml"
    path.write_text("classes:\n  - {name: a, color: '#000000', code: 1}\n  - {name: b, color: '#000001', code: 1}\n")
    with pytest.raises(ConfigError, match="unique"):
        get_schema(str(path))
