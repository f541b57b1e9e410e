"""What the store backends share: the embedding checks, score -> distance conversion (the
protocol's), the writer lock.

The store protocol itself (:class:`~lookalike.gallery.store.GalleryStore`) lives in
:mod:`lookalike.gallery.store`; this module is for the backends only.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from lookalike.gallery.store import GalleryError, GalleryHeader, GalleryLockedError
from lookalike.protocol import from_backend as to_distance  # the one conversion, defined with the names

__all__ = ["WriterLock", "check_embeddings", "to_distance"]


def check_embeddings(
    embeddings: np.ndarray, header: GalleryHeader, *, what: str = "embeddings"
) -> np.ndarray:
    """(N, D) float32, C-contiguous, L2-normalised; raises on a wrong shape, NaN/inf or zero rows."""
    x = np.asarray(embeddings)
    if x.ndim == 1 and x.size == header.embed_dim:
        x = x[None, :]
    if x.ndim != 2:
        raise ValueError(f"{what} must be a 2-D (N, D) array, got shape {x.shape}")
    if x.shape[1] != header.embed_dim:
        raise GalleryError(
            f"{what} have D={x.shape[1]} but the gallery holds D={header.embed_dim} embeddings; "
            "use the model the gallery was built with"
        )
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise ValueError(f"{what} must be real numbers, got dtype {x.dtype}")
    x = np.ascontiguousarray(x, dtype=np.float32)  # no copy when it already is
    if x.shape[0] == 0:
        return x
    squares = np.einsum("ij,ij->i", x, x)  # NaN/inf in a row make its sum NaN/inf
    bad = ~np.isfinite(squares)
    if bad.any():
        row = int(np.argmax(bad))
        what_is = (
            "NaN or infinite values" if not np.isfinite(x[row]).all() else "values too large for float32"
        )
        raise ValueError(f"{what} row {row} contains {what_is}")
    if (squares == 0).any():
        raise ValueError(f"{what} row {int(np.argmin(squares))} is all zeros and cannot be L2-normalised")
    if np.abs(squares - 1.0).max() <= 1e-5:  # already L2-normalised (a model's output): used as it is
        return x
    return x / np.sqrt(squares)[:, None]  # a new array: the caller's is never changed


class WriterLock:
    """An exclusive, non-blocking lock on the file ``path``; the OS releases it if the writer dies."""

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock_fd(self._fd)
        except OSError:
            holder = ""
            with contextlib.suppress(OSError):
                holder = os.pread(self._fd, 200, 0).decode(errors="replace").strip()
            os.close(self._fd)
            self._fd = None
            raise GalleryLockedError(
                f"{what} is being written by another process ({holder or 'unknown'}); "
                "one writer at a time: wait for it to finish, or open the gallery read-only"
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"pid {os.getpid()}".encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None


try:
    import fcntl

    def _lock_fd(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

except ImportError:  # pragma: no cover - Windows
    import msvcrt

    def _lock_fd(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
