"""Catalogs of image/mask pairs: found by path templates, split by field, ratio or file list.

A pairing rule is two templates under a root folder, e.g. ``{tile}/images/{name}.jpg`` and
``{tile}/masks/{name}.png`` (images/ + masks/ folders), ``{name}_sat.jpg`` and ``{name}_mask.png``
(suffixes), or ``images/patch_{id}.tif`` and ``labels/mask_{id}.tif``. Each ``{field}`` matches one
path component part; the fields captured from an image path fill the mask template and can drive the
split (``split: {field: tile, train: [...], val: [...]}``).
"""

from __future__ import annotations

import random
import re
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import rasterio.coords
from rasterio.transform import array_bounds

from landseg.classes import IGNORE_INDEX, ClassSchema, UnknownPolicy, get_schema
from landseg.config import DataConfig, SplitConfig
from landseg.data.vector_labels import VectorLabels, check_crs_pair, features_outside
from landseg.errors import ConfigError, DataError
from landseg.io.raster import RasterImage, raster_info, read_image, read_mask

_FIELD = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Sample:
    image: Path
    mask: Path | None
    fields: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    vectors: VectorLabels | None = field(default=None, hash=False, compare=False, repr=False)
    """Vector labels (``data.vector_labels``) that label this image instead of a mask."""
    vector_files: tuple[Path, ...] = field(default=(), hash=False, compare=False)

    @property
    def name(self) -> str:
        return self.image.stem


def _template_regex(template: str) -> re.Pattern:
    parts, last = [], 0
    for match in _FIELD.finditer(template):
        parts.append(re.escape(template[last : match.start()]))
        parts.append(f"(?P<{match.group(1)}>[^/]+)")
        last = match.end()
    parts.append(re.escape(template[last:]))
    return re.compile("".join(parts) + r"\Z")


def find_pairs(root: Path, images: str, masks: str | None) -> list[Sample]:
    """Every image under ``root`` matching ``images``, with its mask from ``masks`` (None: no masks)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError("data folder does not exist", root)
    pattern = _template_regex(images)
    glob = _FIELD.sub("*", images)
    samples, missing = [], []
    for path in sorted(root.glob(glob)):
        match = pattern.match(path.relative_to(root).as_posix())
        if not match or not path.is_file():
            continue
        fields = match.groupdict()
        mask = None
        if masks is not None:
            try:
                mask = root / masks.format(**fields)
            except KeyError as exc:
                raise ConfigError(
                    f"mask template {masks!r} uses {exc} which the image template does not capture"
                ) from None
            if not mask.is_file():
                missing.append(path)
                continue
        samples.append(Sample(image=path, mask=mask, fields=fields))
    if missing:
        shown = ", ".join(str(p.relative_to(root)) for p in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise DataError(f"{len(missing)} images have no mask at {masks!r}: {shown}{more}", root)
    if not samples:
        raise DataError(f"no images match {images!r}", root)
    by_mask: dict[Path, Path] = {}
    for s in samples:
        if s.mask is not None and s.mask in by_mask:
            raise DataError(f"images {by_mask[s.mask].name} and {s.image.name} both pair with this mask", s.mask)
        if s.mask is not None:
            by_mask[s.mask] = s.image
    return samples


def split_samples(samples: list[Sample], split: SplitConfig, root: Path) -> dict[str, list[Sample]]:
    names = ("train", "val", "test")
    if split.field is not None:
        result = {}
        for name in names:
            wanted = getattr(split, name)
            if wanted is None:
                continue
            values = {str(v) for v in wanted}
            chosen = [s for s in samples if s.fields.get(split.field) in values]
            unknown = values - {s.fields.get(split.field) for s in samples}
            if unknown:
                raise ConfigError(f"split.{name}: no images have {split.field} = {sorted(unknown)}", root)
            result[name] = chosen
        return result
    if split.files is not None:
        by_path = {s.image.relative_to(root).as_posix(): s for s in samples}
        result = {}
        for name, list_file in split.files.items():
            list_path = Path(list_file) if Path(list_file).is_absolute() else root / list_file
            try:
                lines = [ln.strip() for ln in list_path.read_text().splitlines() if ln.strip()]
            except OSError as exc:
                raise ConfigError(f"cannot read split file ({exc.strerror})", list_path) from None
            not_in_catalog = [ln for ln in lines if ln not in by_path]
            if not_in_catalog:
                raise ConfigError(f"lists images not in the catalog: {not_in_catalog[:5]}", list_path)
            result[name] = [by_path[ln] for ln in lines]
        return result
    ratios = split.ratios or {"train": 1.0}
    order = list(samples)
    random.Random(split.seed).shuffle(order)
    result, start = {}, 0
    cumulative = 0.0
    for name, ratio in ratios.items():
        cumulative += ratio
        end = len(order) if cumulative >= 1 - 1e-9 else round(cumulative * len(order))
        result[name] = sorted(order[start:end], key=lambda s: s.image)
        start = end
    return result


@dataclass
class Catalog:
    root: Path
    samples: list[Sample]
    splits: dict[str, list[Sample]]

    def split(self, name: str) -> list[Sample]:
        if name not in self.splits or not self.splits[name]:
            raise ConfigError(f"split {name!r} is empty or not defined; defined: {sorted(self.splits)}", self.root)
        return self.splits[name]


def build_catalog(data: DataConfig) -> Catalog:
    if data.vector_labels is not None:
        samples = vector_samples(data)
    else:
        samples = find_pairs(data.root, data.images, data.masks)
    return Catalog(root=data.root, samples=samples, splits=split_samples(samples, data.split, data.root))


def vector_samples(data: DataConfig) -> list[Sample]:
    """The images of ``data`` with the vector files that label them, every file read once; features that
    lie outside every image are counted and reported."""
    if data.vector_labels is None:
        raise ConfigError("data.vector_labels is not set", data.root)
    vectors = VectorLabels(data.root, data.vector_labels, get_schema(data.schema_), data.unknown_labels)
    samples, missing = [], []
    extents: dict[Path, list] = {}
    for sample in find_pairs(data.root, data.images, None):
        files = vectors.files_for(sample.fields)
        absent = [f for f in files if not f.is_file()]
        if absent:
            missing.append(absent[0])
            continue
        info = raster_info(sample.image)
        box = array_bounds(info.height, info.width, info.transform)
        crs = None if info.transform.is_identity else info.crs  # as read_image has it
        for path in files:
            check_crs_pair(vectors.layer(path), crs, sample.image)
            extents.setdefault(path, []).append((crs, box))
        samples.append(replace(sample, vectors=vectors, vector_files=tuple(files)))
    if missing:
        shown = ", ".join(str(p) for p in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise ConfigError(f"{len(missing)} images have no vector label file: {shown}{more}", data.root)
    for path, boxes in extents.items():
        layer = vectors.layer(path)
        outside = features_outside(layer, boxes)
        if outside:
            warnings.warn(
                f"{path}: {outside} of {len(layer.geometries)} features lie outside every image", stacklevel=2
            )
    _warn_of_thin_labels_lost_to_scale(vectors, list(extents), data.input_scale)
    return samples


def _warn_of_thin_labels_lost_to_scale(vectors: VectorLabels, paths: list[Path], scale: float) -> None:
    """Labels are resampled by nearest neighbour at ``data.input_scale`` (``data/dataset.py``): below 1 it keeps
    one pixel in ``1 / scale`` along each axis, so points and lines burnt narrower than that mostly vanish
    (at 1:2, three points in four)."""
    needed = 1 / scale - 0.5
    if scale >= 1 or vectors.options.buffer >= needed:
        return
    import shapely

    thin = sum(int((shapely.get_dimensions(vectors.layer(path).geometries) < 2).sum()) for path in paths)
    if thin:
        warnings.warn(
            f"{thin} points or lines are burnt {vectors.options.buffer:g} px wide, but data.input_scale {scale:g} "
            f"keeps one label pixel in {1 / scale:g} along each axis: most would be lost; set "
            f"data.vector_labels.buffer to {needed:g} or more",
            stacklevel=3,
        )


def reconcile_mask(mask: np.ndarray, shape: tuple[int, int], tolerance: int, source: Path, image: Path) -> np.ndarray:
    """Crop or pad (with ignore) a mask that is off by a pixel or two; refuse larger mismatches."""
    if mask.shape == tuple(shape):
        return mask
    dh, dw = mask.shape[0] - shape[0], mask.shape[1] - shape[1]
    if abs(dh) > tolerance or abs(dw) > tolerance:
        raise DataError(
            f"mask is {mask.shape[1]}x{mask.shape[0]} but its image {image.name} is {shape[1]}x{shape[0]} "
            f"(tolerance {tolerance} px)",
            source,
        )
    out = np.full(shape, IGNORE_INDEX, dtype=mask.dtype)
    h, w = min(shape[0], mask.shape[0]), min(shape[1], mask.shape[1])
    out[:h, :w] = mask[:h, :w]
    return out


def check_mask_grid(image: RasterImage, mask_path: Path) -> None:
    """Refuse a georeferenced mask that is not on its georeferenced image's grid: in another CRS, off the
    image, shifted or at another resolution, it would give every pixel another place's label.

    Plain masks (PNG, no georeferencing) pair by pixel position and pass. Offsets under a pixel pass too:
    GeoTIFFs that differ only in pixel-is-point versus pixel-is-area are half a pixel apart.
    """
    if image.crs is None:
        return
    mask = raster_info(mask_path)
    if mask.crs is None or mask.transform.is_identity:
        return
    where = "put the labels on the image grid with `landseg prepare align`"
    if mask.crs != image.crs:
        raise DataError(f"mask is in {mask.crs} but its image {image.path.name} is in {image.crs}; {where}", mask_path)
    image_box = array_bounds(*image.shape, image.transform)
    mask_box = array_bounds(mask.height, mask.width, mask.transform)
    if not rasterio.coords.disjoint_bounds(image_box, mask_box):
        size_ratio = abs(mask.transform.a / image.transform.a), abs(mask.transform.e / image.transform.e)
        if max(abs(r - 1) for r in size_ratio) > 0.01:
            raise DataError(
                f"mask pixels are {abs(mask.transform.a):g} x {abs(mask.transform.e):g} units, its image "
                f"{image.path.name}'s {abs(image.transform.a):g} x {abs(image.transform.e):g}; {where}",
                mask_path,
            )
        shift = (
            (mask.transform.c - image.transform.c) / image.transform.a + 0.0,  # + 0.0: no "-0.0"
            (mask.transform.f - image.transform.f) / image.transform.e + 0.0,
        )
        if max(abs(v) for v in shift) <= 1:
            return
        raise DataError(
            f"mask is shifted {shift[0]:+.1f}, {shift[1]:+.1f} pixels from its image {image.path.name}; {where}",
            mask_path,
        )
    raise DataError(
        f"mask does not overlap its image {image.path.name} (mask bounds {_rounded(mask_box)}, image "
        f"bounds {_rounded(image_box)} in {image.crs})",
        mask_path,
    )


def _rounded(bounds: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in bounds) + ")"


def load_pair(
    sample: Sample,
    schema: ClassSchema,
    bands: list[int] | None = None,
    tolerance: int = 2,
    unknown: UnknownPolicy = "error",
    nodata: float | None = None,
) -> tuple[RasterImage, np.ndarray]:
    """Image and decoded index mask on the image's grid; no-data image pixels become ignore."""
    image = read_image(sample.image, bands=bands, nodata=nodata)
    if sample.vectors is not None:
        mask = sample.vectors.rasterize(
            list(sample.vector_files), image.shape, image.transform, image.crs, sample.image
        )
    elif sample.mask is None:
        raise DataError("has no mask", sample.image)
    else:
        check_mask_grid(image, sample.mask)
        mask = read_mask(sample.mask, schema, unknown=unknown)
        mask = reconcile_mask(mask, image.shape, tolerance, sample.mask, sample.image)
    if image.valid is not None:
        mask = np.where(image.valid, mask, IGNORE_INDEX).astype(np.uint8)
    return image, mask
