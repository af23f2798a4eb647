"""Rasters written window by window, then turned into Cloud Optimized GeoTIFFs.

GDAL's COG driver only copies a complete dataset, so a streamed output is written first to a tiled,
uncompressed GeoTIFF scratch file (windows may straddle its blocks: GDAL rewrites uncompressed blocks
in place, where compressed ones would be appended again and again), and then copied to the COG layout,
which adds compression and overviews. The scratch file and the COG are both written under temporary
names in the output folder; only the finished COG is renamed into place. The caller deletes the
scratch file (``open_scratch`` only creates it); ``remove_stale_temporaries`` clears what a killed run
(kill -9, power cut) could not.
"""

from __future__ import annotations

import glob
import secrets
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.windows import Window

from landseg.classes import IGNORE_INDEX
from landseg.io.georef import Georeference, open_without_grid_warning
from landseg.io.write import atomic_output

SCRATCH_BLOCK = 256
COG_BLOCK = 512
# Probabilities and confidence are stored as uint8 0..PROBABILITY_STEPS, 255 marking no-data; the band
# scale turns them back into probabilities for any GDAL reader that applies it.
PROBABILITY_STEPS = 254
NODATA_BYTE = IGNORE_INDEX


def scratch_path(final: Path, role: str) -> Path:
    """A hidden, unique scratch name next to ``final``; never mistaken for a finished output."""
    return final.with_name(f".{final.stem}.{role}.{secrets.token_hex(4)}.partial.tif")


def remove_stale_temporaries(out_dir: Path, stem: str) -> None:
    """Hidden partial files of the outputs named ``{stem}_*`` that an attempt killed mid-write left behind."""
    for stale in Path(out_dir).glob(f".{glob.escape(stem)}_*.partial*"):
        stale.unlink(missing_ok=True)


def open_scratch(
    path: Path,
    height: int,
    width: int,
    count: int,
    georef: Georeference,
    descriptions: Sequence[str] | None = None,
    colormap: dict | None = None,
    scale: float | None = None,
    tags: dict | None = None,
) -> rasterio.io.DatasetWriter:
    """A new tiled, uncompressed uint8 GeoTIFF (no-data 255), open for writing windows, placed on Earth
    as ``georef`` says (geotransform, GCPs, RPCs or nothing); the COG copy keeps all of it."""
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": "uint8",
        "nodata": NODATA_BYTE,
        **georef.creation_profile(),
        "tiled": True,
        "blockxsize": SCRATCH_BLOCK,
        "blockysize": SCRATCH_BLOCK,
        "compress": "none",
        "BIGTIFF": "IF_SAFER",
    }
    if colormap is not None:
        profile["photometric"] = "palette"
    # Update mode ("w+"): the cloud mask reads back what was written (``predict.clouds.mask_layers``).
    dataset = open_without_grid_warning(path, "w+", **profile)
    if colormap is not None:
        dataset.write_colormap(1, colormap)
    for band, description in enumerate(descriptions or (), start=1):
        dataset.set_band_description(band, description)
    if scale is not None:
        dataset.scales = (scale,) * count
        dataset.offsets = (0.0,) * count
    if tags:
        dataset.update_tags(**tags)
    return dataset


def write_window(dataset, data: np.ndarray, rows: tuple[int, int], cols: tuple[int, int]) -> None:
    """Write ``(bands, h, w)`` or ``(h, w)`` pixels at scene rows and columns of ``dataset``."""
    window = Window(cols[0], rows[0], cols[1] - cols[0], rows[1] - rows[0])
    if data.ndim == 2:
        dataset.write(data, 1, window=window)
    else:
        dataset.write(data, window=window)


def encode_probabilities(probabilities: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """Probabilities in [0, 1] to uint8 steps, no-data 255 where ``valid`` is False."""
    encoded = np.rint(probabilities * PROBABILITY_STEPS).astype(np.uint8)
    if valid is not None:
        encoded[..., ~valid] = NODATA_BYTE
    return encoded


def copy_to_cog(scratch: Path, destination: Path, resampling: str) -> Path:
    """Copy a finished scratch raster to ``destination`` as a deflate-compressed COG with overviews.

    ``resampling`` names how overviews are made: ``MODE`` for class maps, ``AVERAGE`` for probabilities.
    GDAL's COG driver copies the scratch's geotransform and CRS, GCPs and RPCs.
    """
    with atomic_output(destination) as temporary:
        rasterio.shutil.copy(
            scratch,
            temporary,
            driver="COG",
            compress="DEFLATE",
            blocksize=COG_BLOCK,
            resampling=resampling,
            overview_resampling=resampling,
            num_threads="ALL_CPUS",
            bigtiff="IF_SAFER",
        )
    return destination
