"""A class map as ``landseg change`` reads it: its schema, how its values become class indices, and
the confidence raster that may go with it.

landseg's own class COGs carry their schema as the tag ``landseg_schema`` and hold class indices; any
other single-band integer raster needs ``--schema`` and holds the schema's codes. Two schemas that
differ are compared through a class map (YAML, BEFORE's class names to AFTER's), which recodes BEFORE
into AFTER's classes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from landseg.classes import IGNORE_INDEX, ClassSchema, get_schema
from landseg.errors import ConfigError, DataError
from landseg.io.raster import open_raster

SCHEMA_TAG = "landseg_schema"
UNKNOWN = 254
"""Lookup result of a value the schema does not define (class indices stay below it)."""
MAX_CLASSES = 15
"""From-to codes ``from * K + to`` fit in one byte below the no-data value 255 only up to 15 classes."""
CONFIDENCE_STEPS = 254
"""Confidence is compared in predict's uint8 steps: 0..254 for probabilities 0..1."""


@dataclass
class ClassMap:
    path: Path
    schema: ClassSchema
    codes: np.ndarray
    """Sorted values that mean a class or no-data; ``indices[i]`` is what ``codes[i]`` becomes."""
    indices: np.ndarray
    from_tag: bool

    def to_index(self, values: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Raw values to uint8 class indices, ``IGNORE_INDEX`` where not ``valid`` or ignored.

        A value the schema does not define raises ``DataError`` naming the file and the values."""
        if values.dtype in (np.uint8, np.uint16):  # one table lookup per pixel
            index = self._table(np.iinfo(values.dtype).max + 1)[values]
        else:
            flat = values.ravel()
            position = np.clip(np.searchsorted(self.codes, flat), 0, len(self.codes) - 1)
            known = self.codes[position] == flat
            index = np.where(known, self.indices[position], UNKNOWN).astype(np.uint8).reshape(values.shape)
        index[~valid] = IGNORE_INDEX
        bad = index == UNKNOWN
        if bad.any():
            found, counts = np.unique(values[bad], return_counts=True)
            shown = ", ".join(f"{v} ({n} px)" for v, n in list(zip(found.tolist(), counts.tolist(), strict=False))[:10])
            raise DataError(
                f"class map holds values that schema {self.schema.name!r} does not define: {shown}", self.path
            )
        return index

    def _table(self, size: int) -> np.ndarray:
        table = np.full(size, UNKNOWN, dtype=np.uint8)
        inside = (self.codes >= 0) & (self.codes < size)
        table[self.codes[inside]] = self.indices[inside]
        return table

    def recode(self, mapping: np.ndarray) -> None:
        """Send class index ``i`` to ``mapping[i]`` (a class map onto another schema)."""
        keep = self.indices < len(mapping)
        self.indices = np.where(keep, mapping[np.minimum(self.indices, len(mapping) - 1)], self.indices)


def open_class_map(path: str | Path, schema: str | Path | None = None) -> ClassMap:
    """Check that ``path`` is a one-band integer raster and find its schema (tag, else ``schema``)."""
    path = Path(path)
    with open_raster(path) as source:
        if source.count != 1:
            raise DataError(
                f"has {source.count} bands; a class map has one band of class codes "
                "(give --checkpoint to predict images first)",
                path,
            )
        if not np.issubdtype(np.dtype(source.dtypes[0]), np.integer):
            raise DataError(f"holds {source.dtypes[0]} values; a class map holds integer class codes", path)
        tag = source.tags().get(SCHEMA_TAG)
    if tag is not None and schema is None:
        try:
            found = ClassSchema.from_dict(json.loads(tag), source=str(path))
        except ValueError as exc:
            raise DataError(f"its {SCHEMA_TAG} tag is not a class schema ({exc})", path) from None
        codes = np.arange(found.num_classes)
        return ClassMap(path, found, codes, codes.astype(np.uint8), from_tag=True)
    if schema is None:
        raise ConfigError("carries no landseg class schema; give --schema NAME or a schema YAML file", path)
    found = get_schema(schema)
    if not found.has_codes:
        raise ConfigError(f"schema {found.name!r} defines mask colours, not codes; a class map needs codes")
    pairs = [(c.code, i) for i, c in enumerate(found.classes)] + [(c, IGNORE_INDEX) for c in found.ignore_codes]
    pairs.sort()
    codes = np.array([c for c, _ in pairs], dtype=np.int64)
    return ClassMap(path, found, codes, np.array([i for _, i in pairs], dtype=np.uint8), from_tag=False)


def reconcile(before: ClassMap, after: ClassMap, class_map: str | Path | None) -> None:
    """Make BEFORE speak AFTER's classes: same schema as is, or through ``class_map`` (YAML from→to).

    The comparison then counts in AFTER's schema, which must have at most ``MAX_CLASSES`` classes."""
    if after.schema.num_classes > MAX_CLASSES:
        raise ConfigError(
            f"schema {after.schema.name!r} has {after.schema.num_classes} classes; change maps "
            f"support at most {MAX_CLASSES} (one-byte from-to codes)",
            after.path,
        )
    if before.schema.names == after.schema.names:
        if class_map is not None:
            _read_class_map(class_map)  # still checked, so a typo never goes unnoticed
        return
    if class_map is None:
        raise ConfigError(
            f"the dates use different schemas ({before.schema.name!r}: {', '.join(before.schema.names)}; "
            f"{after.schema.name!r}: {', '.join(after.schema.names)}); give --class-map FILE "
            "(YAML: BEFORE class name: AFTER class name)",
            after.path,
        )
    mapping = _read_class_map(class_map)
    targets = {name: i for i, name in enumerate(after.schema.names)}
    result = []
    for name in before.schema.names:
        target = mapping.get(name, name if name in targets else None)
        if target is None:
            raise ConfigError(f"does not say which AFTER class BEFORE's {name!r} becomes", class_map)
        if target not in targets:
            raise ConfigError(
                f"maps {name!r} to {target!r}, which AFTER's schema {after.schema.name!r} lacks "
                f"(it has {', '.join(after.schema.names)})",
                class_map,
            )
        result.append(targets[target])
    unknown = sorted(set(mapping) - set(before.schema.names))
    if unknown:
        raise ConfigError(
            f"names classes BEFORE's schema {before.schema.name!r} lacks: {', '.join(unknown)}", class_map
        )
    before.recode(np.array(result, dtype=np.uint8))


def _read_class_map(path: str | Path) -> dict[str, str]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        problem = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"cannot read class map: {problem}", path) from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ConfigError("class map must be a YAML mapping of BEFORE class names to AFTER class names", path)
    return {str(k): v for k, v in data.items()}


@dataclass
class ConfidenceRaster:
    path: Path
    scale: float
    offset: float
    nodata: float | None

    def to_steps(self, values: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Raw values to confidence steps 0..254 (uint8); no-data counts as no confidence (0)."""
        confidence = values.astype(np.float64) * self.scale + self.offset
        steps = np.clip(np.rint(confidence * CONFIDENCE_STEPS), 0, CONFIDENCE_STEPS).astype(np.uint8)
        steps[~valid] = 0
        return steps


def open_confidence(path: str | Path, class_map_path: Path) -> ConfidenceRaster:
    """A confidence raster on its class map's grid: predict's uint8 COG (scale 1/254) or floats in 0..1."""
    path = Path(path)
    with open_raster(path) as source, open_raster(class_map_path) as classes:
        if source.count != 1:
            raise DataError(f"has {source.count} bands; a confidence raster has one", path)
        if (source.crs, source.transform, source.shape) != (classes.crs, classes.transform, classes.shape):
            raise DataError(f"is not on the grid of its class map {class_map_path.name}", path)
        scale, offset = float(source.scales[0] or 1.0), float(source.offsets[0] or 0.0)
        if source.dtypes[0] == "uint8" and scale == 1.0:
            scale = 1.0 / CONFIDENCE_STEPS  # predict's encoding without the band scale
        return ConfidenceRaster(path, scale, offset, source.nodata)
