"""The ``landseg`` command line (Typer). The top layer: nothing else in landseg imports it."""

from landseg.cli.main import app

__all__ = ["app"]
