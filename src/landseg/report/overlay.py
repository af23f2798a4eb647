"""Class maps over imagery: blended overlays, side-by-side comparisons with errors, coloured PNGs.

Class colours always come from the ``ClassSchema`` palette; pixels equal to ``IGNORE_INDEX`` carry no
class and are drawn transparent (or left as the underlying image in a blend).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from PIL import Image

from landseg.classes import IGNORE_INDEX, ClassSchema, color_hex
from landseg.io.figures import save_figure
from landseg.io.write import atomic_output

PathLike = str | os.PathLike
ERROR_COLOR = (230, 0, 0)
"""Wrong pixels in the error panel."""
PREVIEW_MAX_SIDE = 2048
"""Longest side drawn in figures; larger maps are decimated (nearest) so a whole scene stays cheap."""


def legend_patches(schema: ClassSchema, shares: Sequence[float] | None = None) -> list[Patch]:
    """One matplotlib patch per class in its display colour, optionally labelled with its share."""
    patches = []
    for i, land_class in enumerate(schema.classes):
        label = land_class.name if shares is None else f"{land_class.name} ({shares[i]:.1%})"
        patches.append(Patch(facecolor=color_hex(land_class.color), edgecolor="black", linewidth=0.5, label=label))
    return patches


def _check_index(index: np.ndarray, schema: ClassSchema, role: str) -> np.ndarray:
    index = np.asarray(index)
    if index.ndim != 2:
        raise ValueError(f"{role} must be an H x W index mask, got shape {index.shape}")
    if not np.issubdtype(index.dtype, np.integer):
        raise ValueError(f"{role} must hold integer class indices, got dtype {index.dtype}")
    bad = (index != IGNORE_INDEX) & ((index < 0) | (index >= schema.num_classes))
    if bad.any():
        raise ValueError(
            f"{role} holds values {np.unique(index[bad])[:5].tolist()} outside 0..{schema.num_classes - 1} "
            f"and {IGNORE_INDEX} (schema {schema.name!r})"
        )
    return index


def _check_image(image_rgb: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    image = np.asarray(image_rgb)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4) or image.dtype != np.uint8:
        raise ValueError(f"image must be H x W x 3 uint8, got shape {image.shape} dtype {image.dtype}")
    if image.shape[:2] != tuple(shape):
        raise ValueError(f"image is {image.shape[0]} x {image.shape[1]} but the mask is {shape[0]} x {shape[1]}")
    return image[..., :3]


def _rgba(index: np.ndarray, schema: ClassSchema) -> np.ndarray:
    """Class colours with ignore pixels fully transparent."""
    rgba = np.empty((*index.shape, 4), dtype=np.uint8)
    rgba[..., :3] = schema.colorize(index)
    rgba[..., 3] = np.where(index == IGNORE_INDEX, 0, 255)
    return rgba


def _decimation(shape: tuple[int, ...]) -> int:
    return max(1, -(-max(shape[:2]) // PREVIEW_MAX_SIDE))


def blend_overlay(image_rgb: np.ndarray, index: np.ndarray, schema: ClassSchema, alpha: float = 0.5) -> np.ndarray:
    """``image * (1 - alpha) + class colour * alpha`` as ``uint8`` RGB; ignore pixels keep the image."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in 0..1, got {alpha}")
    index = _check_index(index, schema, "index mask")
    image = _check_image(image_rgb, index.shape).astype(np.float32)
    colors = schema.colorize(index).astype(np.float32)
    blended = np.rint(image * (1.0 - alpha) + colors * alpha)
    labelled = (index != IGNORE_INDEX)[..., None]
    return np.where(labelled, blended, image).astype(np.uint8)


def error_map(image_rgb: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """RGBA: the image in grey, wrong pixels in ``ERROR_COLOR``, pixels without truth transparent."""
    grey = np.rint(image_rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32))
    # Lighten so the red errors stand out on dark imagery.
    grey = (96 + grey * (159 / 255)).astype(np.uint8)
    rgba = np.empty((*truth.shape, 4), dtype=np.uint8)
    rgba[..., :3] = grey[..., None]
    wrong = (truth != pred) & (truth != IGNORE_INDEX)
    rgba[wrong, :3] = ERROR_COLOR
    rgba[..., 3] = np.where(truth == IGNORE_INDEX, 0, 255)
    return rgba


def render_comparison(
    image_rgb: np.ndarray,
    truth_index: np.ndarray | None,
    pred_index: np.ndarray,
    schema: ClassSchema,
    path: PathLike,
    title: str | None = None,
) -> Path:
    """Image | truth | prediction | errors side by side with a class legend (image | prediction
    without truth). The errors panel titles the share of labelled pixels predicted wrong."""
    pred = _check_index(pred_index, schema, "prediction")
    image = _check_image(image_rgb, pred.shape)
    truth = None if truth_index is None else _check_index(truth_index, schema, "truth")
    if truth is not None and truth.shape != pred.shape:
        raise ValueError(f"truth is {truth.shape} but the prediction is {pred.shape}")
    step = _decimation(pred.shape)
    image, pred = image[::step, ::step], pred[::step, ::step]
    panels: list[tuple[str, np.ndarray]] = [("image", image)]
    if truth is not None:
        truth = truth[::step, ::step]
        panels.append(("truth", _rgba(truth, schema)))
    panels.append(("prediction", _rgba(pred, schema)))
    extra_legend = []
    if truth is not None:
        labelled = truth != IGNORE_INDEX
        wrong = int(((truth != pred) & labelled).sum())
        share = wrong / labelled.sum() if labelled.any() else float("nan")
        panels.append((f"errors ({share:.1%} of labelled px)", error_map(image, truth, pred)))
        extra_legend.append(Patch(facecolor=color_hex(ERROR_COLOR), edgecolor="black", linewidth=0.5, label="error"))
        if not labelled.all():
            extra_legend.append(Patch(facecolor="white", edgecolor="black", linewidth=0.5, label="no label"))

    height, width = pred.shape
    panel_width = 3.6
    panel_height = panel_width * height / width
    fig = Figure(figsize=(panel_width * len(panels), panel_height + 0.8), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (label, picture) in zip(axes, panels, strict=False):
        ax.imshow(picture, interpolation="nearest")
        ax.set_title(label, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = legend_patches(schema) + extra_legend
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 7), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def save_colorized_png(index: np.ndarray, schema: ClassSchema, path: PathLike, legend: bool = True) -> Path:
    """A class map as PNG in display colours (ignore transparent).

    ``legend=False`` writes the map pixel for pixel (RGBA). ``legend=True`` draws it, decimated to at
    most ``PREVIEW_MAX_SIDE`` pixels a side, beside a legend giving each class's share of the map.
    """
    index = _check_index(index, schema, "class map")
    target = Path(path)
    if not legend:
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(target) as temp:
            Image.fromarray(_rgba(index, schema), mode="RGBA").save(temp, format="PNG")
        return target
    counts = np.bincount(index[index != IGNORE_INDEX].ravel().astype(np.int64), minlength=schema.num_classes)
    shares = counts / counts.sum() if counts.sum() else np.zeros(schema.num_classes)
    step = _decimation(index.shape)
    preview = _rgba(index[::step, ::step], schema)
    height, width = preview.shape[:2]
    dpi = 100
    # Draw the map near one screen pixel per preview pixel, but never so small the legend dwarfs it.
    map_width = min(max(width / dpi, 4.0), 14.0)
    map_height = map_width * height / width
    fig_height = max(map_height, 0.35 * schema.num_classes + 0.8)
    fig = Figure(figsize=(map_width + 2.8, fig_height), dpi=dpi, layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(preview, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(
        handles=legend_patches(schema, shares.tolist()),
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        fontsize=9,
        title=f"{schema.name} classes",
        title_fontsize=9,
        frameon=False,
    )
    return save_figure(fig, target, dpi=dpi)
