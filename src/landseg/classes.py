"""Class schemas: names, display colours, source codes or mask colours, and what to ignore.

One ``ClassSchema`` flows from reading masks (``decode``) to colouring predictions (``colorize``) and
labelling reports, so a class is named and coloured the same everywhere.

Masks come in two kinds:
- *code* masks: one band whose values are class codes (``0..K-1``, or e.g. 10/30/50 in s2_korea);
- *colour* masks: RGB images where each class has a colour (DeepGlobe, Dubai).
Both decode to an index mask: ``uint8`` values ``0..K-1`` and ``IGNORE_INDEX`` for pixels that carry no
label (no-data codes, ignore colours, and, when asked for, values the schema does not know).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np
import yaml

from landseg.errors import ConfigError, DataError

IGNORE_INDEX = 255
RGB = tuple[int, int, int]
UnknownPolicy = Literal["error", "ignore"]


def parse_color(value: str | Iterable[int]) -> RGB:
    """``"#3C1098"`` or ``[60, 16, 152]`` to an RGB tuple."""
    if isinstance(value, str):
        text = value.strip().lstrip("#")
        if len(text) != 6:
            raise ConfigError(f"colour {value!r} is not #RRGGBB")
        try:
            return (int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16))
        except ValueError:
            raise ConfigError(f"colour {value!r} is not #RRGGBB") from None
    rgb = tuple(int(v) for v in value)
    if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
        raise ConfigError(f"colour {value!r} is not three values in 0..255")
    return rgb


def color_hex(rgb: RGB) -> str:
    return "#{:02X}{:02X}{:02X}".format(*rgb)


@dataclass(frozen=True)
class LandClass:
    name: str
    color: RGB
    """Display colour for maps, legends and reports."""
    code: int | None = None
    """Value of this class in code masks."""
    mask_color: RGB | None = None
    """Colour of this class in RGB masks."""


@dataclass(frozen=True)
class ClassSchema:
    name: str
    classes: tuple[LandClass, ...]
    ignore_codes: tuple[int, ...] = ()
    ignore_colors: tuple[RGB, ...] = ()
    description: str = ""

    def __post_init__(self):
        if not self.classes:
            raise ConfigError(f"class schema {self.name!r} has no classes")
        if len(self.classes) >= IGNORE_INDEX:
            raise ConfigError(f"class schema {self.name!r} has {len(self.classes)} classes; at most 254")
        names = [c.name for c in self.classes]
        if len(set(names)) != len(names):
            raise ConfigError(f"class schema {self.name!r} repeats a class name: {names}")
        codes = [c.code for c in self.classes if c.code is not None]
        if len(set(codes)) != len(codes) or set(codes) & set(self.ignore_codes):
            raise ConfigError(f"class schema {self.name!r}: codes must be unique and not ignored")
        colors = [c.mask_color for c in self.classes if c.mask_color is not None]
        if len(set(colors)) != len(colors) or set(colors) & set(self.ignore_colors):
            raise ConfigError(f"class schema {self.name!r}: mask colours must be unique and not ignored")

    # -- basic views -------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def palette(self) -> np.ndarray:
        """``(K, 3) uint8`` display colours, row ``i`` for class index ``i``."""
        return np.array([c.color for c in self.classes], dtype=np.uint8)

    @property
    def has_codes(self) -> bool:
        return all(c.code is not None for c in self.classes)

    @property
    def has_mask_colors(self) -> bool:
        return all(c.mask_color is not None for c in self.classes)

    # -- decoding masks ----------------------------------------------------------------------------
    def decode(self, mask: np.ndarray, *, unknown: UnknownPolicy = "error", source: str | None = None) -> np.ndarray:
        """Raw mask (``H x W`` codes or ``H x W x 3`` colours) to a ``uint8`` index mask.

        Unknown values raise ``DataError`` naming ``source`` and listing the values with pixel counts,
        or become ``IGNORE_INDEX`` with ``unknown="ignore"``.
        """
        if mask.ndim == 3 and mask.shape[-1] in (3, 4):
            return self.decode_colors(mask[..., :3], unknown=unknown, source=source)
        if mask.ndim == 3 and mask.shape[-1] == 1:
            mask = mask[..., 0]
        if mask.ndim != 2:
            raise DataError(f"mask has shape {mask.shape}; expected H x W codes or H x W x 3 colours", source)
        return self.decode_codes(mask, unknown=unknown, source=source)

    def decode_codes(
        self, mask: np.ndarray, *, unknown: UnknownPolicy = "error", source: str | None = None
    ) -> np.ndarray:
        if not self.has_codes:
            raise DataError(f"mask has one band, but schema {self.name!r} defines colours, not codes", source)
        if not np.issubdtype(mask.dtype, np.integer):
            if not np.all(np.isfinite(mask)) or not np.all(mask == np.round(mask)):
                bad = mask[~np.isfinite(mask) | (mask != np.round(mask))]
                raise DataError(f"mask holds non-integer values, e.g. {bad[:5].tolist()}", source)
            mask = mask.astype(np.int64)
        values, inverse, counts = np.unique(mask, return_inverse=True, return_counts=True)
        code_to_index = {c.code: i for i, c in enumerate(self.classes)}
        mapped = np.full(len(values), IGNORE_INDEX, dtype=np.uint8)
        unknown_values = []
        for j, value in enumerate(values.tolist()):
            if value in code_to_index:
                mapped[j] = code_to_index[value]
            elif value not in self.ignore_codes:
                unknown_values.append((value, int(counts[j])))
        if unknown_values and unknown == "error":
            raise DataError(self._unknown_message("codes", unknown_values), source)
        return mapped[inverse.reshape(mask.shape)]

    def decode_colors(
        self, rgb: np.ndarray, *, unknown: UnknownPolicy = "error", source: str | None = None
    ) -> np.ndarray:
        if not self.has_mask_colors:
            raise DataError(f"mask is RGB, but schema {self.name!r} defines codes, not colours", source)
        if rgb.dtype != np.uint8:
            raise DataError(f"RGB mask has dtype {rgb.dtype}; expected uint8 colours", source)
        packed = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
        values, inverse, counts = np.unique(packed, return_inverse=True, return_counts=True)
        color_to_index = {_pack(c.mask_color): i for i, c in enumerate(self.classes)}  # type: ignore[arg-type]
        ignored = {_pack(c) for c in self.ignore_colors}
        mapped = np.full(len(values), IGNORE_INDEX, dtype=np.uint8)
        unknown_values = []
        for j, value in enumerate(values.tolist()):
            if value in color_to_index:
                mapped[j] = color_to_index[value]
            elif value not in ignored:
                unknown_values.append((color_hex(_unpack(value)), int(counts[j])))
        if unknown_values and unknown == "error":
            raise DataError(self._unknown_message("colours", unknown_values), source)
        return mapped[inverse.reshape(packed.shape)]

    def _unknown_message(self, kind: str, values: list[tuple]) -> str:
        values = sorted(values, key=lambda v: -v[1])
        shown = ", ".join(f"{v} ({n} px)" for v, n in values[:10])
        more = f" and {len(values) - 10} more" if len(values) > 10 else ""
        return (
            f"mask has {kind} that schema {self.name!r} does not define: {shown}{more}; "
            f"add them to the schema or set data.unknown_labels: ignore"
        )

    # -- colouring ---------------------------------------------------------------------------------
    def colorize(self, index: np.ndarray, ignore_color: RGB = (0, 0, 0)) -> np.ndarray:
        """``uint8`` index mask to an ``H x W x 3`` RGB image in display colours."""
        lut = np.zeros((256, 3), dtype=np.uint8)
        lut[:] = ignore_color
        lut[: self.num_classes] = self.palette
        return lut[index.astype(np.uint8)]

    def plot_colors(self) -> list[tuple[float, float, float]]:
        """The class colours as matplotlib takes them (RGB in 0-1), in class order."""
        return [(r / 255, g / 255, b / 255) for r, g, b in (c.color for c in self.classes)]

    def colormap(self) -> dict[int, tuple[int, int, int, int]]:
        """GDAL colour table for an index raster (class index to RGBA; ignore transparent)."""
        table = {i: (*c.color, 255) for i, c in enumerate(self.classes)}
        table[IGNORE_INDEX] = (0, 0, 0, 0)
        return table

    # -- (de)serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        classes = []
        for c in self.classes:
            entry: dict = {"name": c.name, "color": color_hex(c.color)}
            if c.code is not None:
                entry["code"] = c.code
            if c.mask_color is not None:
                entry["mask_color"] = color_hex(c.mask_color)
            classes.append(entry)
        return {
            "name": self.name,
            "description": self.description,
            "classes": classes,
            "ignore_codes": list(self.ignore_codes),
            "ignore_colors": [color_hex(c) for c in self.ignore_colors],
        }

    @classmethod
    def from_dict(cls, data: dict, source: str | None = None) -> ClassSchema:
        allowed = {"name", "description", "classes", "ignore_codes", "ignore_colors"}
        extra = set(data) - allowed
        if extra:
            raise ConfigError(f"class schema has unknown keys {sorted(extra)}; allowed: {sorted(allowed)}", source)
        try:
            classes = tuple(
                LandClass(
                    name=str(c["name"]),
                    color=parse_color(c["color"]),
                    code=None if c.get("code") is None else int(c["code"]),
                    mask_color=None if c.get("mask_color") is None else parse_color(c["mask_color"]),
                )
                for c in data["classes"]
            )
            return cls(
                name=str(data.get("name", "custom")),
                classes=classes,
                ignore_codes=tuple(int(v) for v in data.get("ignore_codes", ())),
                ignore_colors=tuple(parse_color(v) for v in data.get("ignore_colors", ())),
                description=str(data.get("description", "")),
            )
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"class schema is malformed: missing or wrong field {exc}", source) from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> ClassSchema:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            problem = (str(exc).splitlines() or [type(exc).__name__])[0]  # YAML errors span lines
            raise ConfigError(f"cannot read class schema: {problem}", path) from None
        if not isinstance(data, dict):
            raise ConfigError("class schema must be a mapping with a 'classes' list", path)
        return cls.from_dict(data, source=str(path))


def _pack(rgb: RGB) -> int:
    return (rgb[0] << 16) | (rgb[1] << 8) | rgb[2]


def _unpack(value: int) -> RGB:
    return ((value >> 16) & 255, (value >> 8) & 255, value & 255)


# -- built-in schemas ------------------------------------------------------------------------------
# Each lives in landseg/schemas/NAME.yaml, in the same format a user writes for their own data.
def _load_builtin_schemas() -> dict[str, ClassSchema]:
    folder = resources.files("landseg") / "schemas"
    schemas = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            schema = ClassSchema.from_dict(yaml.safe_load(entry.read_text()), source=entry.name)
            schemas[schema.name] = schema
    return schemas


BUILTIN_SCHEMAS: dict[str, ClassSchema] = _load_builtin_schemas()


def get_schema(name_or_path: str | Path | dict | ClassSchema) -> ClassSchema:
    """A built-in schema by name, a user schema from a YAML file, or an inline mapping."""
    if isinstance(name_or_path, ClassSchema):
        return name_or_path
    if isinstance(name_or_path, dict):
        return ClassSchema.from_dict(name_or_path)
    key = str(name_or_path)
    if key in BUILTIN_SCHEMAS:
        return BUILTIN_SCHEMAS[key]
    path = Path(key)
    if path.suffix.lower() in (".yaml", ".yml") or path.exists():
        return ClassSchema.from_yaml(path)
    import difflib

    close = difflib.get_close_matches(key, BUILTIN_SCHEMAS, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"unknown class schema {key!r}; built-in: {', '.join(BUILTIN_SCHEMAS)}.{hint}")
