"""Where a raster lies on Earth, in whichever form its file says it, carried from an input to its outputs.

A raster is placed on Earth by a geotransform (an affine grid in a CRS), by ground control points
(GCPs: pixel positions with their ground coordinates, in the GCPs' own CRS), by rational polynomial
coefficients (RPCs: a satellite's sensor model, which needs a terrain height to place a pixel), or not
at all (a plain photo). ``Georeference.of(dataset)`` reads all of it; every raster landseg derives from
the input is created with the same (``creation_profile``), so no output loses its place on Earth.

Polygons need an affine grid: the geotransform when there is one, else an affine grid fitted to the GCPs
(approximate: GCPs may describe a warp no affine grid follows). Areas (``maps.areas``) are approximate on
GCPs and on RPCs alone (placed at the RPCs' height offset, no terrain model); a plain photo has none, its
areas are in pixels only (``area_note`` says why).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import from_gcps
from rasterio.vrt import WarpedVRT

GEOTRANSFORM, GCPS, RPCS, NONE = "geotransform", "gcps", "rpcs", "none"


@dataclass(frozen=True)
class Georeference:
    crs: CRS | None = None
    transform: Affine | None = None
    """The file's own geotransform; None when it has none (rasterio would report the identity)."""
    gcps: tuple = ()
    gcps_crs: CRS | None = None
    rpcs: object | None = None
    """``rasterio.rpc.RPC`` or None."""

    @classmethod
    def of(cls, dataset) -> Georeference:
        """Everything that places ``dataset`` (an open rasterio dataset) on Earth."""
        crs = dataset.crs
        gcps, gcps_crs = dataset.gcps
        rpcs = dataset.rpcs
        if gcps or rpcs is not None:
            transform = None if dataset.transform.is_identity else dataset.transform
        else:
            with warnings.catch_warnings():  # rasterio warns that a plain photo's grid is the identity
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                transform = dataset.transform
            transform = transform if crs is not None or not transform.is_identity else None
        return cls(crs, transform, tuple(gcps or ()), gcps_crs if gcps else None, rpcs)

    @property
    def kind(self) -> str:
        """How the raster is placed: ``geotransform``, ``gcps``, ``rpcs`` or ``none`` (the first that applies)."""
        if self.transform is not None:
            return GEOTRANSFORM
        if self.gcps:
            return GCPS
        return RPCS if self.rpcs is not None else NONE

    @property
    def georeferenced(self) -> bool:
        return self.kind != NONE or self.crs is not None

    def creation_profile(self) -> dict:
        """``rasterio.open(..., "w", **profile)`` keywords that give a new raster this georeferencing."""
        if self.gcps and self.transform is None:
            # GDAL keeps GCPs with their CRS; a raster cannot hold a geotransform and GCPs at once.
            profile = {"crs": self.gcps_crs, "gcps": list(self.gcps)}
        else:
            profile = {"crs": self.crs, "transform": self.transform}
        if self.rpcs is not None:
            profile["rpcs"] = self.rpcs
        return profile

    def area_grid(self) -> tuple[Affine | None, CRS | None]:
        """The affine grid and CRS that areas and polygons are computed on; ``(None, None)`` when there is none."""
        if self.transform is not None:
            return self.transform, self.crs
        if self.gcps:
            fitted = from_gcps(list(self.gcps))
            if fitted.determinant != 0:
                return fitted, self.gcps_crs
        return None, None

    @property
    def approximate(self) -> bool:
        """Areas and polygons come from an affine grid fitted to GCPs, not from the file's own grid."""
        return self.kind == GCPS and self.area_grid()[0] is not None

    def area_note(self) -> str | None:
        """Why areas are approximate or not in square metres; None for an ordinary geotransform."""
        kind = self.kind
        if kind == GCPS:
            if not self.approximate:
                return f"no areas in m2: no affine grid fits the {len(self.gcps)} ground control points"
            return (
                f"areas and polygons are approximate: computed on an affine grid fitted to the "
                f"{len(self.gcps)} ground control points (GCPs); the rasters keep the GCPs themselves"
            )
        if kind == RPCS:
            return (
                "areas are approximate: the input is placed on Earth by RPCs (a sensor model) only, so pixel "
                "corners are put on the ground at the RPCs' height offset, without a terrain model; polygons "
                "are in pixel column and row; the rasters keep the RPCs. Orthorectify it (gdalwarp -rpc) for "
                "exact areas and map polygons"
            )
        if kind == NONE:
            return (
                "the input is not georeferenced (no CRS, geotransform, GCPs or RPCs): the outputs have no "
                "place on Earth, areas are in pixels only and polygons in pixel column and row"
            )
        return None

    def describe(self) -> dict:
        """The run record's account of the georeferencing."""
        crs = self.gcps_crs if self.kind == GCPS else self.crs
        facts = {"kind": self.kind, "crs": None if crs is None else crs.to_string()}
        if self.gcps:
            facts["gcps"] = len(self.gcps)
        if self.rpcs is not None:
            facts["rpcs"] = True
        note = self.area_note()
        if note is not None:
            facts["note"] = note
        return facts


def warped_onto(source, grid, **options) -> WarpedVRT:
    """``source`` (an open raster) read on ``grid``'s pixels (its CRS, transform and size) by nearest
    neighbour, window by window: class maps and masks are moved, never blended. ``options`` are
    ``WarpedVRT``'s (``nodata``, ``src_nodata``, ``add_alpha``)."""
    return WarpedVRT(
        source,
        crs=grid.crs,
        transform=grid.transform,
        width=grid.width,
        height=grid.height,
        resampling=Resampling.nearest,
        **options,
    )


def open_without_grid_warning(path, mode: str = "r", **profile):
    """``rasterio.open`` without rasterio's warning that a raster has no grid (a plain photo's outputs).

    The warning is filtered around this one call only, not for the process or a whole run."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return rasterio.open(path, mode, **profile)
