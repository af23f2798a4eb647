"""The sampling design as ``sample`` records it and ``assess`` needs it: the strata, their pixel counts
and ground areas (recorded when drawing), sample sizes and inclusion probabilities.

The file is plain JSON, so a sample drawn elsewhere can be described by hand; the least it needs::

    {"method": "stratified", "strata": [{"value": 1, "pixels": 200000, "sample_size": 75}, ...]}

``strata_source`` is ``"map"`` (the strata are the map's values, the default) or the path of the
stratification raster; ``method`` is ``stratified``, ``simple`` or ``systematic`` (the last two have one
stratum, value 0, covering every valid pixel of the map).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from landseg.errors import ConfigError
from landseg.io.write import atomic_output

METHODS = ("stratified", "simple", "systematic")
ALL_PIXELS = 0
"""The one stratum of a simple random or systematic sample."""


@dataclass(frozen=True)
class Stratum:
    value: int
    pixels: int
    sample_size: int
    area_m2: float | None = None
    name: str | None = None

    @property
    def inclusion_probability(self) -> float:
        return self.sample_size / self.pixels if self.pixels else 0.0


@dataclass
class SampleDesign:
    method: str
    strata: list[Stratum]
    strata_source: str = "map"
    map: dict = field(default_factory=dict)
    """The map's path and grid (CRS WKT, transform, width, height) when drawn by ``sample``."""
    area_method: str | None = None
    details: dict = field(default_factory=dict)
    """How the sample was drawn: seed, allocation, size rule, spacing; for the record."""

    def stratum(self, value: int) -> Stratum | None:
        return next((s for s in self.strata if s.value == value), None)

    def to_dict(self) -> dict:
        strata = []
        for s in self.strata:
            entry = asdict(s)
            entry["inclusion_probability"] = s.inclusion_probability
            strata.append(entry)
        return {
            "kind": "landseg sample design",
            "version": 1,
            "method": self.method,
            "strata_source": self.strata_source,
            "map": self.map,
            "area_method": self.area_method,
            "total_pixels": sum(s.pixels for s in self.strata),
            "total_area_m2": None
            if any(s.area_m2 is None for s in self.strata)
            else sum(s.area_m2 for s in self.strata),
            "strata": strata,
            "details": self.details,
        }

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        with atomic_output(path) as temporary:
            temporary.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
        return path


def read_design(path: str | Path) -> SampleDesign:
    """A design JSON file; ``ConfigError`` naming the file and what is wrong with it."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the design ({exc.strerror})", path) from None
    except ValueError as exc:
        raise ConfigError(f"the design is not JSON ({exc})", path) from None
    if not isinstance(data, dict):
        raise ConfigError("the design must be a JSON object with 'method' and 'strata'", path)
    method = data.get("method")
    if method not in METHODS:
        raise ConfigError(f"'method' must be one of {', '.join(METHODS)}, got {method!r}", path)
    rows = data.get("strata")
    if not isinstance(rows, list) or not rows:
        raise ConfigError("'strata' must be a non-empty list of {value, pixels, sample_size}", path)
    strata = []
    for row in rows:
        try:
            area = row.get("area_m2")
            strata.append(
                Stratum(
                    value=int(row["value"]),
                    pixels=int(row["pixels"]),
                    sample_size=int(row["sample_size"]),
                    area_m2=None if area is None else float(area),
                    name=row.get("name"),
                )
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ConfigError(f"a stratum needs integer 'value', 'pixels' and 'sample_size': {row!r}", path) from None
    values = [s.value for s in strata]
    if len(set(values)) != len(values):
        raise ConfigError(f"a stratum value is listed twice: {values}", path)
    if method != "stratified" and len(strata) != 1:
        raise ConfigError(f"a {method} sample has one stratum, the design lists {len(strata)}", path)
    return SampleDesign(
        method=method,
        strata=strata,
        strata_source=str(data.get("strata_source", "map")),
        map=data.get("map") or {},
        area_method=data.get("area_method"),
        details=data.get("details") or {},
    )
