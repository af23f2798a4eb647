"""The chip index: one row per candidate chip, kept or not, as CSV or Parquet.

A row says where the chip comes from (scene, source files, pixel window, map bounds and CRS), what is in
it (share of valid labelled pixels, pixels per class) and what became of it (``kept`` with the paths of
the written image and mask, ``dropped`` with the filter rule, or ``quarantined`` with the read error).
Class columns are named ``px:<class name>`` in schema order.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from landseg.errors import ConfigError, DataError
from landseg.io.write import atomic_output

CLASS_PREFIX = "px:"
INDEX_STEM = "chips"


@dataclass
class ChipRecord:
    chip: str
    scene: str
    source_image: str
    source_label: str
    col_off: int
    row_off: int
    width: int
    height: int
    crs: str
    left: float
    bottom: float
    right: float
    top: float
    valid_fraction: float
    ignored: int
    status: str
    """``kept``, ``dropped`` or ``quarantined``."""
    reason: str
    image: str
    """Chip image path relative to the output folder (kept chips only)."""
    mask: str
    counts: np.ndarray
    """``(K,)`` pixels per class index."""

    @property
    def kept(self) -> bool:
        return self.status == "kept"

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return self.left, self.bottom, self.right, self.top


_SCALAR_FIELDS = [f for f in fields(ChipRecord) if f.name != "counts"]
_CASTS = {"int": int, "float": float, "str": str}


def index_path(folder: Path, kind: str = "csv") -> Path:
    return Path(folder) / f"{INDEX_STEM}.{kind}"


def find_index(folder: Path) -> Path:
    for kind in ("csv", "parquet"):
        if index_path(folder, kind).is_file():
            return index_path(folder, kind)
    raise DataError("holds no chip index (chips.csv or chips.parquet); run `landseg prepare tile` first", folder)


def _rows(records: list[ChipRecord], class_names: list[str]) -> tuple[list[str], list[list]]:
    header = [f.name for f in _SCALAR_FIELDS] + [CLASS_PREFIX + name for name in class_names]
    rows = [[getattr(r, f.name) for f in _SCALAR_FIELDS] + [int(v) for v in r.counts] for r in records]
    return header, rows


def write_index(records: list[ChipRecord], path: Path, class_names: list[str]) -> Path:
    header, rows = _rows(records, class_names)
    path = Path(path)
    with atomic_output(path) as temporary:
        if path.suffix == ".parquet":
            pa, pq = _pyarrow()
            columns = {name: [row[i] for row in rows] for i, name in enumerate(header)}
            pq.write_table(pa.table(columns), temporary)
        else:
            with open(temporary, "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(header)
                writer.writerows(rows)
    return path


def read_index(path: Path) -> tuple[list[ChipRecord], list[str]]:
    """Records and class names of a chip index written by ``write_index``."""
    path = Path(path)
    rows: list[Sequence[Any]]  # strings from CSV, typed values from parquet
    try:
        if path.suffix == ".parquet":
            _, pq = _pyarrow()
            table = pq.read_table(path).to_pydict()
            header = list(table)
            rows = list(zip(*table.values(), strict=False))
        else:
            with open(path, newline="") as handle:
                reader = csv.reader(handle)
                header = next(reader)
                rows = list(reader)
    except (OSError, StopIteration) as exc:
        raise DataError(f"cannot read chip index ({exc})", path) from None
    class_columns = [i for i, name in enumerate(header) if name.startswith(CLASS_PREFIX)]
    class_names = [header[i][len(CLASS_PREFIX) :] for i in class_columns]
    positions = {name: i for i, name in enumerate(header)}
    missing = [f.name for f in _SCALAR_FIELDS if f.name not in positions]
    if missing:
        raise DataError(f"chip index lacks columns {missing}", path)
    records = []
    for row in rows:
        values = {f.name: _cast(f.type, row[positions[f.name]]) for f in _SCALAR_FIELDS}
        counts = np.array([int(row[i]) for i in class_columns], dtype=np.int64)
        records.append(ChipRecord(**values, counts=counts))
    return records, class_names


def _cast(kind, value):
    cast = _CASTS.get(kind if isinstance(kind, str) else kind.__name__, str)
    return "" if cast is str and value is None else cast(value)


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError("tiling.index: parquet needs pyarrow (pip install pyarrow); or use index: csv") from None
    return pa, pq
