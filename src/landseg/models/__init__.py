"""Segmentation networks built from a plain-data spec; nothing here knows about data or training.

Names are imported on first use, so that ``landseg.config`` can import ``landseg.models.spec`` (the
``model`` section's type) without loading the builders and PyTorch.
"""

from typing import TYPE_CHECKING

from landseg.lazy import lazy_exports

if TYPE_CHECKING:
    from landseg.models.registry import build_model
    from landseg.models.spec import ModelSpec, list_architectures
    from landseg.models.weights import has_offline_weights, load_offline_classifier, offline_normalization

_EXPORTS = {
    "ModelSpec": "landseg.models.spec",
    "build_model": "landseg.models.registry",
    "has_offline_weights": "landseg.models.weights",
    "list_architectures": "landseg.models.spec",
    "load_offline_classifier": "landseg.models.weights",
    "offline_normalization": "landseg.models.weights",
}
__all__ = [
    "ModelSpec",
    "build_model",
    "has_offline_weights",
    "list_architectures",
    "load_offline_classifier",
    "offline_normalization",
]


__getattr__ = lazy_exports(__name__, _EXPORTS)
