"""Polygons per class from a class raster, strip by strip, merged across strip borders.

``rasterio.features.shapes`` traces the 4-connected regions of each strip in pixel coordinates, where
vertices are whole numbers and pieces of one region meet exactly along the strip border. Pieces that
touch the border are joined with ``shapely.union_all`` to the open pieces of the strip above; a polygon
that does not reach the next strip is finished and written straight away, so only the polygons crossing
the current border are held in memory, never the whole raster or all its polygons.

Output: GeoPackage (through pyogrio) or GeoJSON (written here, one feature per line), with the class
index, name and display colour, the pixel count and, on a projected grid, the area in m2 and ha. The
polygons stay in the raster's CRS unless ``to_crs`` asks for another (the web app asks for WGS 84,
which RFC 7946 GeoJSON and web maps expect). ``simplify`` is a
Douglas-Peucker tolerance in pixels applied to each polygon on its own (neighbours may then no longer
share their border exactly); tolerance 0 only drops the straight-line vertices the merge leaves.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import rasterio
import rasterio.warp
from affine import Affine
from rasterio import features
from rasterio.crs import CRS

from landseg.classes import IGNORE_INDEX, ClassSchema, color_hex
from landseg.errors import ConfigError
from landseg.io.georef import Georeference, open_without_grid_warning
from landseg.io.write import atomic_output
from landseg.predict.outputs import SQUARE_METRES_PER_HECTARE, pixel_area_m2

VECTOR_FORMATS = {"gpkg": ".gpkg", "geojson": ".geojson"}
DEFAULT_STRIP = 1024
LAYER = "landcover"
WGS84_EPSG = 4326


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
) -> Iterable[tuple[int, object]]:
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


class _GeoJSONWriter:
    def __init__(self, path: Path, crs, pixel_grid: bool = False):
        self.handle = open(path, "w", encoding="utf-8")
        self.first = True
        header = {"type": "FeatureCollection", "name": LAYER}
        # WGS 84 is GeoJSON's own CRS (RFC 7946); any other gets the older named-CRS member GDAL reads.
        if crs is not None and crs.to_epsg() and crs.to_epsg() != WGS84_EPSG:
            header["crs"] = {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{crs.to_epsg()}"}}
        if pixel_grid:
            header["coordinates_in"] = "pixel column, row"
        self.handle.write(json.dumps(header)[:-1] + ', "features": [\n')

    def write(self, geometries: list, records: list[dict]) -> None:
        shapely = _shapely()
        for geometry, record in zip(geometries, records, strict=False):
            feature = {"type": "Feature", "properties": record, "geometry": json.loads(shapely.to_geojson(geometry))}
            self.handle.write(("" if self.first else ",\n") + json.dumps(feature))
            self.first = False

    def close(self) -> None:
        self.handle.write("\n]}\n")
        self.handle.close()


class _GeoPackageWriter:
    def __init__(self, path: Path, crs, pixel_grid: bool = False):
        try:
            import pyogrio  # noqa: F401
        except ImportError:  # pragma: no cover - depends on the environment
            raise ConfigError("GeoPackage output needs pyogrio: pip install pyogrio (or choose geojson)") from None
        self.path = path
        self.crs = None if crs is None else crs.to_wkt()
        self.started = False

    def write(self, geometries: list, records: list[dict]) -> None:
        import pyogrio.raw

        shapely = _shapely()
        if not geometries:
            return
        fields = list(records[0])
        columns = [np.array([r[f] if r[f] is not None else np.nan for r in records]) for f in fields]
        columns = [c.astype(object) if c.dtype.kind == "U" else c for c in columns]
        pyogrio.raw.write(
            self.path,
            shapely.to_wkb(np.array(geometries, dtype=object)),
            columns,
            fields,
            layer=LAYER,
            driver="GPKG",
            geometry_type="Polygon",
            crs=self.crs,
            append=self.started,
        )
        self.started = True

    def close(self) -> None:
        if not self.started:  # an all no-data map still gets a valid, empty layer
            import pyogrio.raw

            pyogrio.raw.write(
                self.path,
                np.array([], dtype=object),
                [np.array([], dtype=np.int64)],
                ["class_index"],
                layer=LAYER,
                driver="GPKG",
                geometry_type="Polygon",
                crs=self.crs,
            )


def write_polygons(
    raster_path: str | Path,
    destination: str | Path,
    schema: ClassSchema,
    simplify: float = 0.0,
    strip: int = DEFAULT_STRIP,
    batch: int = 5000,
    to_crs: str | None = None,
    values: Callable[[np.ndarray], np.ndarray] | None = None,
    fields: Callable[[int], dict] | None = None,
    min_pixels: int = 0,
) -> Path:
    """Polygons of every class of a class raster (band 1) into ``destination`` (.gpkg or .geojson).

    ``to_crs`` (e.g. ``"EPSG:4326"``) reprojects them from the raster's CRS; a raster without a CRS
    keeps its own coordinates (pixel column and row for a plain photo). Other maps than class maps
    (``landseg change``'s from-to codes): ``values`` recodes each strip as read (``IGNORE_INDEX`` drops
    a pixel), ``fields(value)`` gives a polygon's descriptive fields in place of the class index, name
    and colour, and polygons of fewer than ``min_pixels`` pixels are left out."""
    shapely = _shapely()
    destination = Path(destination)
    kind = {suffix: name for name, suffix in VECTOR_FORMATS.items()}.get(destination.suffix.lower())
    if kind is None:
        raise ConfigError(f"polygon output must end in {' or '.join(VECTOR_FORMATS.values())}", destination)
    if simplify < 0:
        raise ConfigError(f"simplification tolerance must be >= 0 pixels, got {simplify}")
    with open_without_grid_warning(raster_path) as source, atomic_output(destination) as temporary:
        # The geotransform, or an affine grid fitted to the raster's GCPs; pixel coordinates without either.
        transform, crs = Georeference.of(source).area_grid()
        transform = Affine.identity() if transform is None else transform
        target = crs if to_crs is None or crs is None else CRS.from_user_input(to_crs)
        area_per_pixel = pixel_area_m2(transform, crs)
        matrix = [transform.a, transform.b, transform.d, transform.e, transform.c, transform.f]
        colors = [color_hex(c.color) for c in schema.classes]
        writer_class = _GeoPackageWriter if kind == "gpkg" else _GeoJSONWriter
        writer = writer_class(temporary, target, pixel_grid=crs is None and transform.is_identity)

        def flush(geometries: list, records: list[dict]) -> None:
            if target != crs and geometries:
                moved = rasterio.warp.transform_geom(crs, target, [shapely.geometry.mapping(g) for g in geometries])
                geometries = [shapely.geometry.shape(g) for g in moved]
            writer.write(geometries, records)

        def read_rows(top: int, bottom: int) -> np.ndarray:
            data = source.read(1, window=((top, bottom), (0, source.width)))
            return data if values is None else values(data)

        geometries, records = [], []
        for value, polygon in strip_polygons(read_rows, source.height, strip):
            pixels = round(polygon.area)
            if pixels < min_pixels:
                continue
            geometries.append(shapely.affinity.affine_transform(polygon.simplify(simplify), matrix))
            area_m2 = None if area_per_pixel is None else pixels * area_per_pixel
            known = value < schema.num_classes
            described = (
                fields(value)
                if fields is not None
                else {
                    "class_index": value,
                    "class_name": schema.names[value] if known else str(value),
                    "color": colors[value] if known else "",
                }
            )
            records.append(
                {
                    **described,
                    "pixels": pixels,
                    "area_m2": area_m2,
                    "area_ha": None if area_m2 is None else area_m2 / SQUARE_METRES_PER_HECTARE,
                }
            )
            if len(geometries) >= batch:
                flush(geometries, records)
                geometries, records = [], []
        flush(geometries, records)
        writer.close()
    return destination
