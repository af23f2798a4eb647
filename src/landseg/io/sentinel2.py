"""Sentinel-2 products as users download them, read like one stacked raster on the 10 m grid.

Three forms reach ``open_raster`` besides an ordinary stacked GeoTIFF:

- a ``.SAFE`` folder or its ``.zip``, read through GDAL's SENTINEL2 driver (its 10, 20 and 60 m
  subdatasets);
- a STAC item (``.json``) whose band assets are local files.

Either way the bands are composed into a virtual raster (GDAL VRT, in memory) on the 10 m grid, in the
sensor's band order (B1 ... B8, B8A, B9 ... B12, those present), each band described by its name, so a
model matches its bands by name. Coarser bands are resampled bilinearly as GDAL reads each window, so
no band is ever held whole in memory. The dataset's tag ``PROCESSING_LEVEL`` (``L1C``, ``L2A`` or
absent) lets a model refuse the wrong product level with a message that says what to pass instead.
"""

from __future__ import annotations

import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import rasterio
from rasterio.errors import NotGeoreferencedWarning

from landseg.errors import DataError
from landseg.io.safety import JSON_SIDECAR_LIMIT, read_json_limited

BAND_ORDER = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
NATIVE_RESOLUTION_M = {
    "B1": 60,
    "B2": 10,
    "B3": 10,
    "B4": 10,
    "B5": 20,
    "B6": 20,
    "B7": 20,
    "B8": 10,
    "B8A": 20,
    "B9": 60,
    "B10": 60,
    "B11": 20,
    "B12": 20,
}
SCL_BAND = "SCL"
"""The scene classification layer of L2A products (20 m): where present it is the stack's last band,
described ``SCL`` and resampled by nearest neighbour (``predict.clouds`` reads its cloud and shadow classes)."""
LEVEL_TAG = "PROCESSING_LEVEL"
NODATA_DN = 0
"""Digital number 0 marks pixels outside the swath in every Sentinel-2 product."""
STAC_SUFFIXES = (".json", ".geojson")


def is_sentinel2_product(path: Path) -> bool:
    """A ``.SAFE`` folder, its ``.zip``, or a STAC item: what ``open_sentinel2`` reads."""
    suffix = path.suffix.lower()
    return (
        (suffix == ".safe" and path.is_dir())
        or (suffix == ".zip" and path.is_file())
        or (suffix in STAC_SUFFIXES and path.is_file())
    )


@dataclass(frozen=True)
class BandSource:
    name: str
    """Canonical band name, e.g. ``B8A``."""
    dataset: str
    """What GDAL opens: a file path or a SENTINEL2 subdataset name."""
    index: int
    width: int
    height: int
    transform: rasterio.Affine
    crs: rasterio.crs.CRS | None
    dtype: str

    @property
    def resolution_m(self) -> float:
        return abs(self.transform.a)


def canonical_band(name: str) -> str | None:
    """``B02``, ``b2``, ``B8A`` or ``B2, central wavelength 490 nm`` to ``B2`` / ``B8A``; None for others."""
    match = re.fullmatch(r"b0?(\d{1,2}a?)", name.strip().split(",")[0].strip().lower())
    band = f"B{match.group(1).upper()}" if match else None
    return band if band in NATIVE_RESOLUTION_M else None


def open_sentinel2(path: str | Path):
    """The product at ``path`` as an open rasterio dataset on the 10 m grid (see the module's notes)."""
    path = Path(path)
    if path.suffix.lower() in STAC_SUFFIXES:
        level, bands = _stac_bands(path)
    else:
        level, bands = _safe_bands(path)
    _check_resolutions(bands, path)
    return rasterio.open(_vrt_xml(bands, level))


# -- SAFE products through GDAL's SENTINEL2 driver ------------------------------------------------------
def _safe_metadata(path: Path) -> str:
    """What to give the SENTINEL2 driver: the product's main metadata file, or the zip itself."""
    if path.suffix.lower() == ".zip":
        return str(path)
    found = sorted(path.glob("MTD_MSIL*.xml")) + sorted(path.glob("S2*_MTD_SAFL*.xml"))
    if not found:
        raise DataError("is not a Sentinel-2 SAFE product (no MTD_MSIL1C.xml or MTD_MSIL2A.xml in it)", path)
    return str(found[0])


def _safe_bands(path: Path) -> tuple[str | None, list[BandSource]]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)  # the product is a container, not a grid
            with rasterio.open(_safe_metadata(path)) as product:
                subdatasets = list(product.subdatasets)
    except rasterio.errors.RasterioIOError as exc:
        raise DataError(f"cannot be read as a Sentinel-2 product ({str(exc).splitlines()[0][:200]})", path) from None
    level = _level_of_names(" ".join(subdatasets) + " " + path.name)
    wanted = [name for name in subdatasets if re.search(r":(10m|20m|60m):", name)]
    if not wanted:
        raise DataError("holds no 10, 20 or 60 m band images that GDAL's SENTINEL2 driver can open", path)
    bands: dict[str, BandSource] = {}
    for name in wanted:
        with rasterio.open(name) as subdataset:
            for index in range(1, subdataset.count + 1):
                tags = subdataset.tags(index)
                band = canonical_band(tags.get("BANDNAME") or subdataset.descriptions[index - 1] or "")
                if band and band not in bands:
                    bands[band] = BandSource(
                        band,
                        name,
                        index,
                        subdataset.width,
                        subdataset.height,
                        subdataset.transform,
                        subdataset.crs,
                        subdataset.dtypes[index - 1],
                    )
    # The driver lists every band the product format defines, whether or not its file is there.
    present = _band_files(path)
    found = [band for name, band in bands.items() if name in present]
    scl = _safe_scl(path)
    return level, found + ([scl] if scl is not None else [])


def _safe_scl(path: Path) -> BandSource | None:
    """The product's 20 m scene classification image (``R20m/..._SCL_20m.jp2``), or None (an L1C product)."""
    if path.suffix.lower() == ".zip":
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if re.search(r"/IMG_DATA/R20m/[^/]*_SCL_20m\.jp2$", n)]
        files = [f"/vsizip/{path}/{name}" for name in names]
    else:
        files = [str(p) for p in sorted(path.glob("GRANULE/*/IMG_DATA/R20m/*_SCL_20m.jp2"))]
    return _single_band(SCL_BAND, files[0], path) if files else None


def _single_band(name: str, dataset: str, product: Path, label: str | None = None) -> BandSource:
    try:
        with rasterio.open(dataset) as source:
            return BandSource(
                name, dataset, 1, source.width, source.height, source.transform, source.crs, source.dtypes[0]
            )
    except rasterio.errors.RasterioIOError as exc:
        problem = str(exc).splitlines()[0][:160]
        raise DataError(f"{label or name + ' image'} is not a readable raster ({problem})", product) from None


def _band_files(path: Path) -> set[str]:
    """Names of the bands whose JPEG 2000 image is in the product (folder or zip)."""
    if path.suffix.lower() == ".zip":
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    else:
        names = [p.as_posix() for p in path.glob("GRANULE/*/IMG_DATA/**/*.jp2")]
    found = set()
    for name in names:
        if "/IMG_DATA/" in name and name.lower().endswith(".jp2"):
            for token in Path(name).stem.split("_")[1:]:
                band = canonical_band(token)
                found |= {band} if band else set()
    return found


def _level_of_names(text: str) -> str | None:
    upper = text.upper()
    if "L2A" in upper or "MSIL2A" in upper:
        return "L2A"
    if "L1C" in upper or "MSIL1C" in upper:
        return "L1C"
    return None


# -- STAC items with local assets -----------------------------------------------------------------------
def _stac_bands(path: Path) -> tuple[str | None, list[BandSource]]:
    item = read_json_limited(path, JSON_SIDECAR_LIMIT)
    if not isinstance(item, dict) or item.get("type") != "Feature" or not isinstance(item.get("assets"), dict):
        raise DataError("is not a STAC item (a GeoJSON Feature with assets)", path)
    properties = item.get("properties") or {}
    level_text = " ".join(str(properties.get(key, "")) for key in ("processing:level", "s2:product_type"))
    level = _level_of_names(level_text) or ("L2A" if "SCL" in item["assets"] or "scl" in item["assets"] else None)
    bands: dict[str, BandSource] = {}
    for key, asset in item["assets"].items():
        band = SCL_BAND if key.upper() == SCL_BAND else _asset_band(key, asset)
        if band is None or band in bands:
            continue
        bands[band] = _asset_source(band, key, asset, path)
    if not set(bands) - {SCL_BAND}:
        raise DataError("STAC item has no Sentinel-2 band assets (B02, B03, ... or eo:bands names)", path)
    return level, list(bands.values())


def _asset_band(key: str, asset: dict) -> str | None:
    for entry in asset.get("eo:bands") or []:
        if isinstance(entry, dict) and canonical_band(str(entry.get("name", ""))):
            return canonical_band(str(entry["name"]))
    return canonical_band(key)


def _asset_source(band: str, key: str, asset: dict, item_path: Path) -> BandSource:
    href = str(asset.get("href", ""))
    if re.match(r"^[a-z][a-z0-9+.-]*://", href, re.IGNORECASE) and not href.lower().startswith("file://"):
        raise DataError(
            f"asset {key!r} is remote ({href[:80]}); download the item's assets and point their "
            "hrefs at the local files",
            item_path,
        )
    local = Path(href.removeprefix("file://"))
    local = local if local.is_absolute() else item_path.parent / local
    if not local.is_file():
        raise DataError(f"asset {key!r} ({band}) file does not exist: {local}", item_path)
    return _single_band(band, str(local.resolve()), item_path, label=f"asset {key!r} ({band})")


# -- one virtual raster on the 10 m grid -----------------------------------------------------------------
def _check_resolutions(bands: list[BandSource], path: Path) -> None:
    for band in bands:
        native = NATIVE_RESOLUTION_M.get(band.name, 20)  # SCL: 20 m
        if band.crs is not None and band.crs.is_projected and abs(band.resolution_m - native) > 0.01 * native:
            raise DataError(
                f"band {band.name} has {band.resolution_m:g} m pixels, but Sentinel-2 delivers "
                f"{band.name} at {native} m: pass the product's original band files",
                path,
            )
    if not any(NATIVE_RESOLUTION_M.get(b.name) == 10 for b in bands):
        raise DataError("has none of the 10 m bands (B2, B3, B4, B8) that set the output grid", path)


def _vrt_xml(bands: list[BandSource], level: str | None) -> str:
    grid = next(b for b in sorted(bands, key=lambda b: b.resolution_m) if NATIVE_RESOLUTION_M.get(b.name) == 10)
    ordered = sorted(bands, key=lambda b: (*BAND_ORDER, SCL_BAND).index(b.name))
    t = grid.transform
    crs = f"<SRS>{escape(grid.crs.to_wkt())}</SRS>" if grid.crs is not None else ""
    level_tag = f'<Metadata><MDI key="{LEVEL_TAG}">{level}</MDI></Metadata>' if level else ""
    parts = [
        f'<VRTDataset rasterXSize="{grid.width}" rasterYSize="{grid.height}">{crs}',
        f"<GeoTransform>{t.c!r}, {t.a!r}, {t.b!r}, {t.f!r}, {t.d!r}, {t.e!r}</GeoTransform>{level_tag}",
    ]
    for number, band in enumerate(ordered, start=1):
        # The source window is the part of the band's image under the 10 m grid, in the band's own pixels.
        bt = band.transform
        x_off, y_off = (t.c - bt.c) / bt.a, (t.f - bt.f) / bt.e
        width, height = grid.width * t.a / bt.a, grid.height * t.e / bt.e
        parts.append(
            f'<VRTRasterBand dataType="{_vrt_type(band.dtype)}" band="{number}">'
            f"<Description>{band.name}</Description><NoDataValue>{NODATA_DN}</NoDataValue>"
            f'<ComplexSource resampling="{"nearest" if band.name == SCL_BAND else "bilinear"}"><SourceFilename relativeToVRT="0">{escape(band.dataset)}'
            f"</SourceFilename><SourceBand>{band.index}</SourceBand>"
            f'<SrcRect xOff="{x_off!r}" yOff="{y_off!r}" xSize="{width!r}" ySize="{height!r}"/>'
            f'<DstRect xOff="0" yOff="0" xSize="{grid.width}" ySize="{grid.height}"/>'
            f"<NODATA>{NODATA_DN}</NODATA></ComplexSource></VRTRasterBand>"
        )
    parts.append("</VRTDataset>")
    return "".join(parts)


def _vrt_type(dtype: str) -> str:
    return {
        "uint8": "Byte",
        "uint16": "UInt16",
        "int16": "Int16",
        "uint32": "UInt32",
        "int32": "Int32",
        "float32": "Float32",
        "float64": "Float64",
    }.get(dtype, "Float32")
