"""landseg: land-cover maps from satellite and aerial imagery by semantic segmentation.

The Python API (``landseg.api``, docs/API.md) is imported on first use, so ``import landseg`` stays light:
``landseg.load_model``, ``landseg.predict_scene``, ``landseg.train``, ``landseg.evaluate``,
``landseg.sample`` and ``landseg.assess``.

``landseg.train``, ``landseg.evaluate`` and ``landseg.assess`` are also the names of the packages and module that
do the work, and importing a submodule sets the package attribute of that name. So those three modules are made
callable instead (``CallableModule``): ``landseg.train(...)`` runs ``landseg.api.train`` and
``landseg.train.run`` is still the module, whichever was touched first.
"""

from __future__ import annotations

import sys
from importlib import import_module
from types import ModuleType
from typing import Any

from landseg.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "ArrayResult": "landseg.api",
    "Model": "landseg.api",
    "calibrate": "landseg.api",
    "composite": "landseg.api",
    "load_model": "landseg.api",
    "predict_scene": "landseg.api",
    "quantize": "landseg.api",
    "sample": "landseg.api",
}
_CALLABLE_MODULES = ("train", "evaluate", "assess", "suggest")
"""Submodules that are also API functions of the same name in ``landseg.api``."""
__all__ = sorted([*_EXPORTS, *_CALLABLE_MODULES])

_exported = lazy_exports(__name__, _EXPORTS)


class CallableModule(ModuleType):
    """A submodule that, called, runs the ``landseg.api`` function of its name (see the package docstring)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        api_function = getattr(import_module("landseg.api"), self.__name__.rpartition(".")[2])
        return api_function(*args, **kwargs)


class _Package(ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        # The import system sets ``landseg.train`` to the subpackage once it is imported.
        if name in _CALLABLE_MODULES and isinstance(value, ModuleType):
            value.__class__ = CallableModule
        super().__setattr__(name, value)


def __getattr__(name: str) -> Any:
    if name in _CALLABLE_MODULES:
        return import_module(f"{__name__}.{name}")  # importing sets the attribute, made callable above
    return _exported(name)


sys.modules[__name__].__class__ = _Package
