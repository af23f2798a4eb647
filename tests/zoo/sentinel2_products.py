"""Sentinel-2 products built from a real 13-band chip, as users download them: a minimal L1C ``.SAFE``
(safe-compact layout, one JPEG 2000 file per band at its native 10, 20 or 60 m) or L2A ``.SAFE``
(``IMG_DATA/R10m``, ``R20m``, ``R60m`` folders, no B10), its ``.zip``, and a STAC item whose assets are
per-band GeoTIFFs. Coarser bands are the chip's pixels averaged over 2x2 (20 m) or 6x6 (60 m) blocks,
which is how the sensor's coarser bands relate to the 10 m grid.

``write_sentinel2_like_stack`` needs no real chip: a synthetic scene (``landseg.data.synthetic``) as the
9 bands Dynamic World reads, in L1C-like digital numbers, named B2 ... B12, on a 10 m UTM grid; and
``write_synthetic_chip`` makes a 13-band chip of such a scene, so that products can be built without one."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.transform import Affine
from tests.helpers import write_geotiff

BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
RESOLUTION = {
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
FILE_BAND = {b: b if b == "B8A" else f"B{int(b[1:]):02d}" for b in BANDS}
TILE = "T31TCH"
STACK_GRID = Affine(10.0, 0, 399960.0, 0, -10.0, 4800000.0)
STACK_CRS = "EPSG:32631"


def chip_bands(chip: Path) -> tuple[dict[str, np.ndarray], dict]:
    """Each band of the chip at its native resolution, and the chip's 10 m profile."""
    with rasterio.open(chip) as source:
        stack, profile = source.read(), source.profile
    bands = {}
    for name, pixels in zip(BANDS, stack, strict=False):
        factor = RESOLUTION[name] // 10
        h, w = pixels.shape[0] // factor, pixels.shape[1] // factor
        blocks = pixels[: h * factor, : w * factor].reshape(h, factor, w, factor).astype(np.float64)
        bands[name] = np.round(blocks.mean(axis=(1, 3))).astype(np.uint16)
    return bands, profile


def _band_profile(profile: dict, pixels: np.ndarray, name: str, driver: str) -> dict:
    t = profile["transform"]
    factor = RESOLUTION[name] // 10
    return {
        "driver": driver,
        "width": pixels.shape[1],
        "height": pixels.shape[0],
        "count": 1,
        "dtype": "uint16",
        "crs": profile["crs"],
        "transform": Affine(t.a * factor, t.b, t.c, t.d, t.e * factor, t.f),
    }


def write_safe(chip: Path, folder: Path, level: str = "L1C", skip: tuple[str, ...] = ()) -> Path:
    """``S2A_MSI{level}_..._{TILE}_....SAFE`` with the files GDAL's SENTINEL2 driver reads, in the layout of
    the level: L1C one folder of ``{stem}_B02.jp2`` ...; L2A ``R{res}m/{stem}_B02_{res}m.jp2`` ... at each
    band's native resolution, without B10 (which L2A products leave out)."""
    bands, profile = chip_bands(chip)
    safe = folder / f"S2A_MSI{level}_20200601T103031_N0209_R108_{TILE}_20200601T123456.SAFE"
    granule = safe / "GRANULE" / f"{level}_{TILE}_A025775_20200601T103031"
    stem = f"{TILE}_20200601T103031"
    entries = []
    for name, pixels in bands.items():
        if name in skip or (level == "L2A" and name == "B10"):
            continue
        images, file_stem = granule / "IMG_DATA", f"{stem}_{FILE_BAND[name]}"
        if level == "L2A":
            images, file_stem = images / f"R{RESOLUTION[name]}m", f"{file_stem}_{RESOLUTION[name]}m"
        images.mkdir(parents=True, exist_ok=True)
        with rasterio.open(
            images / f"{file_stem}.jp2",
            "w",
            QUALITY=100,
            REVERSIBLE="YES",
            **_band_profile(profile, pixels, name, "JP2OpenJPEG"),
        ) as target:
            target.write(pixels, 1)
        entries.append(f"<IMAGE_FILE>{images.relative_to(safe).as_posix()}/{file_stem}</IMAGE_FILE>")
    (safe / f"MTD_MSI{level}.xml").write_text(_product_xml(level, entries), encoding="utf-8")
    (granule / "MTD_TL.xml").write_text(_tile_xml(level, profile), encoding="utf-8")
    return safe


def _tile_xml(level: str, profile: dict) -> str:
    """The granule's geocoding: EPSG code, and size and corner at each resolution."""
    t, epsg = profile["transform"], profile["crs"].to_epsg()
    grids = "".join(
        f'<Size resolution="{r}"><NROWS>{profile["height"] * 10 // r}</NROWS><NCOLS>{profile["width"] * 10 // r}'
        f"</NCOLS></Size>"
        for r in (10, 20, 60)
    ) + "".join(
        f'<Geoposition resolution="{r}"><ULX>{t.c!r}</ULX><ULY>{t.f!r}</ULY><XDIM>{r}</XDIM><YDIM>-{r}</YDIM>'
        "</Geoposition>"
        for r in (10, 20, 60)
    )
    return (
        f'<n1:Level-{level[1:]}_Tile_ID xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/S2_PDI_Level-'
        f'{level[1:]}_Tile_Metadata.xsd"><n1:Geometric_Info><Tile_Geocoding><HORIZONTAL_CS_NAME>WGS84 / UTM'
        f"</HORIZONTAL_CS_NAME><HORIZONTAL_CS_CODE>EPSG:{epsg}</HORIZONTAL_CS_CODE>{grids}</Tile_Geocoding>"
        f"</n1:Geometric_Info></n1:Level-{level[1:]}_Tile_ID>\n"
    )


def _product_xml(level: str, entries: list[str]) -> str:
    number = level[1:]
    return f"""<n1:Level-{number}_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-{number}.xsd">
<n1:General_Info><Product_Info><PROCESSING_LEVEL>Level-{number}</PROCESSING_LEVEL>
<PRODUCT_TYPE>S2MSI{number}</PRODUCT_TYPE><PROCESSING_BASELINE>02.09</PROCESSING_BASELINE>
<Query_Options completeSingleTile="true"><PRODUCT_FORMAT>SAFE_COMPACT</PRODUCT_FORMAT></Query_Options>
<Product_Organisation><Granule_List><Granule granuleIdentifier="L1C_{TILE}" imageFormat="JPEG2000">
{"".join(entries)}
</Granule></Granule_List></Product_Organisation></Product_Info>
<Product_Image_Characteristics><QUANTIFICATION_VALUE unit="none">10000</QUANTIFICATION_VALUE>
</Product_Image_Characteristics></n1:General_Info></n1:Level-{number}_User_Product>
"""


def zip_safe(safe: Path) -> Path:
    target = safe.with_suffix(".zip")
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as archive:
        for path in sorted(safe.rglob("*")):
            archive.write(path, path.relative_to(safe.parent).as_posix())
    return target


def write_stac_item(
    chip: Path,
    folder: Path,
    level: str = "L1C",
    resolutions: dict[str, int] | None = None,
    scl: np.ndarray | None = None,
) -> Path:
    """An item ``item.json`` with one GeoTIFF asset per band (relative hrefs, Earth Search style keys); ``scl``,
    a uint8 scene classification on the 20 m grid, becomes its ``scl`` asset, as in L2A items."""
    bands, profile = chip_bands(chip)
    folder.mkdir(parents=True, exist_ok=True)
    assets = {}
    for name, pixels in bands.items():
        if resolutions and name in resolutions:  # a band delivered at another resolution than the sensor's
            factor = resolutions[name] // RESOLUTION[name]
            pixels = pixels[::factor, ::factor]
            name_profile = _band_profile(profile, pixels, name, "GTiff")
            t = name_profile["transform"]
            name_profile["transform"] = Affine(t.a * factor, 0, t.c, 0, t.e * factor, t.f)
        else:
            name_profile = _band_profile(profile, pixels, name, "GTiff")
        with rasterio.open(folder / f"{FILE_BAND[name]}.tif", "w", **name_profile) as target:
            target.write(pixels, 1)
        assets[name.lower()] = {
            "href": f"./{FILE_BAND[name]}.tif",
            "type": "image/tiff; application=geotiff",
            "eo:bands": [{"name": FILE_BAND[name]}],
            "roles": ["data"],
        }
    if scl is not None:
        scl_profile = {**_band_profile(profile, scl, "B11", "GTiff"), "dtype": "uint8"}  # on B11's 20 m grid
        with rasterio.open(folder / "SCL.tif", "w", **scl_profile) as target:
            target.write(scl, 1)
        assets["scl"] = {"href": "./SCL.tif", "type": "image/tiff; application=geotiff", "roles": ["data"]}
    item: dict[str, Any] = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": f"S2A_{TILE}_20200601_0_{level}",
        "geometry": None,
        "properties": {
            "datetime": "2020-06-01T10:30:31Z",
            "processing:level": level,
            "s2:product_type": f"S2MSI{level[1:]}",
        },
        "links": [],
        "assets": assets,
    }
    path = folder / f"S2A_{TILE}_20200601_{level}.json"
    path.write_text(json.dumps(item, indent=1), encoding="utf-8")
    return path


DW_BANDS = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B11", "B12")
# Bands of a synthetic scene (red, green, blue, nir, swir, then blends of nir and swir) standing in for them.
_SCENE_BAND_FOR = {"B2": 2, "B3": 1, "B4": 0, "B5": 5, "B6": 6, "B7": 7, "B8": 3, "B11": 4, "B12": 8}


def sentinel2_like_pixels(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(9, size, size)`` uint16 L1C-like digital numbers (about 400-5500) in Dynamic World's band order, and
    the scene's ``synthetic`` schema labels (``255`` no-data; there is none)."""
    from landseg.data.synthetic import generate_scene

    scene = generate_scene(size, seed, bands=9)
    stack = scene.image[[_SCENE_BAND_FOR[b] for b in DW_BANDS]].astype(np.uint16)
    return (400 + stack * 20).astype(np.uint16), scene.labels


def write_sentinel2_like_stack(path: Path, pixels: np.ndarray, names: bool = True) -> Path:
    """``pixels`` as a georeferenced GeoTIFF at 10 m in UTM 31N, its bands described ``B2`` ... ``B12``."""
    descriptions = DW_BANDS[: len(pixels)] if names else None
    return write_geotiff(path, pixels, STACK_GRID, STACK_CRS, descriptions=descriptions)


def write_labels(path: Path, labels: np.ndarray) -> Path:
    """``(H, W)`` uint8 class codes on the grid of ``write_sentinel2_like_stack``."""
    return write_geotiff(path, labels.astype(np.uint8), STACK_GRID, STACK_CRS, nodata=255)


def write_synthetic_chip(path: Path, size: int = 120, seed: int = 0) -> Path:
    """A seeded 13-band chip (B1 ... B12, undescribed, as SEN12MS chips are) of L1C-like digital numbers at 10 m
    in UTM 31N: the 9 bands of ``sentinel2_like_pixels``; B1 and B8A follow B2 and B8, B9 (water vapour) and
    B10 (cirrus) are dimmer. ``size`` a multiple of 6 keeps the 20 and 60 m grids whole."""
    pixels, _ = sentinel2_like_pixels(size, seed)
    band = dict(zip(DW_BANDS, pixels.astype(np.float64), strict=True))
    band["B1"] = band["B2"] * 1.1
    band["B8A"] = band["B8"] * 0.95
    band["B9"] = band["B8"] * 0.3
    band["B10"] = 10 + band["B2"] * 0.01
    stack = np.stack([np.round(band[name]) for name in BANDS]).astype(np.uint16)
    return write_sentinel2_like_stack(path, stack, names=False)
