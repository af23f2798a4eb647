"""Helpers of the reliability tests: broken files made on purpose, a tiny checkpoint, CLI assertions."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

# The tiny checkpoint, GeoTIFF writer and training config all test folders share.
from tests.helpers import experiment as experiment
from tests.helpers import save_tiny_checkpoint as save_tiny_checkpoint
from tests.helpers import write_geotiff as write_geotiff


def copy_dataset(source: Path, target: Path) -> Path:
    """A private copy of a session dataset, for a test that breaks some of its files."""
    shutil.copytree(source, target)
    return target


def truncate(path: Path, keep: float = 0.5) -> Path:
    """Cut a file to ``keep`` of its length, as an interrupted copy or download leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def assert_one_line_error(result, *fragments: str) -> str:
    """Exit code 1, no traceback, exactly one ``error:`` line, and it holds every fragment."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output, result.output
    lines = error_lines(result.output)
    assert len(lines) == 1, result.output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def visible_files(folder: Path) -> list[str]:
    """Every non-hidden file under ``folder`` (hidden ones are temporaries), relative, sorted."""
    if not folder.exists():
        return []
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def all_files(folder: Path) -> list[str]:
    if not folder.exists():
        return []
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
