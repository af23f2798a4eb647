"""Polygons per class from a class raster, strip by strip, merged across strip borders.

``rasterio.features.shapes`` traces the 4-connected regions of each strip in pixel coordinates, where
vertices are whole numbers and pieces of one region meet exactly along the strip border. Pieces that
touch the border are joined with ``shapely.union_all`` to the open pieces of the strip above; a polygon
that does not reach the next strip is finished and written straight away, so only the polygons crossing
the current border are held in memory, never the whole raster or all its polygons.

Output: GeoPackage or GeoJSON, both written by GDAL through ``pyogrio.raw.write_arrow``, which takes
the features as a stream of Arrow record batches: one GDAL dataset is open for the whole write and each
batch is written as it is traced, so neither format is held in memory. A GeoPackage keeps the raster's
CRS; a GeoJSON follows RFC 7946 (GDAL's ``RFC7946=YES``: WGS 84 longitude and latitude, no ``crs``
member), except for a map that is not on Earth at all (a plain photo), whose polygons stay in pixel
column and row. Each polygon has the class index, name and display colour, its pixel count and, where
the grid has a ground size, its area in m² and ha: its pixel count times the ground area of a pixel
centred on its centroid (``maps.areas``: exact where pixel areas are constant, and otherwise correct to
first order, as areas change smoothly across a polygon). ``simplify`` is a Douglas-Peucker
tolerance in pixels applied to each polygon on its own (neighbours may then no longer share their border
exactly); tolerance 0 only drops the straight-line vertices the merge leaves.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from rasterio import features

from landseg.classes import IGNORE_INDEX, ClassSchema, color_hex
from landseg.errors import ConfigError
from landseg.io.georef import Georeference, open_without_grid_warning
from landseg.io.write import atomic_output
from landseg.maps.areas import SQUARE_METRES_PER_HECTARE, PixelAreas

VECTOR_FORMATS = {"gpkg": ".gpkg", "geojson": ".geojson"}
GDAL_DRIVERS = {"gpkg": "GPKG", "geojson": "GeoJSON"}
DEFAULT_STRIP = 1024
LAYER = "landcover"


def _shapely():
    try:
        import shapely
        import shapely.affinity
        import shapely.geometry
    except ImportError:  # pragma: no cover - depends on the environment
        raise ConfigError("polygon output needs shapely: pip install 'shapely>=2'") from None
    return shapely


def strip_polygons(
    read_rows: Callable[[int, int], np.ndarray], height: int, strip: int = DEFAULT_STRIP
) -> Iterable[tuple[int, Any]]:
    """``(class, polygon)`` for every region of the map, in pixel coordinates, each exactly once."""
    shapely = _shapely()
    if strip < 1:
        raise ConfigError(f"strip height must be positive, got {strip}")
    open_pieces: dict[int, list] = {}
    for top in range(0, height, strip):
        bottom = min(top + strip, height)
        data = read_rows(top, bottom)
        pieces: dict[int, list] = {}
        for geometry, value in features.shapes(
            data, mask=data != IGNORE_INDEX, connectivity=4, transform=Affine.translation(0, top)
        ):
            pieces.setdefault(int(value), []).append(shapely.geometry.shape(geometry))
        still_open: dict[int, list] = {}
        for value in sorted(set(pieces) | set(open_pieces)):
            current = pieces.get(value, [])
            at_top = [p for p in current if p.bounds[1] == top]
            joined = [p for p in current if p.bounds[1] != top]
            if open_pieces.get(value) or at_top:
                merged = shapely.union_all(open_pieces.get(value, []) + at_top)
                joined += list(shapely.get_parts(merged))
            for polygon in joined:
                if bottom < height and polygon.bounds[3] == bottom:
                    still_open.setdefault(value, []).append(polygon)
                else:
                    yield value, polygon
        open_pieces = still_open


def polygon_format(destination: str | Path) -> str:
    """``gpkg`` or ``geojson`` from a file name; ``ConfigError`` for any other suffix."""
    kind = {suffix: name for name, suffix in VECTOR_FORMATS.items()}.get(Path(destination).suffix.lower())
    if kind is None:
        raise ConfigError(f"polygon output must end in {' or '.join(VECTOR_FORMATS.values())}", destination)
    return kind


def check_polygon_format(name: str | None) -> None:
    """``ConfigError`` unless ``name`` is None (no polygons) or one of ``VECTOR_FORMATS``."""
    if name is not None and name not in VECTOR_FORMATS:
        raise ConfigError(f"unknown polygon format {name!r}; choose one of {', '.join(VECTOR_FORMATS)}")


def _class_fields(schema: ClassSchema) -> Callable[[int], dict]:
    colors = [color_hex(c.color) for c in schema.classes]

    def describe(value: int) -> dict:
        known = value < schema.num_classes
        return {
            "class_index": value,
            "class_name": schema.names[value] if known else str(value),
            "color": colors[value] if known else "",
        }

    return describe


def _arrow_batch(pyarrow, geometries: list, records: list[dict], arrow_schema):
    shapely = _shapely()
    columns = [pyarrow.array([record[name] for record in records], type=arrow_schema.field(name).type)
               for name in arrow_schema.names[:-1]]  # fmt: skip
    columns.append(pyarrow.array(shapely.to_wkb(np.array(geometries, dtype=object)), type=pyarrow.binary()))
    return pyarrow.record_batch(columns, schema=arrow_schema)


def write_polygons(
    raster_path: str | Path,
    destination: str | Path,
    schema: ClassSchema,
    simplify: float = 0.0,
    strip: int = DEFAULT_STRIP,
    batch: int = 5000,
    values: Callable[[np.ndarray], np.ndarray] | None = None,
    fields: Callable[[int], dict] | None = None,
    min_pixels: int = 0,
) -> Path:
    """Polygons of every class of a class raster (band 1) into ``destination`` (.gpkg or .geojson).

    A raster without a CRS keeps its own coordinates (pixel column and row for a plain photo). Other maps
    than class maps (``landseg change``'s from-to codes): ``values`` recodes each strip as read
    (``IGNORE_INDEX`` drops a pixel), ``fields(value)`` gives a polygon's descriptive fields in place of
    the class index, name and colour, and polygons of fewer than ``min_pixels`` pixels are left out."""
    import pyarrow
    import pyogrio.raw

    destination = Path(destination)
    kind = polygon_format(destination)
    if simplify < 0:
        raise ConfigError(f"simplification tolerance must be >= 0 pixels, got {simplify}")
    describe = fields if fields is not None else _class_fields(schema)
    with open_without_grid_warning(raster_path) as source, atomic_output(destination) as temporary:
        georef = Georeference.of(source)
        # The geotransform, or an affine grid fitted to the raster's GCPs; pixel coordinates without either.
        transform, crs = georef.area_grid()
        transform = Affine.identity() if transform is None else transform
        areas = PixelAreas.of(georef) if crs is not None else None
        matrix = [transform.a, transform.b, transform.d, transform.e, transform.c, transform.f]
        arrow_schema = _arrow_schema(pyarrow, describe)

        def read_rows(top: int, bottom: int) -> np.ndarray:
            data = source.read(1, window=((top, bottom), (0, source.width)))
            return data if values is None else values(data)

        def batches() -> Iterator:
            traced = (
                (value, polygon)
                for value, polygon in strip_polygons(read_rows, source.height, strip)
                if round(polygon.area) >= min_pixels
            )
            while chunk := [item for _, item in zip(range(batch), traced, strict=False)]:
                geometries, records = _features(chunk, describe, areas, matrix, simplify)
                yield _arrow_batch(pyarrow, geometries, records, arrow_schema)

        options = {"RFC7946": "YES"} if kind == "geojson" and crs is not None else {}
        with warnings.catch_warnings():
            # A map with no CRS (a plain photo) is meant to have polygons in pixel column and row.
            warnings.filterwarnings("ignore", message="'crs' was not provided")
            pyogrio.raw.write_arrow(
                pyarrow.RecordBatchReader.from_batches(arrow_schema, batches()),
                temporary,
                layer=LAYER,
                driver=GDAL_DRIVERS[kind],
                geometry_name="geometry",
                geometry_type="Polygon",
                crs=None if crs is None else crs.to_wkt(),
                layer_options=options,
            )
    return destination


def _arrow_schema(pyarrow, describe: Callable[[int], dict]):
    """Field types from one description (all descriptions share their keys and types), then the counts."""
    sample = describe(0)
    types = {int: pyarrow.int64(), str: pyarrow.string(), float: pyarrow.float64()}
    described = [pyarrow.field(name, types[type(value)]) for name, value in sample.items()]
    return pyarrow.schema(
        [
            *described,
            pyarrow.field("pixels", pyarrow.int64()),
            pyarrow.field("area_m2", pyarrow.float64()),
            pyarrow.field("area_ha", pyarrow.float64()),
            pyarrow.field("geometry", pyarrow.binary(), metadata={"ARROW:extension:name": "geoarrow.wkb"}),
        ]
    )


def _features(chunk: list, describe, areas: PixelAreas | None, matrix: list[float], simplify: float):
    """Map geometries and attribute records of traced ``(value, polygon)`` pairs (pixel coordinates)."""
    shapely = _shapely()
    polygons = [polygon for _, polygon in chunk]
    pixels = np.array([round(polygon.area) for polygon in polygons], dtype=np.int64)
    pixel_area = None
    if areas is not None:
        # A pixel's area at the polygon's centroid: areas change smoothly, so this is their mean to first order.
        centroids = shapely.centroid(np.array(polygons, dtype=object))
        pixel_area = areas.centred_at(shapely.get_y(centroids), shapely.get_x(centroids))
    geometries = [shapely.affinity.affine_transform(polygon.simplify(simplify), matrix) for polygon in polygons]
    records = []
    for position, (value, _) in enumerate(chunk):
        area = None if pixel_area is None else float(pixels[position] * pixel_area[position])
        records.append(
            {
                **describe(value),
                "pixels": int(pixels[position]),
                "area_m2": area,
                "area_ha": None if area is None else area / SQUARE_METRES_PER_HECTARE,
            }
        )
    return geometries, records
