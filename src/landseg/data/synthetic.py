"""Seeded, georeferenced land-cover scenes for the tests and ``landseg demo``.

A scene is laid out the way the classes cover each other on the ground: roads first, then water (rivers
pass under bridges, lakes keep clear of roads), buildings in villages beside the roads, forest in what is
left, and fields everywhere else. Each class then gets its own colours *and* texture (crop rows in
several directions, speckled canopy, smooth water, grey asphalt, gabled roofs with cast shadows), and the
whole scene gets blur, uneven illumination and sensor noise. Class colours overlap, so a model has to
use texture and shape as well as colour.

The layout scales with the scene size (96 px and 512 px scenes show the same kind of landscape, in less
or more detail) while textures stay at pixel scale, so class shares hold at every size.
"""

from __future__ import annotations

import math
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin
from scipy import ndimage

from landseg.classes import IGNORE_INDEX, get_schema
from landseg.errors import ConfigError

SCHEMA = get_schema("synthetic")
_CODES = {c.name: c.code for c in SCHEMA.classes}
FIELD, FOREST, WATER, ROAD, BUILDING = (_CODES[n] for n in ("Field", "Forest", "Water", "Road", "Building"))
NODATA_LABEL = IGNORE_INDEX
NODATA_VALUE = 0
"""Image value of no-data pixels; valid pixels are kept at 1 or more so 0 is unambiguous."""

# Digital numbers per material in the bands R, G, B, NIR, SWIR. NIR is high for green vegetation and
# near zero for water; SWIR is high for dry soil and roofs. Bands past these blend NIR and SWIR.
_CROPS = np.array([
    [96, 132, 62, 205, 105],   # young cereal
    [124, 150, 74, 190, 115],  # meadow
    [80, 114, 54, 215, 95],    # maize
    [150, 162, 88, 170, 135],  # ripening crop
    [206, 186, 112, 140, 170],  # ripe wheat
    [222, 206, 144, 130, 180],  # stubble
    [152, 120, 86, 95, 165],   # ploughed soil
    [124, 100, 76, 88, 150],   # wet soil
], dtype=np.float32)
_SOIL = np.array([138, 112, 82, 92, 158], dtype=np.float32)
_CONIFER = np.array([40, 66, 40, 165, 72], dtype=np.float32)
_BROADLEAF = np.array([62, 92, 50, 195, 88], dtype=np.float32)
_DEEP_WATER = np.array([[30, 58, 78, 14, 6], [52, 74, 70, 26, 10]], dtype=np.float32)  # lake, river
_SHALLOW_WATER = np.array([72, 96, 86, 45, 20], dtype=np.float32)
_ROADS = np.array([[108, 108, 110, 72, 118], [156, 154, 148, 98, 152]], dtype=np.float32)  # asphalt, concrete
_ROOFS = np.array([
    [170, 82, 60, 92, 132],    # terracotta
    [138, 64, 52, 82, 120],    # dark red tiles
    [92, 94, 100, 70, 108],    # slate
    [164, 164, 160, 104, 150],  # grey metal
    [222, 220, 214, 150, 196],  # white flat roof
], dtype=np.float32)
_FLAT_ROOFS = (3, 4)
_BASE_BANDS = ("red", "green", "blue", "nir", "swir")

# Share ranges of the four smaller classes; fields take the rest (about 40-55 %).
_SHARE_RANGES = {FOREST: (0.22, 0.29), WATER: (0.09, 0.14), ROAD: (0.04, 0.065), BUILDING: (0.04, 0.065)}
_FIELD_RANGE = (0.43, 0.53)


@dataclass(frozen=True)
class SyntheticScene:
    image: np.ndarray
    """``(bands, H, W) uint8``; 0 only where the scene has no data."""
    labels: np.ndarray
    """``(H, W) uint8`` codes of the ``synthetic`` schema; ``NODATA_LABEL`` where there is no data."""
    seed: int
    band_names: tuple[str, ...]

    @property
    def shape(self) -> tuple[int, int]:
        return self.labels.shape  # type: ignore[return-value]

    def class_shares(self) -> np.ndarray:
        """Share of each class among labelled pixels, indexed by class code."""
        counts = np.bincount(self.labels[self.labels != NODATA_LABEL], minlength=SCHEMA.num_classes)
        return counts / max(counts.sum(), 1)


@dataclass
class _Roads:
    """Road pixels, and what every pixel knows about its nearest road."""
    mask: np.ndarray
    kind: np.ndarray
    """Attribute of the nearest line (road surface, water body) per pixel."""
    edge_distance: np.ndarray
    normal: np.ndarray
    """``(2, H, W)`` unit vector from the nearest centre line towards the pixel."""


def generate_scene(size: int | tuple[int, int], seed: int, bands: int = 3, nodata_fraction: float = 0.0) -> SyntheticScene:
    """A procedural land-cover scene; the same ``seed`` always gives the same scene.

    ``bands``: 3 gives RGB; a 4th band is NIR-like, a 5th SWIR-like, further ones blend the two.
    ``nodata_fraction``: share of the scene turned into no-data (a cut-off border or a hole), image 0 and
    label ``NODATA_LABEL``; the rest of the scene is the same as without it.
    """
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
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

    labels = np.full(shape, FIELD, dtype=np.uint8)
    parcels = _parcels(rng, shape)
    roads = _roads(rng, shape, targets[ROAD])
    labels[roads.mask] = ROAD
    water, river = _water(rng, shape, scale, targets[WATER], roads)
    labels[water & ~roads.mask] = WATER
    roofs, roof_shade = _buildings(rng, shape, scale, targets[BUILDING], labels, roads)
    labels[roofs >= 0] = BUILDING
    labels[_forest(rng, shape, scale, targets[FOREST], labels, parcels)] = FOREST

    image = _render(rng, labels, bands, scale, parcels, roads, river, roofs, roof_shade)
    if nodata_fraction > 0:
        missing = _nodata_region(rng, shape, nodata_fraction)
        image[:, missing] = NODATA_VALUE
        labels[missing] = NODATA_LABEL
    return SyntheticScene(image=image, labels=labels, seed=seed, band_names=band_names(bands))


def band_names(bands: int) -> tuple[str, ...]:
    """Names of the bands of a ``bands``-band scene: red, green, blue, nir, swir, ir_blend_0, ..."""
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
    if count <= 0 or candidates.size == 0:
        return np.zeros(score.shape, dtype=bool)
    count = min(count, candidates.size)
    threshold = np.partition(candidates, candidates.size - count)[candidates.size - count]
    return allowed & (score >= threshold)


def _parcels(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Field parcel id per pixel: a Voronoi tiling, stretched along the local field direction and warped."""
    height, width = shape
    count = int(rng.integers(16, 30))
    angle, stretch = rng.uniform(0, math.pi), rng.uniform(1.3, 2.2)
    wobble = 0.04 * max(shape)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    yy += wobble * _smooth_noise(rng, shape, 4)
    xx += wobble * _smooth_noise(rng, shape, 4)
    along = (xx * math.cos(angle) + yy * math.sin(angle)) / stretch
    across = -xx * math.sin(angle) + yy * math.cos(angle)
    seeds_y, seeds_x = rng.uniform(0, height, count), rng.uniform(0, width, count)
    seeds_along = (seeds_x * math.cos(angle) + seeds_y * math.sin(angle)) / stretch
    seeds_across = -seeds_x * math.sin(angle) + seeds_y * math.cos(angle)
    nearest = np.full(shape, np.inf, dtype=np.float32)
    ids = np.zeros(shape, dtype=np.int32)
    for i in range(count):
        distance = (along - seeds_along[i]) ** 2 + (across - seeds_across[i]) ** 2
        closer = distance < nearest
        nearest[closer], ids[closer] = distance[closer], i
    return ids


def _edge_point(rng: np.random.Generator, shape: tuple[int, int], side: int) -> np.ndarray:
    height, width = shape
    t = rng.uniform(0.1, 0.9)
    return np.array([(0.0, t * width), (t * height, width - 1.0), (height - 1.0, t * width), (t * height, 0.0)][side])


def _draw_lines(shape: tuple[int, int], lines: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple:
    """Rasterise ``(points, half_width, kind)`` polylines on a padded canvas, so lines that run just outside
    the image still cover its edge; return distance and nearest-line attributes cropped to the image."""
    pad = int(0.06 * max(shape)) + 4
    canvas = (shape[0] + 2 * pad, shape[1] + 2 * pad)
    centre = np.zeros(canvas, dtype=bool)
    half_width = np.zeros(canvas, dtype=np.float32)
    kind = np.zeros(canvas, dtype=np.int8)
    for points, widths, kinds in lines:
        rows, cols = np.round(points[:, 0]).astype(int) + pad, np.round(points[:, 1]).astype(int) + pad
        inside = (rows >= 0) & (rows < canvas[0]) & (cols >= 0) & (cols < canvas[1])
        rows, cols = rows[inside], cols[inside]
        centre[rows, cols], half_width[rows, cols], kind[rows, cols] = True, widths[inside], kinds[inside]
    distance, (near_rows, near_cols) = ndimage.distance_transform_edt(~centre, return_indices=True)
    crop = (slice(pad, pad + shape[0]), slice(pad, pad + shape[1]))
    yy, xx = np.mgrid[0 : canvas[0], 0 : canvas[1]]
    normal = np.stack([yy - near_rows, xx - near_cols])[:, crop[0], crop[1]].astype(np.float32)
    normal /= np.maximum(np.hypot(normal[0], normal[1]), 1e-6)
    return (distance[crop].astype(np.float32), half_width[near_rows, near_cols][crop],
            kind[near_rows, near_cols][crop], normal)


def _curve(start: np.ndarray, end: np.ndarray, bend: float, wiggles: list[tuple[float, float, float]]) -> tuple:
    """Points along a bent line from ``start`` to ``end`` with sinusoidal side offsets, and their position 0..1."""
    length = float(np.hypot(*(end - start)))
    t = np.linspace(0.0, 1.0, int(6 * length) + 16)
    side = np.array([-(end - start)[1], (end - start)[0]]) / max(length, 1e-6)
    offset = bend * length * 4 * t * (1 - t)
    for amplitude, frequency, phase in wiggles:
        offset = offset + amplitude * length * np.sin(2 * math.pi * frequency * t + phase)
    return start + t[:, None] * (end - start) + offset[:, None] * side, t


def _towards_centre(shape: tuple[int, int], start: np.ndarray, end: np.ndarray) -> float:
    """+1 or -1: the side of the line from ``start`` to ``end`` that the image centre lies on, as ``_curve`` bends."""
    direction, to_centre = end - start, np.array(shape) / 2 - start
    return 1.0 if to_centre[1] * direction[0] - to_centre[0] * direction[1] >= 0 else -1.0


def _roads(rng: np.random.Generator, shape: tuple[int, int], target: float) -> _Roads:
    """1-3 roads, edge to edge or ending on an earlier road, widened until they cover ``target``."""
    lines, drawn = [], []
    for i in range(int(rng.choice([1, 2, 3], p=[0.2, 0.4, 0.4]))):
        side = int(rng.integers(4))
        start = _edge_point(rng, shape, side)
        if drawn and rng.random() < 0.5:
            previous = drawn[int(rng.integers(len(drawn)))]
            end = previous[int(rng.integers(len(previous) // 5, 4 * len(previous) // 5))]
        else:
            end = _edge_point(rng, shape, (side + int(rng.choice([1, 2, 2, 3]))) % 4)
        bend = rng.uniform(0, 0.15) * _towards_centre(shape, start, end)
        points, _ = _curve(start, end, bend, [(rng.uniform(0, 0.015), rng.uniform(0.5, 1.5), rng.uniform(0, 6.3))])
        drawn.append(points)
        relative_width = 1.0 if i == 0 else rng.uniform(0.6, 0.9)
        lines.append((points, np.full(len(points), relative_width), np.full(len(points), rng.integers(len(_ROADS)))))
    distance, relative_width, kind, normal = _draw_lines(shape, lines)
    ratio = distance / relative_width
    half_width = float(np.clip(np.quantile(ratio, target), 1.2, 0.035 * max(shape) + 1))
    road_half_width = half_width * relative_width
    return _Roads(distance <= road_half_width, kind, distance - road_half_width, normal)


def _water(rng: np.random.Generator, shape: tuple[int, int], scale: float, target: float,
           roads: _Roads) -> tuple[np.ndarray, np.ndarray]:
    """A meandering river (most scenes) and lakes that fill the water share up to ``target``;
    returns the water and the river masks."""
    lines = []
    if rng.random() < 0.65:
        side = int(rng.integers(4))
        start, end = _edge_point(rng, shape, side), _edge_point(rng, shape, (side + 2) % 4)
        wiggles = [(rng.uniform(0.04, 0.09), rng.uniform(1.0, 2.5), rng.uniform(0, 6.3)),
                   (rng.uniform(0.01, 0.025), rng.uniform(3.0, 6.0), rng.uniform(0, 6.3))]
        points, t = _curve(start, end, rng.uniform(-0.1, 0.1), wiggles)
        half_width = max(1.5, rng.uniform(0.012, 0.02) * max(shape)) * (1 + 0.3 * np.sin(2 * math.pi * rng.uniform(1, 3) * t))
        lines.append((points, half_width, np.ones(len(points))))
    if lines:
        distance, half_width, _, _ = _draw_lines(shape, lines)
        river = distance <= half_width
    else:
        river = np.zeros(shape, dtype=bool)
    lake_score = _smooth_noise(rng, shape, 3) + 0.35 * _smooth_noise(rng, shape, 10)
    allowed = ~river & (roads.edge_distance > 3 * scale + 2)
    lakes = _top_share(lake_score, allowed, round(target * river.size) - int((river & ~roads.mask).sum()))
    lakes = ndimage.binary_opening(lakes, iterations=2)  # no one-pixel ponds in corners left by the roads
    return river | lakes, river


def _buildings(rng: np.random.Generator, shape: tuple[int, int], scale: float, target: float,
               labels: np.ndarray, roads: _Roads) -> tuple[np.ndarray, np.ndarray]:
    """Rectangles facing the road in 1-3 villages; returns roof colour per pixel (-1: none) and roof shading."""
    roofs = np.full(shape, -1, dtype=np.int8)
    shade = np.ones(shape, dtype=np.float32)
    size = max(scale, 0.35)
    near_road = (labels == FIELD) & (roads.edge_distance > 1) & (roads.edge_distance < 40 * size + 4)
    candidates = np.flatnonzero(near_road)
    if candidates.size == 0:
        return roofs, shade
    yy, xx = np.divmod(candidates, shape[1])
    centres = candidates[rng.integers(candidates.size, size=int(rng.integers(1, 4)))]
    cy, cx = np.divmod(centres, shape[1])
    spread = 70 * size + 10
    closeness = np.exp(-((yy[:, None] - cy) ** 2 + (xx[:, None] - cx) ** 2) / (2 * spread**2)).max(axis=1)
    weights = closeness + 0.03
    picks = rng.choice(candidates, size=1500, p=weights / weights.sum())
    blocked = labels != FIELD
    wanted, covered = target * labels.size, 0
    margin, sun = 1.5 * size + 1, rng.uniform(0, 2 * math.pi)
    for pick in picks:
        if covered >= wanted:
            break
        y0, x0 = divmod(int(pick), shape[1])
        depth, length = rng.uniform(3.5, 6.5) * size, rng.uniform(4.5, 11) * size
        ny, nx = roads.normal[:, y0, x0]
        turn = rng.normal(0, 0.05)
        ny, nx = ny * math.cos(turn) - nx * math.sin(turn), ny * math.sin(turn) + nx * math.cos(turn)
        reach = int(math.ceil(math.hypot(depth, length) + margin)) + 1
        top, left = y0 - reach, x0 - reach
        if top < 0 or left < 0 or y0 + reach >= shape[0] or x0 + reach >= shape[1]:
            continue
        dy, dx = np.mgrid[-reach : reach + 1, -reach : reach + 1]
        across = dy * ny + dx * nx
        along = -dy * nx + dx * ny
        window = (slice(top, y0 + reach + 1), slice(left, x0 + reach + 1))
        footprint = (np.abs(across) <= depth) & (np.abs(along) <= length)
        if blocked[window][(np.abs(across) <= depth + margin) & (np.abs(along) <= length + margin)].any():
            continue
        roof = int(rng.integers(len(_ROOFS)))
        roofs[window][footprint] = roof
        if roof not in _FLAT_ROOFS:  # gable: the roof half that faces the sun is brighter
            facing = math.cos(sun) * ny + math.sin(sun) * nx
            shade[window][footprint] = np.where(across[footprint] > 0, 1 + 0.14 * facing, 1 - 0.14 * facing)
        blocked[window] |= footprint
        covered += int(footprint.sum())
    return roofs, shade


def _forest(rng: np.random.Generator, shape: tuple[int, int], scale: float, target: float,
            labels: np.ndarray, parcels: np.ndarray) -> np.ndarray:
    """Noisy blobs on the remaining land; whole parcels lean to forest or not, so woods follow field edges."""
    parcel_bias = rng.normal(0, 0.8, parcels.max() + 1).astype(np.float32)
    score = _smooth_noise(rng, shape, 3) + 0.5 * _smooth_noise(rng, shape, 8) + parcel_bias[parcels]
    score += 0.25 * _smooth_noise(rng, shape, 48)
    clear_of_houses = ndimage.distance_transform_edt(labels != BUILDING) > 5 * scale + 2
    return _top_share(score, (labels == FIELD) & clear_of_houses, round(target * labels.size))


def _nodata_region(rng: np.random.Generator, shape: tuple[int, int], fraction: float) -> np.ndarray:
    """A cut-off border (like the edge of a swath) or a hole (like a masked cloud)."""
    if rng.random() < 0.5:
        angle = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
        score = (yy * math.sin(angle) + xx * math.cos(angle)).astype(np.float32)
    else:
        score = _smooth_noise(rng, shape, 3)
    return _top_share(score, np.ones(shape, dtype=bool), round(fraction * score.size))


# -- rendering -------------------------------------------------------------------------------------
def _render(rng: np.random.Generator, labels: np.ndarray, bands: int, scale: float, parcels: np.ndarray,
            roads: _Roads, river: np.ndarray, roofs: np.ndarray, roof_shade: np.ndarray) -> np.ndarray:
    shape = labels.shape
    sun = rng.uniform(0, 2 * math.pi)
    image = _render_fields(rng, parcels)
    forest, river_or_lake = labels == FOREST, labels == WATER
    image[forest] = _render_forest(rng, shape, sun)[forest]
    image[river_or_lake] = _render_water(rng, river_or_lake, river, scale)[river_or_lake]
    road = labels == ROAD
    asphalt = _ROADS[roads.kind] * (1 + 0.05 * _fine_noise(rng, shape, 0.7))[..., None]
    image[road] = asphalt[road]
    house = roofs >= 0
    grain = 1 + 0.03 * _fine_noise(rng, shape, 0.5)
    image[house] = (_ROOFS[np.maximum(roofs, 0)] * (roof_shade * grain)[..., None])[house]
    image[house & ~ndimage.binary_erosion(house)] *= 0.85  # eaves
    ground = ~house & ~forest
    image[_shadow(house, sun, 3 * scale + 1.5) & ground] *= 0.55
    image[_shadow(forest, sun, 4 * scale + 2) & ground] *= 0.7

    image = ndimage.gaussian_filter(image, sigma=(0.6, 0.6, 0))  # optics
    stack = [image[..., i] for i in range(min(bands, len(_BASE_BANDS)))]
    for i in range(bands - len(_BASE_BANDS)):
        mix = (i + 1) / (bands - len(_BASE_BANDS) + 1)
        stack.append((1 - mix) * image[..., 3] + mix * image[..., 4])
    cube = np.stack(stack)
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    ramp = (yy / shape[0] - 0.5) * math.sin(angle) + (xx / shape[1] - 0.5) * math.cos(angle)
    illumination = 1 + rng.uniform(0.1, 0.25) * ramp + 0.04 * _smooth_noise(rng, shape, 2)
    gains = rng.uniform(0.93, 1.07, bands).astype(np.float32)
    cube *= illumination[None] * gains[:, None, None]
    cube += rng.uniform(2.5, 5.0) * rng.standard_normal(cube.shape, dtype=np.float32)
    return np.clip(np.rint(cube), 1, 255).astype(np.uint8)


def _render_fields(rng: np.random.Generator, parcels: np.ndarray) -> np.ndarray:
    """Every pixel as field: a crop colour per parcel, crop rows at the parcel's own angle and spacing."""
    count = parcels.max() + 1
    crop = rng.integers(len(_CROPS), size=count)
    base = _CROPS[crop] * rng.uniform(0.92, 1.08, (count, 1)) + rng.normal(0, 5, (count, len(_BASE_BANDS)))
    green = _CROPS[crop, 3] > 160
    between_rows = np.where(green[:, None], _SOIL, 0.78 * base)  # soil shows between green rows, furrows are dark
    strength = rng.uniform(0.15, 0.5, count) * (rng.random(count) < 0.8)
    angle, spacing = rng.uniform(0, math.pi, count), rng.uniform(3.5, 9.0, count)
    yy, xx = np.mgrid[0 : parcels.shape[0], 0 : parcels.shape[1]].astype(np.float32)
    phase = (xx * np.cos(angle)[parcels] + yy * np.sin(angle)[parcels]) * (2 * math.pi / spacing)[parcels]
    rows = (strength[parcels] * (0.5 + 0.5 * np.sin(phase)) ** 2)[..., None]
    patchy = 1 + 0.06 * _smooth_noise(rng, parcels.shape, 14) + 0.03 * _fine_noise(rng, parcels.shape, 1.0)
    image = (base[parcels] * (1 - rows) + between_rows[parcels] * rows) * patchy[..., None]
    margins = ndimage.grey_dilation(parcels, size=2) != parcels  # tracks and grass strips between parcels
    image[margins] = 0.6 * image[margins] + 0.4 * _CROPS[1]
    return image.astype(np.float32)


def _render_forest(rng: np.random.Generator, shape: tuple[int, int], sun: float) -> np.ndarray:
    """Dark canopy mixing conifer and broadleaf stands; crowns lit on the sun side, dark gaps between."""
    mix = 1 / (1 + np.exp(-2.5 * _smooth_noise(rng, shape, 5)))[..., None]
    base = (1 - mix) * _CONIFER + mix * _BROADLEAF
    crowns = _fine_noise(rng, shape, 1.6)
    slope_y, slope_x = np.gradient(crowns)
    lit = -(math.sin(sun) * slope_y + math.cos(sun) * slope_x)
    texture = 1 + 0.12 * crowns + 0.9 * lit + 0.06 * _smooth_noise(rng, shape, 20)
    texture = np.where(crowns < -1.3, 0.6 * texture, texture)
    return base * np.clip(texture, 0.35, 1.8)[..., None]


def _render_water(rng: np.random.Generator, water: np.ndarray, river: np.ndarray, scale: float) -> np.ndarray:
    """Shallow, lighter water at the shore turning deep; rivers murkier than lakes; a faint gradient."""
    depth = 1 - np.exp(-ndimage.distance_transform_edt(water) / (5 * scale + 2))
    deep = _DEEP_WATER[river.astype(np.intp)] * (1 + 0.06 * _smooth_noise(rng, water.shape, 3))[..., None]
    ripples = 1 + 0.015 * _fine_noise(rng, water.shape, 1.0)
    return ((1 - depth)[..., None] * _SHALLOW_WATER + depth[..., None] * deep) * ripples[..., None]


def _shadow(caster: np.ndarray, sun: float, length: float) -> np.ndarray:
    """Pixels reached by moving ``caster`` away from the sun by up to ``length`` pixels."""
    shadow = np.zeros_like(caster)
    height, width = caster.shape
    for step in range(1, max(1, round(length)) + 1):
        dy, dx = round(-step * math.sin(sun)), round(-step * math.cos(sun))
        shadow[max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)] |= \
            caster[max(-dy, 0) : height + min(-dy, 0), max(-dx, 0) : width + min(-dx, 0)]
    return shadow & ~caster


# -- files -----------------------------------------------------------------------------------------
def _temporary_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")


def _write_geotiff(path: Path, data: np.ndarray, profile: dict, describe) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_sibling(path)
    try:
        with rasterio.open(temporary, "w", driver="GTiff", **profile) as dst:
            dst.write(data)
            describe(dst)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_scene(scene: SyntheticScene, image_path: str | Path, mask_path: str | Path, crs: str = "EPSG:32632",
                origin: tuple[float, float] = (500000.0, 5200000.0), resolution: float = 0.5) -> tuple[Path, Path]:
    """Write the image and its label mask as tiled, compressed GeoTIFFs; ``origin`` is the top-left corner
    (x, y) in ``crs`` units and ``resolution`` the pixel size."""
    height, width = scene.shape
    block = 256 if min(height, width) >= 256 else 16 * max(1, min(height, width) // 16)
    common = dict(width=width, height=height, crs=crs, transform=from_origin(*origin, resolution, resolution),
                  dtype="uint8", tiled=True, blockxsize=block, blockysize=block, compress="deflate")
    bands = scene.image.shape[0]

    def describe_image(dst):
        dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue] + [ColorInterp.undefined] * (bands - 3)
        dst.descriptions = scene.band_names

    def describe_mask(dst):
        dst.write_colormap(1, SCHEMA.colormap())
        dst.update_tags(schema=SCHEMA.name, classes=",".join(SCHEMA.names))

    image_path, mask_path = Path(image_path), Path(mask_path)
    _write_geotiff(image_path, scene.image, dict(common, count=bands, nodata=NODATA_VALUE, predictor=2,
                                                 photometric="RGB" if bands == 3 else "MINISBLACK"), describe_image)
    _write_geotiff(mask_path, scene.labels[None], dict(common, count=1, nodata=NODATA_LABEL), describe_mask)
    return image_path, mask_path


def make_synthetic_dataset(out_dir: str | Path, n_scenes: int = 8, size: int = 512, seed: int = 0, bands: int = 3,
                           nodata_fraction: float = 0.0) -> Path:
    """``n_scenes`` scenes as ``images/scene_000.tif`` and ``masks/scene_000.tif``, tiles of one imaginary
    region in a grid, plus a README. With ``nodata_fraction``, every second scene has a no-data part."""
    out_dir = Path(out_dir)
    columns = max(1, math.ceil(math.sqrt(n_scenes)))
    resolution, (west, north) = 0.5, (500000.0, 5200000.0)
    scene_seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(n_scenes)]
    for i, scene_seed in enumerate(scene_seeds):
        scene = generate_scene(size, scene_seed, bands, nodata_fraction if i % 2 else 0.0)
        height, width = scene.shape
        row, column = divmod(i, columns)
        origin = (west + column * width * resolution, north - row * height * resolution)
        write_scene(scene, out_dir / "images" / f"scene_{i:03d}.tif", out_dir / "masks" / f"scene_{i:03d}.tif",
                    origin=origin, resolution=resolution)
    readme = out_dir / "README.txt"
    temporary = _temporary_sibling(readme)
    temporary.write_text(_readme_text(n_scenes, size, seed, bands, nodata_fraction, scene_seeds))
    os.replace(temporary, readme)
    return out_dir


def _readme_text(n_scenes, size, seed, bands, nodata_fraction, scene_seeds) -> str:
    classes = "\n".join(f"  {c.code}  {c.name}" for c in SCHEMA.classes)
    return f"""Synthetic land-cover scenes made by landseg (landseg.data.synthetic), seed {seed}.

images/scene_NNN.tif  {bands}-band uint8 GeoTIFF ({', '.join(band_names(bands))}),
                      0 = no-data
masks/scene_NNN.tif   1-band uint8 class codes, schema "synthetic", {NODATA_LABEL} = no-data:
{classes}

{n_scenes} scenes of {size} x {size} px at 0.5 m in EPSG:32632 (UTM 32N), laid out as a grid of tiles
from (500000, 5200000). Procedural fields, forest, water, roads and buildings; shares roughly fields
40-55 %, forest 20-30 %, water 8-15 %, roads 3-8 %, buildings 3-8 %.
No-data fraction in every second scene: {nodata_fraction}.
Scene seeds (landseg.data.synthetic.generate_scene): {scene_seeds}
"""
