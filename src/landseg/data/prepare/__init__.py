"""Scene-scale data preparation: raw scenes to aligned, filtered, split and documented training chips.

``landseg prepare all CONFIG`` runs every stage; see ``docs/PREPARE.md``.
"""

from landseg.data.prepare.align import AlignResult, align_labels, resample_image
from landseg.data.prepare.config import PrepareConfig, load_prepare_config, parse_prepare_config
from landseg.data.prepare.filters import ChipFilter, FilterReport
from landseg.data.prepare.index import ChipRecord, read_index, write_index
from landseg.data.prepare.rasters import Scaling, block_windows, read_window, resolve_bands
from landseg.data.prepare.run import prepare_all, split, stats, tile
from landseg.data.prepare.split import split_chips
from landseg.data.prepare.stats import band_percentiles, band_statistics
from landseg.data.prepare.tiling import chip_windows

__all__ = [
    "AlignResult",
    "ChipFilter",
    "ChipRecord",
    "FilterReport",
    "PrepareConfig",
    "Scaling",
    "align_labels",
    "band_percentiles",
    "band_statistics",
    "block_windows",
    "chip_windows",
    "load_prepare_config",
    "parse_prepare_config",
    "prepare_all",
    "read_index",
    "read_window",
    "resample_image",
    "resolve_bands",
    "split",
    "split_chips",
    "stats",
    "tile",
    "write_index",
]
