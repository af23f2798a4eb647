"""Seeded, georeferenced land-cover scenes for the tests and ``landseg demo``.

A scene is laid out the way the classes cover each other on the ground: roads first, then water (rivers
pass under bridges, lakes keep clear of roads), buildings in villages beside the roads, forest in what is
left, and fields everywhere else. Each class then gets its own colours *and* texture (crop rows in
several directions, tree crowns, smooth water, grey asphalt, gabled roofs with cast shadows), and the
whole scene gets blur, uneven illumination and sensor noise. Class colours overlap, so a model has to
use texture and shape as well as colour.

The layout scales with the scene size (96 px and 512 px scenes show the same kind of landscape, in less
or more detail) while textures stay at pixel scale, so class shares hold from about 96 px up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin
from scipy import ndimage

from landseg.classes import IGNORE_INDEX, get_schema
from landseg.errors import ConfigError
from landseg.io.write import GEOTIFF_BLOCK, atomic_output, write_index_geotiff

SCHEMA = get_schema("synthetic")
_CODES = {c.name: c.code for c in SCHEMA.classes if c.code is not None}
FIELD, FOREST, WATER, ROAD, BUILDING = (_CODES[n] for n in ("Field", "Forest", "Water", "Road", "Building"))
NODATA_LABEL = IGNORE_INDEX
NODATA_VALUE = 0
"""Image value of no-data pixels; valid pixels are at least 1, so 0 is unambiguous."""

# Digital numbers per material in the bands R, G, B, NIR, SWIR. NIR is high for green vegetation and
# near zero for water; SWIR is high for dry soil and roofs. Bands past these blend NIR and SWIR.
_CROPS = np.array(
    [
        [96, 132, 62, 205, 105],
        [124, 150, 74, 190, 115],
        [80, 114, 54, 215, 95],  # cereal, meadow, maize
        [150, 162, 88, 170, 135],
        [206, 186, 112, 140, 170],
        [222, 206, 144, 130, 180],  # ripening, ripe, stubble
        [152, 120, 86, 95, 165],
        [124, 100, 76, 88, 150],  # ploughed and wet soil
    ],
    dtype=np.float32,
)
_MEADOW, _SOIL = _CROPS[1], np.array([138, 112, 82, 92, 158], dtype=np.float32)
_CONIFER, _BROADLEAF = np.array([[40, 66, 40, 165, 72], [62, 92, 50, 195, 88]], dtype=np.float32)
_DEEP_WATER = np.array([[30, 58, 78, 14, 6], [52, 74, 70, 26, 10]], dtype=np.float32)  # lake, murky river
_SHALLOW_WATER = np.array([72, 96, 86, 45, 20], dtype=np.float32)
_ROADS = np.array([[108, 108, 110, 72, 118], [156, 154, 148, 98, 152]], dtype=np.float32)  # asphalt, concrete
_ROOFS = np.array(
    [
        [170, 82, 60, 92, 132],
        [138, 64, 52, 82, 120],
        [92, 94, 100, 70, 108],  # terracotta, red tiles, slate
        [164, 164, 160, 104, 150],
        [222, 220, 214, 150, 196],  # grey metal and white, both flat
    ],
    dtype=np.float32,
)
_FLAT_ROOFS = (3, 4)
_BASE_BANDS = ("red", "green", "blue", "nir", "swir")

# Share ranges of the four smaller classes; fields take the rest, kept to about 43-53 %.
_SHARE_RANGES = {FOREST: (0.22, 0.29), WATER: (0.09, 0.14), ROAD: (0.04, 0.065), BUILDING: (0.04, 0.065)}
_FIELD_RANGE = (0.43, 0.53)


@dataclass(frozen=True)
class SyntheticScene:
    image: np.ndarray
    """``(bands, H, W) uint8``; ``NODATA_VALUE`` only where the scene has no data."""
    labels: np.ndarray
    """``(H, W) uint8`` codes of the ``synthetic`` schema; ``NODATA_LABEL`` where there is no data."""
    seed: int
    band_names: tuple[str, ...]

    @property
    def shape(self) -> tuple[int, int]:
        height, width = self.labels.shape
        return height, width

    def class_shares(self) -> np.ndarray:
        """Share of each class among labelled pixels, indexed by class code."""
        counts = np.bincount(self.labels[self.labels != NODATA_LABEL], minlength=SCHEMA.num_classes)
        return counts / max(counts.sum(), 1)


@dataclass(frozen=True)
class _Roads:
    mask: np.ndarray
    surface: np.ndarray
    """Row of ``_ROADS`` of the nearest road, per pixel."""
    edge_distance: np.ndarray
    """Distance to the nearest road's edge (negative on the road)."""
    normal: np.ndarray
    """``(2, H, W)`` unit vector from the nearest road's centre line towards the pixel."""


def generate_scene(
    size: int | tuple[int, int], seed: int, bands: int = 3, nodata_fraction: float = 0.0
) -> SyntheticScene:
    """A procedural land-cover scene of ``size`` pixels (``(height, width)`` or a square's side).

    The same ``seed`` always gives the same scene. ``bands``: 3 gives RGB; a 4th band is NIR-like, a 5th
    SWIR-like, further ones blend the two. ``nodata_fraction``: share of the scene cut off as no-data (a
    border or a hole; image ``NODATA_VALUE``, label ``NODATA_LABEL``); the rest is the same as without.
    """
    height, width = (size, size) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
    if min(height, width) < 32:
        raise ConfigError(f"synthetic scenes must be at least 32 x 32 pixels, not {height} x {width}")
    if bands < 3:
        raise ConfigError(f"synthetic scenes have at least 3 bands (red, green, blue), not {bands}")
    if not 0.0 <= nodata_fraction < 1.0:
        raise ConfigError(f"nodata_fraction must be in [0, 1), not {nodata_fraction}")
    rng = np.random.default_rng(seed)
    shape = (height, width)
    scale = math.sqrt(height * width) / 512
    targets = _share_targets(rng)
    sun = rng.uniform(0, 2 * math.pi)  # azimuth; the sun lies towards (sin, cos) in (row, column)

    labels = np.full(shape, FIELD, dtype=np.uint8)
    parcels = _parcels(rng, shape)
    roads = _roads(rng, shape, targets[ROAD])
    labels[roads.mask] = ROAD
    water, river = _water(rng, shape, scale, targets[WATER], roads)
    labels[water & ~roads.mask] = WATER
    roofs, roof_shade = _buildings(rng, scale, targets[BUILDING], labels, roads, sun)
    labels[roofs >= 0] = BUILDING
    labels[_forest(rng, scale, targets[FOREST], labels, parcels)] = FOREST

    image = _render(rng, labels, bands, scale, sun, parcels, roads, river, roofs, roof_shade)
    if nodata_fraction > 0:
        missing = _nodata_region(rng, shape, nodata_fraction)
        image[:, missing] = NODATA_VALUE
        labels[missing] = NODATA_LABEL
    return SyntheticScene(image=image, labels=labels, seed=seed, band_names=band_names(bands))


def band_names(bands: int) -> tuple[str, ...]:
    """``red, green, blue, nir, swir, ir_blend_0, ...``; a band is the same whatever ``bands`` is."""
    return _BASE_BANDS[:bands] + tuple(f"ir_blend_{i}" for i in range(bands - len(_BASE_BANDS)))


# -- layout ----------------------------------------------------------------------------------------
def _share_targets(rng: np.random.Generator) -> dict[int, float]:
    targets = {code: rng.uniform(*bounds) for code, bounds in _SHARE_RANGES.items()}
    rest = sum(targets.values())
    field = float(np.clip(1 - rest, *_FIELD_RANGE))
    return {code: share * (1 - field) / rest for code, share in targets.items()}


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: float) -> np.ndarray:
    """Zero-mean, unit-variance random field of blobs about ``max(shape) / cells`` pixels across."""
    spacing = max(shape) / cells
    rows, cols = _bump_matrix(shape[0], spacing), _bump_matrix(shape[1], spacing)
    field = rows @ rng.standard_normal((rows.shape[1], cols.shape[1])) @ cols.T
    return ((field - field.mean()) / (field.std() + 1e-6)).astype(np.float32)


def _bump_matrix(n: int, spacing: float) -> np.ndarray:
    # Gaussian bumps on a lattice that runs past both edges, so the field has no edge effects.
    centres = np.arange(-1.5, n / spacing + 1.5) * spacing
    weights = np.exp(-0.5 * ((np.arange(n)[:, None] + 0.5 - centres[None]) / (0.6 * spacing)) ** 2)
    return weights / weights.sum(axis=1, keepdims=True)


def _fine_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    noise = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return noise / (noise.std() + 1e-6)


def _top_share(score: np.ndarray, allowed: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` allowed pixels with the highest score."""
    candidates = score[allowed]
    count = min(count, candidates.size)
    if count <= 0:
        return np.zeros(score.shape, dtype=bool)
    threshold = np.partition(candidates, candidates.size - count)[candidates.size - count]
    return allowed & (score >= threshold)


def _grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    return rows, cols


def _parcels(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Field parcel id per pixel: a warped Voronoi tiling, stretched along the region's field direction."""
    count = int(rng.integers(16, 30))
    angle, stretch, wobble = rng.uniform(0, math.pi), rng.uniform(1.3, 2.2), 0.04 * max(shape)
    yy, xx = _grid(shape)
    yy += wobble * _smooth_noise(rng, shape, 4)
    xx += wobble * _smooth_noise(rng, shape, 4)
    seeds_y, seeds_x = rng.uniform(0, shape[0], count), rng.uniform(0, shape[1], count)

    def along_across(y, x):
        return (x * math.cos(angle) + y * math.sin(angle)) / stretch, y * math.cos(angle) - x * math.sin(angle)

    (along, across), (seeds_along, seeds_across) = along_across(yy, xx), along_across(seeds_y, seeds_x)
    nearest = np.full(shape, np.inf, dtype=np.float32)
    ids = np.zeros(shape, dtype=np.int32)
    for i in range(count):
        distance = (along - seeds_along[i]) ** 2 + (across - seeds_across[i]) ** 2
        closer = distance < nearest
        nearest[closer], ids[closer] = distance[closer], i
    return ids


def _edge_point(rng: np.random.Generator, shape: tuple[int, int], side: int) -> np.ndarray:
    (height, width), t = shape, rng.uniform(0.15, 0.85)
    return np.array([(0.0, t * width), (t * height, width - 1.0), (height - 1.0, t * width), (t * height, 0.0)][side])


def _curve(start: np.ndarray, end: np.ndarray, bend: float, wiggles: list[tuple[float, float, float]]) -> tuple:
    """Points along a line from ``start`` to ``end``, bent to its left by ``bend`` x its length at the middle
    and offset by ``(amplitude, frequency, phase)`` sine waves; and the points' positions 0..1."""
    length = float(np.hypot(*(end - start)))
    t = np.linspace(0.0, 1.0, int(6 * length) + 16)
    left = np.array([-(end - start)[1], (end - start)[0]]) / max(length, 1e-6)
    offset = bend * length * 4 * t * (1 - t)
    for amplitude, frequency, phase in wiggles:
        offset = offset + amplitude * length * np.sin(2 * math.pi * frequency * t + phase)
    return start + t[:, None] * (end - start) + offset[:, None] * left, t


def _towards_centre(shape: tuple[int, int], start: np.ndarray, end: np.ndarray) -> float:
    """+1 if the image centre lies to the left of the line from ``start`` to ``end`` (as ``_curve`` sees it)."""
    direction, to_centre = end - start, np.array(shape) / 2 - start
    return 1.0 if to_centre[1] * direction[0] - to_centre[0] * direction[1] >= 0 else -1.0


def _draw_lines(shape: tuple[int, int], lines: list[tuple[np.ndarray, np.ndarray, int]]) -> tuple:
    """Rasterise ``(points, relative width at each point, attribute)`` centre lines on a padded canvas, so lines just outside
    the image still cover its edge; per image pixel: distance to, width, attribute and normal of the nearest."""
    pad = int(0.06 * max(shape)) + 4
    canvas = (shape[0] + 2 * pad, shape[1] + 2 * pad)
    centre = np.zeros(canvas, dtype=bool)
    width, attribute = np.zeros(canvas, dtype=np.float32), np.zeros(canvas, dtype=np.int8)
    for points, line_width, line_attribute in lines:
        rows, cols = np.round(points[:, 0]).astype(int) + pad, np.round(points[:, 1]).astype(int) + pad
        inside = (rows >= 0) & (rows < canvas[0]) & (cols >= 0) & (cols < canvas[1])
        rows, cols = rows[inside], cols[inside]
        centre[rows, cols], width[rows, cols], attribute[rows, cols] = True, line_width[inside], line_attribute
    distance, (near_rows, near_cols) = ndimage.distance_transform_edt(~centre, return_indices=True)
    crop = (slice(pad, pad + shape[0]), slice(pad, pad + shape[1]))
    yy, xx = _grid(canvas)
    normal = np.stack([yy - near_rows, xx - near_cols])[:, crop[0], crop[1]]
    normal /= np.maximum(np.hypot(normal[0], normal[1]), 1e-6)
    near = (near_rows[crop], near_cols[crop])
    return distance[crop].astype(np.float32), width[near], attribute[near], normal


def _road_line(rng: np.random.Generator, shape: tuple[int, int], earlier: list[tuple]) -> tuple:
    """A road edge to edge, or from an edge to a point on an earlier road; ``(points, width, surface)``."""
    side = int(rng.integers(4))
    start = _edge_point(rng, shape, side)
    if earlier and rng.random() < 0.5:
        previous = earlier[int(rng.integers(len(earlier)))][0]
        end = previous[int(rng.integers(len(previous) // 5, 4 * len(previous) // 5))]
    else:
        end = _edge_point(rng, shape, (side + int(rng.choice([1, 2, 2, 3]))) % 4)
    bend = rng.uniform(0, 0.15) * _towards_centre(shape, start, end)
    points, _ = _curve(start, end, bend, [(rng.uniform(0, 0.015), rng.uniform(0.5, 1.5), rng.uniform(0, 6.3))])
    relative_width = rng.uniform(0.6, 0.9) if earlier else 1.0
    return points, np.full(len(points), relative_width), int(rng.integers(len(_ROADS)))


def _roads(rng: np.random.Generator, shape: tuple[int, int], target: float) -> _Roads:
    """1-3 roads (more or fewer where widths alone cannot reach it), widened until they cover ``target``."""
    narrowest, widest = 1.2, 0.025 * max(shape) + 1
    lines: list[tuple] = []
    for _ in range(int(rng.choice([1, 2, 3], p=[0.2, 0.4, 0.4]))):
        lines.append(_road_line(rng, shape, lines))
    for _ in range(4):
        distance, relative_width, surface, normal = _draw_lines(shape, lines)
        half_width = np.quantile(distance / relative_width, target)
        if half_width > widest and len(lines) < 4:
            lines.append(_road_line(rng, shape, lines))
        elif half_width < narrowest and len(lines) > 1:
            lines.pop()
        else:
            break
    half_width = np.clip(half_width, narrowest, widest) * relative_width
    return _Roads(distance <= half_width, surface, distance - half_width, normal)


def _water(
    rng: np.random.Generator, shape: tuple[int, int], scale: float, target: float, roads: _Roads
) -> tuple[np.ndarray, np.ndarray]:
    """Water and river masks: a meandering river in most scenes, lakes up to ``target``, clear of roads."""
    river = np.zeros(shape, dtype=bool)
    if rng.random() < 0.65:
        side = int(rng.integers(4))
        start, end = _edge_point(rng, shape, side), _edge_point(rng, shape, (side + 2) % 4)
        wiggles = [
            (rng.uniform(0.04, 0.09), rng.uniform(1.0, 2.5), rng.uniform(0, 6.3)),
            (rng.uniform(0.01, 0.025), rng.uniform(3.0, 6.0), rng.uniform(0, 6.3)),
        ]
        points, t = _curve(start, end, rng.uniform(-0.1, 0.1), wiggles)
        widening = 1 + 0.3 * np.sin(2 * math.pi * rng.uniform(1, 3) * t)
        distance, relative_width, _, _ = _draw_lines(shape, [(points, widening, 0)])
        river = distance <= max(1.5, rng.uniform(0.012, 0.02) * max(shape)) * relative_width
    lake_score = _smooth_noise(rng, shape, 3) + 0.35 * _smooth_noise(rng, shape, 10)
    allowed = ~river & (roads.edge_distance > 3 * scale + 2)
    lakes = _top_share(lake_score, allowed, round(target * river.size) - int((river & ~roads.mask).sum()))
    lakes = ndimage.binary_opening(lakes, iterations=2)  # no slivers in corners left by the roads
    return river | lakes, river


def _buildings(
    rng: np.random.Generator, scale: float, target: float, labels: np.ndarray, roads: _Roads, sun: float
) -> tuple[np.ndarray, np.ndarray]:
    """Rectangles facing the road, mostly in 1-3 villages; roof colour per pixel (-1: none) and roof shading."""
    shape = labels.shape
    roofs, shade = np.full(shape, -1, dtype=np.int8), np.ones(shape, dtype=np.float32)
    size = max(scale, 0.35)
    from_road = roads.edge_distance.ravel()
    candidates = np.flatnonzero((labels.ravel() == FIELD) & (from_road > 1) & (from_road < 60 * size + 4))
    if candidates.size == 0:
        return roofs, shade
    (yy, xx), villages = np.divmod(candidates, shape[1]), rng.choice(candidates, size=rng.integers(1, 4))
    vy, vx = np.divmod(villages, shape[1])
    closeness = np.exp(-((yy[:, None] - vy) ** 2 + (xx[:, None] - vx) ** 2) / (2 * (70 * size + 10) ** 2))
    weights = (closeness.max(axis=1) + 0.1) * np.exp(-from_road[candidates] / (20 * size + 3))  # front rows first
    near_road = rng.choice(candidates, size=3000, p=weights / weights.sum())
    blocked, wanted, covered, margin = labels != FIELD, target * labels.size, 0, 1.5 * size + 1
    for pick in _then_farmsteads(rng, near_road, labels):
        if covered >= wanted:
            break
        y0, x0 = divmod(int(pick), shape[1])
        depth, length, turn = rng.uniform(3.5, 6.5) * size, rng.uniform(4.5, 11) * size, rng.normal(0, 0.05)
        ny, nx = roads.normal[:, y0, x0]
        ny, nx = ny * math.cos(turn) - nx * math.sin(turn), ny * math.sin(turn) + nx * math.cos(turn)
        reach = math.ceil(math.hypot(depth, length) + margin) + 1
        if min(y0, x0) < reach or y0 + reach >= shape[0] or x0 + reach >= shape[1]:
            continue
        dy, dx = np.mgrid[-reach : reach + 1, -reach : reach + 1]
        across, along = dy * ny + dx * nx, dx * ny - dy * nx
        window = (slice(y0 - reach, y0 + reach + 1), slice(x0 - reach, x0 + reach + 1))
        if blocked[window][(np.abs(across) <= depth + margin) & (np.abs(along) <= length + margin)].any():
            continue
        footprint = (np.abs(across) <= depth) & (np.abs(along) <= length)
        roof = int(rng.integers(len(_ROOFS)))
        roofs[window][footprint] = roof
        if roof not in _FLAT_ROOFS:  # gable: the roof half that faces the sun is brighter
            facing = 0.14 * (math.sin(sun) * ny + math.cos(sun) * nx)
            shade[window][footprint] = np.where(across[footprint] > 0, 1 + facing, 1 - facing)
        blocked[window] |= footprint
        covered += int(footprint.sum())
    return roofs, shade


def _then_farmsteads(rng: np.random.Generator, near_road: np.ndarray, labels: np.ndarray):
    """Pixels to try as building centres: villages by the road first, then anywhere on the fields."""
    yield from near_road
    fields = np.flatnonzero(labels == FIELD)
    yield from rng.choice(fields, size=min(2000, fields.size), replace=False) if fields.size else ()


def _forest(
    rng: np.random.Generator, scale: float, target: float, labels: np.ndarray, parcels: np.ndarray
) -> np.ndarray:
    """Noisy blobs on the land left; whole parcels lean to forest or not, so woods partly follow field edges."""
    shape = labels.shape
    parcel_bias = rng.normal(0, 0.8, parcels.max() + 1).astype(np.float32)
    score = _smooth_noise(rng, shape, 3) + 0.5 * _smooth_noise(rng, shape, 8) + 0.25 * _smooth_noise(rng, shape, 48)
    score += parcel_bias[parcels]
    from_houses = ndimage.distance_transform_edt(labels != BUILDING)
    gardens = from_houses <= (5 * scale + 2) * (1 + 0.4 * _smooth_noise(rng, shape, 40))
    return _top_share(score, (labels == FIELD) & ~gardens, round(target * labels.size))


def _nodata_region(rng: np.random.Generator, shape: tuple[int, int], fraction: float) -> np.ndarray:
    """A cut-off border (like the edge of a swath) or a hole (like a masked cloud)."""
    if rng.random() < 0.5:
        angle, (yy, xx) = rng.uniform(0, 2 * math.pi), _grid(shape)
        score = yy * math.sin(angle) + xx * math.cos(angle)
    else:
        score = _smooth_noise(rng, shape, 3)
    return _top_share(score, np.ones(shape, dtype=bool), round(fraction * score.size))


# -- rendering -------------------------------------------------------------------------------------
def _render(
    rng: np.random.Generator,
    labels: np.ndarray,
    bands: int,
    scale: float,
    sun: float,
    parcels: np.ndarray,
    roads: _Roads,
    river: np.ndarray,
    roofs: np.ndarray,
    roof_shade: np.ndarray,
) -> np.ndarray:
    shape = labels.shape
    forest, water, road, house = labels == FOREST, labels == WATER, labels == ROAD, roofs >= 0
    image = _render_fields(rng, parcels)
    image[forest] = _render_forest(rng, shape, sun)[forest]
    image[water] = _render_water(rng, water, river, scale)[water]
    image[road] = (_ROADS[roads.surface] * (1 + 0.05 * _fine_noise(rng, shape, 0.7))[..., None])[road]
    grain = 1 + 0.03 * _fine_noise(rng, shape, 0.5)
    image[house] = (_ROOFS[np.maximum(roofs, 0)] * (roof_shade * grain)[..., None])[house]
    image[house & ~ndimage.binary_erosion(house)] *= 0.85  # eaves
    image[_shadow(house, sun, 3 * scale + 1.5) & ~forest] *= 0.55
    image[_shadow(forest, sun, 4 * scale + 2) & ~house] *= 0.7
    image = ndimage.gaussian_filter(image, sigma=(0.6, 0.6, 0))  # optics

    stack = [image[..., i] for i in range(min(bands, len(_BASE_BANDS)))]
    for i in range(bands - len(_BASE_BANDS)):
        mix = (0.5 + 0.618 * i) % 1.0  # fixed per band, so adding bands never changes earlier ones
        stack.append((1 - mix) * image[..., 3] + mix * image[..., 4])
    cube = np.stack(stack)
    angle, (yy, xx) = rng.uniform(0, 2 * math.pi), _grid(shape)
    ramp = (yy / shape[0] - 0.5) * math.sin(angle) + (xx / shape[1] - 0.5) * math.cos(angle)
    illumination = 1 + rng.uniform(0.1, 0.25) * ramp + 0.04 * _smooth_noise(rng, shape, 2)
    noise_level = rng.uniform(2.5, 5.0)
    gain_rng, noise_rng = rng.spawn(2)  # per-band draws band by band, for the same reason
    cube *= illumination[None] * gain_rng.uniform(0.93, 1.07, bands).astype(np.float32)[:, None, None]
    cube += noise_level * noise_rng.standard_normal(cube.shape, dtype=np.float32)
    return np.clip(np.rint(cube), 1, 255).astype(np.uint8)


def _render_fields(rng: np.random.Generator, parcels: np.ndarray) -> np.ndarray:
    """Every pixel as field: a crop colour per parcel, crop rows at the parcel's own angle and spacing."""
    count = parcels.max() + 1
    crop = rng.integers(len(_CROPS), size=count)
    base = _CROPS[crop] * rng.uniform(0.92, 1.08, (count, 1)) + rng.normal(0, 5, (count, len(_BASE_BANDS)))
    between_rows = np.where((_CROPS[crop, 3] > 160)[:, None], _SOIL, 0.78 * base)  # soil between green rows
    strength = rng.uniform(0.15, 0.5, count) * (rng.random(count) < 0.8)
    angle, spacing = rng.uniform(0, math.pi, count), rng.uniform(3.5, 9.0, count)
    yy, xx = _grid(parcels.shape)
    phase = (xx * np.cos(angle)[parcels] + yy * np.sin(angle)[parcels]) * (2 * math.pi / spacing)[parcels]
    rows = (strength[parcels] * (0.5 + 0.5 * np.sin(phase)) ** 2)[..., None]
    patchy = 1 + 0.06 * _smooth_noise(rng, parcels.shape, 14) + 0.03 * _fine_noise(rng, parcels.shape, 1.0)
    image = (base[parcels] * (1 - rows) + between_rows[parcels] * rows) * patchy[..., None]
    margins = ndimage.grey_dilation(parcels, size=2) != parcels  # grass strips and tracks between parcels
    image[margins] = 0.6 * image[margins] + 0.4 * _MEADOW
    return image.astype(np.float32)


def _render_forest(rng: np.random.Generator, shape: tuple[int, int], sun: float) -> np.ndarray:
    """Packed tree crowns, domes lit on the sun side with dark gaps between, in conifer and broadleaf stands."""
    count = shape[0] * shape[1] // 22
    centres, radius, tint = np.zeros(shape, bool), np.zeros(shape, np.float32), np.ones(shape, np.float32)
    rows, cols = rng.integers(0, shape[0], count), rng.integers(0, shape[1], count)
    centres[rows, cols], radius[rows, cols] = True, rng.uniform(2.0, 3.8, count)
    tint[rows, cols] = rng.uniform(0.85, 1.15, count)
    distance, (near_rows, near_cols) = ndimage.distance_transform_edt(~centres, return_indices=True)
    radius, tint = radius[near_rows, near_cols], tint[near_rows, near_cols]
    yy, xx = _grid(shape)
    facing = ((yy - near_rows) * math.sin(sun) + (xx - near_cols) * math.cos(sun)) / radius
    dome = np.sqrt(np.clip(1 - (distance / radius) ** 2, 0, 1))
    light = np.where(distance < radius, tint * (0.6 + 0.35 * dome + 0.3 * facing), 0.45)
    mix = 1 / (1 + np.exp(-2.5 * _smooth_noise(rng, shape, 5)))[..., None]
    return ((1 - mix) * _CONIFER + mix * _BROADLEAF) * light[..., None].astype(np.float32)


def _render_water(rng: np.random.Generator, water: np.ndarray, river: np.ndarray, scale: float) -> np.ndarray:
    """Lighter shallows at the shore turning deep; rivers murkier than lakes; a faint gradient and ripples."""
    depth = (1 - np.exp(-ndimage.distance_transform_edt(water) / (5 * scale + 2)))[..., None]
    deep = _DEEP_WATER[river.astype(np.intp)] * (1 + 0.06 * _smooth_noise(rng, water.shape, 3))[..., None]
    ripples = 1 + 0.015 * _fine_noise(rng, water.shape, 1.0)
    return ((1 - depth) * _SHALLOW_WATER + depth * deep) * ripples[..., None]


def _shadow(caster: np.ndarray, sun: float, length: float) -> np.ndarray:
    """Pixels reached by moving ``caster`` away from the sun by up to ``length`` pixels."""
    shadow, (height, width) = np.zeros_like(caster), caster.shape
    for step in range(1, max(1, round(length)) + 1):
        dy, dx = round(-step * math.sin(sun)), round(-step * math.cos(sun))
        shadow[max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)] |= caster[
            max(-dy, 0) : height + min(-dy, 0), max(-dx, 0) : width + min(-dx, 0)
        ]
    return shadow & ~caster


# -- files -----------------------------------------------------------------------------------------
def write_scene(
    scene: SyntheticScene,
    image_path: str | Path,
    mask_path: str | Path,
    crs: str = "EPSG:32632",
    origin: tuple[float, float] = (500000.0, 5200000.0),
    resolution: float = 0.5,
) -> tuple[Path, Path]:
    """Write the image and its label mask as tiled, deflate-compressed GeoTIFFs; ``origin`` is the top-left
    corner (x, y) in ``crs`` units and ``resolution`` the pixel size. The mask carries the class colours."""
    (height, width), bands = scene.shape, scene.image.shape[0]
    transform = from_origin(*origin, resolution, resolution)
    image_path, mask_path = Path(image_path), Path(mask_path)
    image_path.parent.mkdir(parents=True, exist_ok=True)
    mask_path.parent.mkdir(parents=True, exist_ok=True)
    profile = dict(
        driver="GTiff",
        width=width,
        height=height,
        count=bands,
        dtype="uint8",
        crs=crs,
        transform=transform,
        nodata=NODATA_VALUE,
        tiled=True,
        blockxsize=GEOTIFF_BLOCK,
        blockysize=GEOTIFF_BLOCK,
        compress="deflate",
        predictor=2,
        photometric="RGB" if bands == 3 else "MINISBLACK",
    )  # GDAL makes a 4th band of RGB alpha
    with atomic_output(image_path) as temporary, rasterio.open(temporary, "w", **profile) as dst:
        dst.write(scene.image)
        dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue] + [ColorInterp.undefined] * (bands - 3)
        dst.descriptions = scene.band_names
    write_index_geotiff(mask_path, scene.labels, CRS.from_user_input(crs), transform, SCHEMA)
    return image_path, mask_path


def make_synthetic_dataset(
    out_dir: str | Path,
    n_scenes: int = 8,
    size: int | tuple[int, int] = 512,
    seed: int = 0,
    bands: int = 3,
    nodata_fraction: float = 0.0,
) -> Path:
    """``n_scenes`` scenes as ``images/scene_000.tif`` and ``masks/scene_000.tif``..., tiles of one imaginary
    region laid out in a grid, and a README. With ``nodata_fraction``, every second scene has a no-data part."""
    if n_scenes < 1:
        raise ConfigError(f"a synthetic dataset needs at least one scene, not {n_scenes}")
    out_dir = Path(out_dir)
    columns, resolution, (west, north) = math.ceil(math.sqrt(n_scenes)), 0.5, (500000.0, 5200000.0)
    scene_seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(n_scenes)]
    for i, scene_seed in enumerate(scene_seeds):
        scene = generate_scene(size, scene_seed, bands, nodata_fraction if i % 2 else 0.0)
        (height, width), (row, column) = scene.shape, divmod(i, columns)
        origin = (west + column * width * resolution, north - row * height * resolution)
        write_scene(
            scene,
            out_dir / "images" / f"scene_{i:03d}.tif",
            out_dir / "masks" / f"scene_{i:03d}.tif",
            origin=origin,
            resolution=resolution,
        )
    classes = "\n".join(f"  {c.code}  {c.name}" for c in SCHEMA.classes)
    readme = f"""Synthetic land-cover scenes made by landseg.data.synthetic.make_synthetic_dataset, seed {seed}.

images/scene_NNN.tif  {bands}-band uint8 GeoTIFF ({", ".join(band_names(bands))}); {NODATA_VALUE} = no-data
masks/scene_NNN.tif   1-band uint8 class codes of the "synthetic" schema; {NODATA_LABEL} = no-data
{classes}

{n_scenes} scenes of {height} x {width} px at {resolution} m in EPSG:32632 (UTM 32N), tiles of a grid
{columns} scenes wide from the top-left corner ({west}, {north}); neighbouring tiles do not join up.
Procedural fields, forest, water, roads and buildings; class shares roughly fields 40-55 %,
forest 20-30 %, water 8-15 %, roads 3-8 %, buildings 3-8 %.
No-data share in every second scene: {nodata_fraction}.
Scene seeds for landseg.data.synthetic.generate_scene: {scene_seeds}
"""
    with atomic_output(out_dir / "README.txt") as temporary:
        temporary.write_text(readme)
    return out_dir


THICK_CLOUD_TOA = (4200, 4000, 3900, 3800, 3900, 4000, 4100, 4100, 4150, 1800, 150, 3200, 2300)
"""A thick cloud's top-of-atmosphere reflectance x 10000 in Sentinel-2's B1 ... B8, B8A, B9 ... B12: bright and
flat in the visible and near infrared, lower in the SWIR, dark in the water-vapour and cirrus bands."""


def paint_cloud(
    image: np.ndarray,
    centre: tuple[int, int],
    radius: int,
    seed: int,
    shadow_offset: tuple[int, int] = (60, 70),
) -> np.ndarray:
    """A 13-band Sentinel-2 L1C stack with a soft-edged, textured thick cloud painted at ``centre`` and its
    shadow (the cloud's shape, darkening by up to 70 %) ``shadow_offset`` pixels away, as the sun casts it:
    a cloudy date of a clear one, for tests and pictures of cloud masks and composites."""
    bands, height, width = image.shape
    if bands != len(THICK_CLOUD_TOA):
        raise ConfigError(f"paint_cloud paints the 13-band Sentinel-2 stack, got {bands} bands")
    rows, cols = np.mgrid[:height, :width]
    texture = 1 + 0.15 * np.random.default_rng(seed).standard_normal((height, width))

    def disc(cy: float, cx: float) -> np.ndarray:
        return np.clip(1.5 - np.hypot(rows - cy, cols - cx) / radius, 0, 1)

    cover = np.clip(disc(*centre) * np.clip(texture, 0, 1.2), 0, 1)
    shade = 0.7 * disc(centre[0] + shadow_offset[0], centre[1] + shadow_offset[1])
    cloud = np.asarray(THICK_CLOUD_TOA, dtype=np.float32)[:, None, None]
    painted = image.astype(np.float32) * (1 - shade) * (1 - cover) + cloud * cover
    return np.rint(painted).astype(image.dtype)
