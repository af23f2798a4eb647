"""Segmentation networks built from a plain-data spec; nothing here knows about data or training."""

from landseg.models.registry import ModelSpec, build_model, list_architectures
from landseg.models.weights import has_offline_weights, load_offline_classifier, offline_normalization

__all__ = [
    "ModelSpec",
    "build_model",
    "has_offline_weights",
    "list_architectures",
    "load_offline_classifier",
    "offline_normalization",
]
