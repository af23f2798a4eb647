"""The zoo registry: entries describe their models, and ``load_zoo_model`` gives a checkpoint-like model."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from landseg.checkpoint import LoadedModel, ModelCard
from landseg.classes import ClassSchema
from landseg.errors import ConfigError
from landseg.models import ModelSpec
from landseg.normalization import DynamicWorldNormalization
from landseg.zoo import get_zoo_model, list_zoo_models, load_zoo_model

DW_COLOURS = ["#419BDF", "#397D49", "#88B053", "#7A87C6", "#E49635", "#DFC35A", "#C4281B", "#A59B8F", "#B39FE1"]


@pytest.fixture(scope="module")
def loaded() -> LoadedModel:
    return load_zoo_model("dynamic-world")


def test_the_list_describes_dynamic_world():
    (entry,) = [m for m in list_zoo_models() if m.name == "dynamic-world"]
    assert entry.band_names == ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B11", "B12")
    assert entry.bands == (2, 3, 4, 5, 6, 7, 8, 12, 13)
    assert entry.resolution_m == 10.0 and "L1C" in entry.sensor
    assert [c.color for c in entry.classes] == DW_COLOURS and [c.code for c in entry.classes] == list(range(9))
    assert entry.licence.startswith("Apache-2.0") and "10.1038/s41597-022-01307-4" in entry.citation
    assert 0.5e6 < entry.size_bytes < 2e6


def test_card_is_a_model_card_like_a_trained_checkpoints(loaded):
    card = loaded.card
    assert ModelCard.from_dict(json.loads(json.dumps(card.to_dict()))) == card
    schema = card.class_schema()
    assert isinstance(schema, ClassSchema) and schema.name == "dynamic_world" and schema.num_classes == 9
    assert isinstance(card.input_normalization(), DynamicWorldNormalization)
    assert card.normalization["kind"] == "dynamic_world"
    assert card.bands == [2, 3, 4, 5, 6, 7, 8, 12, 13] and card.band_names[-1] == "B12"
    assert card.input_scale == 1.0 and card.tile_size % 2 == 0
    assert card.training["licence"].startswith("Apache-2.0")
    assert loaded.path.name == "dynamic_world.safetensors" and loaded.path.is_file()


def test_card_model_cannot_be_built_as_a_model_spec(loaded):
    assert loaded.card.model["arch"] == "dynamic_world"
    with pytest.raises(ConfigError):
        ModelSpec.from_dict(loaded.card.model)


def test_unknown_names_list_the_available_models():
    with pytest.raises(
        ConfigError, match=r"unknown zoo model 'dynamicworld'; available: cloud-shadow, .*dynamic-world"
    ):
        load_zoo_model("dynamicworld")
    assert get_zoo_model("Dynamic_World").name == "dynamic-world"


def test_listing_loads_no_torch():
    code = "import sys, landseg.zoo as z; z.list_zoo_models(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
