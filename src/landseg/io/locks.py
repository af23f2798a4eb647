"""One writer at a time for a set of output files: an advisory lock file beside them.

Two runs that write the same outputs (two ``landseg predict`` runs into one folder) would otherwise
interleave: each file is replaced atomically, but a set written by two runs can mix files of both, and a
run that cleans up its hidden temporaries would delete the other's files mid-write. ``exclusive_lock``
holds ``fcntl.flock`` on a hidden lock file for as long as its block runs; a second run waits for it.

The kernel releases the lock when its holder exits, however it exits (``kill -9`` included), so a crashed
run never leaves a stale lock behind. The holder removes the lock file on release; a waiter that then
finds its file unlinked opens the path again, so two runs never hold locks on two different files.
``flock`` locks are advisory and local: they order landseg runs on one machine (NFS gives no guarantee).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def lock_path(folder: Path, name: str) -> Path:
    """The hidden lock file that guards the outputs called ``name`` in ``folder``."""
    return folder / f".{name}.lock"


@contextmanager
def exclusive_lock(path: str | Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) while the block runs; ``on_wait`` is called
    once, before blocking, when another process holds it."""
    path = Path(path)
    descriptor = _acquire(path, on_wait)
    try:
        yield
    finally:
        # Unlinked before it is unlocked: a waiter that wakes up on this file sees it gone and starts over.
        path.unlink(missing_ok=True)
        os.close(descriptor)


def _acquire(path: Path, on_wait: Callable[[], None] | None) -> int:
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait is not None:
                    on_wait()
                    on_wait = None
                fcntl.flock(descriptor, fcntl.LOCK_EX)
            if _still_linked(descriptor, path):
                return descriptor
        except BaseException:  # Ctrl-C while waiting, among others: no descriptor left open
            os.close(descriptor)
            raise
        os.close(descriptor)


def _still_linked(descriptor: int, path: Path) -> bool:
    """Whether ``path`` still names the file we locked (its holder removes it on release)."""
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(descriptor)
    return (held.st_dev, held.st_ino) == (on_disk.st_dev, on_disk.st_ino)
