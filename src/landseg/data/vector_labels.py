"""Labels from vector files (``data.vector_labels``): polygons, lines and points rasterized per window.

Each file is read once through pyogrio (GeoPackage, GeoJSON, Shapefile, FlatGeobuf, anything GDAL reads),
its invalid geometries repaired with GEOS make-valid, its class attribute turned into schema class indices,
and its features put in an STRtree in the file's own CRS. A window of an image is then labelled from just
the features the tree finds under it, reprojected to the image's CRS with PROJ and burnt with
``rasterio.features.rasterize`` on the window's own grid, so no scene-sized label raster is ever made.

Rules:
- a polygon labels the pixels whose centres it holds (GDAL's default); a point or a line labels the pixels
  it touches, or those of a buffer of ``buffer`` pixels around it;
- overlaps: with a ``priority`` attribute the higher value is on top; otherwise smaller polygons are on
  top of larger ones, and points and lines on top of polygons; ties keep file order (later on top);
- pixels no feature covers are ``IGNORE_INDEX`` unless a ``background`` class is named;
- a file without a CRS is in pixel coordinates (column, row) and pairs only with images that are not
  georeferenced (a JPEG or PNG), each image then having its own file (a ``{name}`` template).
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from landseg.classes import IGNORE_INDEX, ClassSchema, UnknownPolicy
from landseg.config import VectorLabelsConfig, VectorRules
from landseg.errors import ConfigError, DataError

NO_PRIORITY = 0.0


@dataclass
class LabelLayer:
    """The usable features of one vector file: geometries (in ``crs``), class indices, overlap priorities."""

    path: Path
    crs: CRS | None
    geometries: np.ndarray
    classes: np.ndarray
    priorities: np.ndarray
    repaired: int = 0
    unknown: dict[str, int] = field(default_factory=dict)
    """Attribute values the schema does not know (dropped with ``unknown_labels: ignore``), with counts."""
    _tree: object | None = field(default=None, repr=False)

    @property
    def tree(self):
        import shapely

        if self._tree is None:
            self._tree = shapely.STRtree(self.geometries)
        return self._tree

    def __getstate__(self) -> dict:
        # The tree is rebuilt where it is needed; GEOS trees do not cross processes.
        return {**self.__dict__, "_tree": None}

    def query(self, bounds: tuple[float, float, float, float]) -> np.ndarray:
        """Indices of the features whose envelopes meet ``bounds`` (in this layer's CRS)."""
        import shapely

        return np.sort(self.tree.query(shapely.box(*bounds)))


def read_layer(
    path: Path, options: VectorLabelsConfig, schema: ClassSchema, unknown: UnknownPolicy = "error"
) -> LabelLayer:
    """One vector file's features with their class indices; one-line errors for every bad input."""
    import pyogrio
    import pyogrio.raw
    import shapely

    info = _layer_info(path, options.layer)
    fields = list(info["fields"])
    wanted = [options.attribute] + ([options.priority] if options.priority else [])
    for name in wanted:
        if name not in fields:
            raise ConfigError(f"layer {info['layer']!r} has no attribute {name!r}; attributes: {fields}", path)
    try:
        meta, _, wkb, values = pyogrio.raw.read(path, layer=info["layer"], columns=wanted)
    except pyogrio.errors.DataSourceError as exc:
        raise DataError(f"cannot read the vector features ({_first_line(exc)})", path) from None
    if wkb is None or len(wkb) == 0:
        raise DataError(f"layer {info['layer']!r} has no features", path)
    column = dict(zip(meta["fields"], values, strict=True))
    geometries = shapely.from_wkb(wkb)
    present = ~(shapely.is_missing(geometries) | shapely.is_empty(geometries))
    classes, unknown_counts = class_indices(column[options.attribute], options.values, schema)
    _check_unknown(unknown_counts, options.attribute, unknown, schema, path)
    keep = present & (classes != _UNKNOWN)
    invalid = keep & ~shapely.is_valid(geometries)
    if invalid.any():
        geometries[invalid] = shapely.make_valid(geometries[invalid], method="structure", keep_collapsed=False)
        keep &= ~shapely.is_empty(geometries)
    priorities = (
        _priorities(column[options.priority], path, options.priority) if options.priority else np.zeros(len(classes))
    )
    crs = CRS.from_user_input(info["crs"]) if info.get("crs") else None
    layer = LabelLayer(
        path,
        crs,
        geometries[keep],
        classes[keep].astype(np.uint8),
        priorities[keep].astype(np.float64),
        repaired=int(invalid.sum()),
        unknown=dict(unknown_counts),
    )
    _warn_repairs(layer, int((~present).sum()))
    return layer


def _layer_info(path: Path, layer: str | None) -> dict:
    import pyogrio

    if not path.is_file():
        raise ConfigError("vector label file does not exist", path)
    try:
        layers = [str(name) for name, _ in pyogrio.list_layers(path)]
    except pyogrio.errors.DataSourceError as exc:
        raise DataError(f"not vector data GDAL can read ({_first_line(exc)})", path) from None
    if not layers:
        raise DataError("holds no vector layer", path)
    if layer is None:
        if len(layers) > 1:
            raise ConfigError(f"holds {len(layers)} layers {layers}; name one with data.vector_labels.layer", path)
        layer = layers[0]
    elif layer not in layers:
        raise ConfigError(f"has no layer {layer!r}; layers: {layers}", path)
    info = pyogrio.read_info(path, layer=layer)
    return {**info, "layer": layer}


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


_UNKNOWN = -1


def class_indices(
    values: np.ndarray, mapping: dict[str, str | int] | None, schema: ClassSchema
) -> tuple[np.ndarray, Counter]:
    """Each attribute value's class index (``IGNORE_INDEX`` for ignore codes, ``_UNKNOWN`` for values the
    schema does not know) and the unknown values with their feature counts."""
    keys = [_value_key(v) for v in values]
    lookup: dict[str, int] = {}
    for key in set(keys):
        target = mapping.get(key) if mapping is not None else key
        lookup[key] = _UNKNOWN if target is None else _schema_index(target, schema)
    indices = np.array([lookup[k] for k in keys], dtype=np.int64)
    return indices, Counter(k for k in keys if lookup[k] == _UNKNOWN)


def _value_key(value: object) -> str:
    """Attribute values as text, ``3.0`` as ``3`` (a class code read from a float column)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "<null>"
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def _schema_index(target: str | int, schema: ClassSchema) -> int:
    text = str(target).strip()
    names = {name.casefold(): i for i, name in enumerate(schema.names)}
    if text.casefold() in names:
        return names[text.casefold()]
    try:
        code = int(text)
    except ValueError:
        return _UNKNOWN
    for i, land_class in enumerate(schema.classes):
        if land_class.code == code:
            return i
    return IGNORE_INDEX if code in schema.ignore_codes else _UNKNOWN


def _check_unknown(counts: Counter, attribute: str, policy: UnknownPolicy, schema: ClassSchema, path: Path) -> None:
    if not counts:
        return
    listed = ", ".join(f"{value!r} ({n} features)" for value, n in counts.most_common(8))
    more = f" and {len(counts) - 8} more values" if len(counts) > 8 else ""
    if policy == "error":
        raise ConfigError(
            f"{attribute} values not in schema {schema.name!r}: {listed}{more}; map them with "
            "data.vector_labels.values or set data.unknown_labels: ignore",
            path,
        )
    warnings.warn(f"{path}: {attribute} values not in schema {schema.name!r} left out: {listed}{more}", stacklevel=3)


def _priorities(values: np.ndarray, path: Path, attribute: str) -> np.ndarray:
    try:
        numbers = np.array([NO_PRIORITY if v is None else float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"priority attribute {attribute!r} is not numeric", path) from None
    return np.nan_to_num(numbers, nan=NO_PRIORITY)


def _warn_repairs(layer: LabelLayer, without_geometry: int) -> None:
    notes = []
    if layer.repaired:
        notes.append(f"{layer.repaired} invalid geometries repaired with make-valid")
    if without_geometry:
        notes.append(f"{without_geometry} features without geometry left out")
    if notes:
        warnings.warn(f"{layer.path}: {'; '.join(notes)}", stacklevel=3)


@dataclass
class VectorLabels:
    """The vector label files of a data config, read once each, and the labels of any image window."""

    root: Path
    options: VectorLabelsConfig
    schema: ClassSchema
    unknown: UnknownPolicy = "error"
    layers: dict[Path, LabelLayer] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _ = self.background  # a misspelled class fails when the config is read, not at the first image

    @property
    def background(self) -> int:
        if self.options.background is None:
            return IGNORE_INDEX
        index = _schema_index(self.options.background, self.schema)
        if index in (_UNKNOWN, IGNORE_INDEX):
            raise ConfigError(
                f"data.vector_labels.background {self.options.background!r} is not a class of {self.schema.name!r}"
            )
        return index

    def files_for(self, fields: dict[str, str]) -> list[Path]:
        """The files labelling the image whose template fields are ``fields``."""
        paths = []
        for template in self.options.files:
            try:
                paths.append(self.root / template.format(**fields))
            except KeyError as exc:
                raise ConfigError(
                    f"vector label template {template!r} uses {exc} which the image template does not capture"
                ) from None
        return paths

    def layer(self, path: Path) -> LabelLayer:
        if path not in self.layers:
            self.layers[path] = read_layer(path, self.options, self.schema, self.unknown)
        return self.layers[path]

    def rasterize(
        self, files: list[Path], shape: tuple[int, int], transform: Affine, crs: CRS | None, image: Path
    ) -> np.ndarray:
        """``(H, W)`` uint8 class indices of the window ``shape`` at ``transform`` (in ``crs``)."""
        layers = [self.layer(path) for path in files]
        return rasterize_window(layers, shape, transform, crs, self.background, self.options.buffer, image)


def rasterize_window(
    layers: list[LabelLayer],
    shape: tuple[int, int],
    transform: Affine,
    crs: CRS | None,
    fill: int = IGNORE_INDEX,
    buffer: float = 0.0,
    image: Path | None = None,
) -> np.ndarray:
    """The features of ``layers`` under one window burnt into class indices (rules in the module docstring)."""
    import shapely
    from rasterio.features import rasterize
    from rasterio.transform import array_bounds

    bounds = array_bounds(shape[0], shape[1], transform)
    bounds = (bounds[0], bounds[1], bounds[2], bounds[3])
    pieces = [_window_features(layer, bounds, crs, image) for layer in layers]
    geometries = np.concatenate([p[0] for p in pieces]) if pieces else np.empty(0, dtype=object)
    out = np.full(shape, fill, dtype=np.uint8)
    if len(geometries) == 0:
        return out
    classes = np.concatenate([p[1] for p in pieces])
    priorities = np.concatenate([p[2] for p in pieces])
    pixel = math.sqrt(abs(transform.a * transform.e - transform.b * transform.d))
    if buffer > 0:
        thin = shapely.get_dimensions(geometries) < 2
        geometries[thin] = shapely.buffer(geometries[thin], buffer * pixel)
    # Drawn in order, later on top: low priority first, then large areas first (points and lines have none).
    order = np.lexsort((np.arange(len(geometries)), -shapely.area(geometries), priorities))
    geometries = _near_window(geometries[order], bounds, pixel)
    shapes = [(geometries[i], int(classes[order[i]])) for i in np.flatnonzero(~shapely.is_empty(geometries))]
    return rasterize(shapes, out=out, transform=transform)


def _near_window(geometries: np.ndarray, bounds: tuple[float, float, float, float], pixel: float) -> np.ndarray:
    """Polygons cut to the window and a pixel around it: handing GDAL a large polygon's every vertex costs
    more than burning it (a 512² window of polygonized Dubai masks: 39-45 ms whole, 16-18 ms cut). The cut
    may leave slivers along its edges, a pixel outside the window, where no pixel centre is burnt."""
    import shapely

    west, east = sorted((bounds[0], bounds[2]))
    south, north = sorted((bounds[1], bounds[3]))
    areas = shapely.get_dimensions(geometries) == 2
    cut = geometries.copy()
    cut[areas] = shapely.clip_by_rect(geometries[areas], west - pixel, south - pixel, east + pixel, north + pixel)
    return cut


def _window_features(
    layer: LabelLayer, bounds: tuple[float, float, float, float], crs: CRS | None, image: Path | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The layer's features under ``bounds`` (in ``crs``), reprojected to ``crs``."""
    check_crs_pair(layer, crs, image)
    query_bounds = bounds
    if crs is not None and layer.crs is not None and layer.crs != crs:
        from rasterio.warp import transform_bounds

        query_bounds = transform_bounds(crs, layer.crs, *bounds, densify_pts=21)
    hits = layer.query(query_bounds)
    geometries = layer.geometries[hits]
    if len(hits) and crs is not None and layer.crs is not None and layer.crs != crs:
        geometries = reproject(geometries, layer.crs, crs)
    return geometries.copy(), layer.classes[hits], layer.priorities[hits]


def reproject(geometries: np.ndarray, source: CRS, target: CRS) -> np.ndarray:
    """Geometries from ``source`` to ``target`` through PROJ, all coordinates in one call."""
    import shapely
    from pyproj import Transformer

    transformer = Transformer.from_crs(source.to_wkt(), target.to_wkt(), always_xy=True)

    def move(xy: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geometries, move)


def check_crs_pair(layer: LabelLayer, crs: CRS | None, image: Path | None) -> None:
    name = image.name if image is not None else "the image"
    if layer.crs is None and crs is not None:
        raise DataError(
            f"features have no CRS but {name} is in {crs}; set the file's CRS (ogr2ogr -a_srs) "
            "or give pixel coordinates only for images without georeferencing",
            layer.path,
        )
    if layer.crs is not None and crs is None:
        raise DataError(
            f"features are in {layer.crs} but {name} has no georeferencing; "
            "give labels for such images in pixel coordinates (a file without a CRS)",
            layer.path,
        )


def features_outside(layer: LabelLayer, extents: list[tuple[CRS | None, tuple[float, float, float, float]]]) -> int:
    """How many of the layer's features meet none of the image extents ``(crs, bounds)``."""
    import shapely
    from rasterio.warp import transform_bounds

    inside = np.zeros(len(layer.geometries), dtype=bool)
    for crs, bounds in extents:
        if (crs is None) != (layer.crs is None):
            continue
        if crs is not None and layer.crs is not None and crs != layer.crs:
            bounds = transform_bounds(crs, layer.crs, *bounds, densify_pts=21)
        hits = layer.tree.query(shapely.box(*bounds), predicate="intersects")
        inside[hits] = True
    return int((~inside).sum())


VECTOR_SUFFIXES = (".gpkg", ".geojson", ".json", ".shp", ".fgb")
"""Label files ``landseg prepare`` reads as vector data rather than as rasters."""


def is_vector_file(path: Path) -> bool:
    return Path(path).suffix.lower() in VECTOR_SUFFIXES


def vector_labels_for(
    paths: list[Path], rules: VectorRules, schema: ClassSchema, unknown: UnknownPolicy
) -> VectorLabels:
    """Vector labels read from ``paths`` (absolute) with ``rules``."""
    options = VectorLabelsConfig(files=[str(p) for p in paths], **rules.model_dump(exclude={"files"}))
    return VectorLabels(Path("/"), options, schema, unknown)


@dataclass(frozen=True)
class RasterizeResult:
    path: Path
    windows: int
    labelled_pixels: int
    features: int


def write_label_raster(
    image_path: Path, vectors: VectorLabels, files: list[Path], out_path: Path, block: int = 512
) -> RasterizeResult:
    """The labels of ``files`` as a ``uint8`` class-index GeoTIFF on the grid of ``image_path``, written
    window by window (memory bounded by ``block``, whatever the scene size)."""
    import rasterio

    from landseg.data.prepare.align import Grid, index_profile
    from landseg.data.prepare.rasters import block_windows
    from landseg.io.raster import open_raster
    from landseg.io.write import atomic_output

    with open_raster(image_path) as image:
        grid = Grid.of(image)
    crs = grid.crs if grid.georeferenced else None
    for path in files:
        check_crs_pair(vectors.layer(path), crs, image_path)
    windows = labelled = 0
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(out_path) as temporary, rasterio.open(temporary, "w", **index_profile(grid, block)) as dst:
        for window in block_windows(grid.width, grid.height, block):
            shape = (int(window.height), int(window.width))
            out = vectors.rasterize(files, shape, grid.window_transform(window), crs, image_path)
            dst.write(out, 1, window=window)
            labelled += int((out != IGNORE_INDEX).sum())
            windows += 1
        dst.write_colormap(1, vectors.schema.colormap())
        dst.set_band_description(1, "class")
    features = sum(len(vectors.layer(p).geometries) for p in files)
    return RasterizeResult(Path(out_path), windows, labelled, features)
