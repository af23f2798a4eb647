"""Reading files a user hands landseg as data only: sized JSON, archives that stay in their folder.

Anything read here may come from someone else (a shared model, a downloaded data set, an upload), so
every reader bounds what it reads and refuses, in one line naming the file, what would reach outside
the place it was given.
"""

from __future__ import annotations

import json
import shutil
import tarfile
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath, PureWindowsPath

from landseg.errors import DataError, LandsegError

JSON_SIDECAR_LIMIT = 16 * 2**20
"""Statistics files, run records and model cards are kilobytes; 16 MiB leaves room and bounds memory."""


def parse_json_limited(text: str | bytes, max_bytes: int, source: str | Path, error: type[LandsegError] = DataError):
    """``json.loads(text)``, refused when it is larger than ``max_bytes`` or not valid JSON."""
    if len(text) > max_bytes:
        raise error(f"JSON is larger than {max_bytes:,} bytes, the most landseg reads here", source)
    try:
        return json.loads(text)
    except RecursionError:
        raise error("JSON is nested too deeply to read", source) from None
    except ValueError as exc:  # JSONDecodeError, bad UTF-8, integers too long to convert
        raise error(f"not valid JSON ({str(exc).splitlines()[0][:160]})", source) from None


def read_json_limited(path: str | Path, max_bytes: int = JSON_SIDECAR_LIMIT, error: type[LandsegError] = DataError):
    """The JSON value in ``path``, reading at most ``max_bytes + 1`` bytes.

    The size is measured by reading, not by ``stat``: a FIFO or a device reports 0 bytes and never ends.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(max_bytes + 1)
    except OSError as exc:
        raise error(f"cannot read ({exc.strerror or type(exc).__name__})", path) from None
    return parse_json_limited(raw, max_bytes, path, error)


def inside_folder(folder: str | Path, relative: str, source: str | Path | None = None) -> Path:
    """``folder / relative``, refused unless it stays inside ``folder`` once links are resolved."""
    name = str(relative)
    if (
        not name
        or PurePosixPath(name).is_absolute()
        or PureWindowsPath(name).is_absolute()
        or PureWindowsPath(name).drive
    ):
        raise DataError(f"{name!r} is an absolute path; only paths inside {Path(folder).name}/ are read", source)
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        raise DataError(f"{name!r} climbs out of its folder with '..'", source)
    root = Path(folder).resolve()
    target = (root / name).resolve()
    if not target.is_relative_to(root):
        raise DataError(f"{name!r} leads outside its folder (to {target}) through a link", source)
    return target


def check_member_paths(names: Iterable[str], destination: str | Path, source: str | Path | None = None) -> None:
    """Refuse an archive any of whose member ``names`` would land outside ``destination``."""
    for name in names:
        inside_folder(destination, name, source)


def safe_extract(archive: str | Path, destination: str | Path, max_bytes: int | None = None) -> Path:
    """Unpack a zip or tar archive into ``destination``, after checking every member.

    Refused before anything is written: members outside ``destination`` (absolute, ``..``), links and
    device files in tar archives (a link could point anywhere), and, with ``max_bytes``, archives whose
    members add up to more than that.
    """
    archive, destination = Path(archive), Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        _extract_zip(archive, destination, max_bytes)
    elif tarfile.is_tarfile(archive):
        _extract_tar(archive, destination, max_bytes)
    else:
        raise DataError("not a zip or tar archive", archive)
    return destination


def _extract_zip(archive: Path, destination: Path, max_bytes: int | None) -> None:
    with zipfile.ZipFile(archive) as bundle:
        members = bundle.infolist()
        check_member_paths((m.filename for m in members), destination, archive)
        _check_total(sum(m.file_size for m in members), max_bytes, archive)
        # zipfile stops each member at its declared size, so the total checked above holds.
        _unpack(((m.filename, m.is_dir(), lambda m=m: bundle.open(m)) for m in members), destination, archive)


def _extract_tar(archive: Path, destination: Path, max_bytes: int | None) -> None:
    with tarfile.open(archive) as bundle:
        members = bundle.getmembers()
        check_member_paths((m.name for m in members), destination, archive)
        for member in members:
            if not (member.isfile() or member.isdir()):
                raise DataError(
                    f"archive member {member.name!r} is a link or special file; only files are unpacked", archive
                )
        _check_total(sum(m.size for m in members), max_bytes, archive)
        _unpack(((m.name, m.isdir(), lambda m=m: bundle.extractfile(m)) for m in members), destination, archive)


def _unpack(members, destination: Path, archive: Path) -> None:
    """Write ``(name, is_folder, open_member)`` members, each checked to land inside ``destination``."""
    for name, is_folder, open_member in members:
        target = inside_folder(destination, name, archive)
        if is_folder:
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with open_member() as packed, open(target, "wb") as unpacked:
            shutil.copyfileobj(packed, unpacked)


def _check_total(total: int, max_bytes: int | None, archive: Path) -> None:
    if max_bytes is not None and total > max_bytes:
        raise DataError(f"archive unpacks to {total:,} bytes, more than the {max_bytes:,} allowed", archive)
