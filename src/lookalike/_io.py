"""Atomic file writes: whatever the user already had is never lost or left half-written.

The file written gets the mode an ordinary ``open(path, "w")`` would give it: an existing file keeps
its mode; a new one gets 0666 less the process umask (0644 under the usual umask 022), not the 0600
of the temporary file it is written through.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_text"]

_UMASK_LOCK = threading.Lock()


def _current_umask() -> int:
    """The process umask (reading it means setting it: done under a lock and restored at once)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _final_mode(target: Path) -> int:
    """The mode the written file should have: the replaced file's, else 0666 less the umask."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        return 0o666 & ~_current_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; on success it is flushed to disk and replaces
    ``path`` (one rename, then the folder is flushed too),
    on any error it is removed and ``path`` is untouched. Creates the folder if needed. The result
    has the replaced file's mode, or for a new file 0666 less the umask (see the module docstring).

    ``suffix`` lets writers that pick a format from the file name (matplotlib) see the right one.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, _final_mode(target))
        _fsync(tmp)  # the data is on disk before the name points at it
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync(target.parent)  # and the rename itself survives a power loss


def _fsync(path: Path) -> None:
    """Flush a file (or a folder: its entries) to disk; a platform that cannot open folders skips it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
