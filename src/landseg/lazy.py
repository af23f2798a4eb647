"""Package attributes imported on first use, so that ``landseg --help`` does not load torch or FastAPI."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` (PEP 562) for ``package``: ``exports`` maps a name to the module defining it.

    Type checkers see such attributes as ``Any``; a package that wants them checked imports the same names
    under ``TYPE_CHECKING`` too."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(exports[name]), name)

    return __getattr__
