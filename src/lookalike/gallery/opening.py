"""Creating and opening a gallery: the location string picks the backend
(:mod:`lookalike.gallery.location`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from lookalike.gallery.location import backend_of
from lookalike.gallery.store import GalleryHeader, GalleryStore

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["create_gallery", "open_gallery"]


def create_gallery(
    location: str | Path,
    header: GalleryHeader,
    *,
    overwrite: bool = False,
    embeddings: np.ndarray | None = None,
    items: pd.DataFrame | None = None,
) -> GalleryStore:
    """Create a gallery at ``location`` and return it open for writing: empty, or holding
    ``embeddings`` (N, D) with their ``items`` rows (see :meth:`GalleryStore.add`).

    An existing gallery there is refused unless ``overwrite``. The new gallery is built aside and
    swapped in only when it is complete, so when creating it fails (a bad index factory, too few
    vectors to train an IVF index, bad items) the gallery it was to replace is left as it was.
    """
    if not isinstance(header, GalleryHeader):
        raise TypeError(f"header must be a GalleryHeader, got {type(header).__name__}")
    content = {"embeddings": embeddings, "items": items}
    if backend_of(location) == "milvus":
        from lookalike.gallery.milvus_store import MilvusStore

        return MilvusStore.create(str(location), header, overwrite=overwrite, **content)
    from lookalike.gallery.faiss_store import FaissFolderStore

    return FaissFolderStore.create(location, header, overwrite=overwrite, **content)


def open_gallery(location: str | Path, *, writable: bool = False) -> GalleryStore:
    """Open an existing gallery. ``writable`` takes the gallery's writer lock (one writer at a time;
    a second one gets :class:`~lookalike.gallery.store.GalleryLockedError`); readers need no lock and
    see a consistent snapshot."""
    if backend_of(location) == "milvus":
        from lookalike.gallery.milvus_store import MilvusStore

        return MilvusStore.open(str(location), writable=writable)
    from lookalike.gallery.faiss_store import FaissFolderStore

    return FaissFolderStore.open(location, writable=writable)
