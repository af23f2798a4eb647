"""The one error type users see: it names the file and the problem.

The CLI turns a ``LandsegError`` into a one-line message and a non-zero exit code; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

from os import PathLike


class LandsegError(Exception):
    """A problem with the user's input or environment, not a bug in landseg."""

    def __init__(self, problem: str, path: str | PathLike | None = None):
        self.problem = problem
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class DataError(LandsegError):
    """An image, mask or raster that cannot be used as it is."""


class ConfigError(LandsegError):
    """A configuration file or option that is wrong."""


class CheckpointError(LandsegError):
    """A checkpoint that cannot be loaded or does not fit the input."""


class OutputError(LandsegError, OSError):
    """An output that cannot be written: a full disk, a read-only or missing folder.

    Also an ``OSError``, so callers that handle the operating system's error keep working.
    """
