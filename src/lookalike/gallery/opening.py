"""Creating and opening a gallery: the location string picks the backend
(:mod:`lookalike.gallery.location`)."""

from __future__ import annotations

from pathlib import Path

from lookalike.gallery.location import backend_of
from lookalike.gallery.store import GalleryHeader, GalleryStore

__all__ = ["create_gallery", "open_gallery"]


def create_gallery(location: str | Path, header: GalleryHeader, *, overwrite: bool = False) -> GalleryStore:
    """Create an empty gallery at ``location`` and return it open for writing.

    An existing gallery there is refused unless ``overwrite`` (which replaces it atomically).
    """
    if not isinstance(header, GalleryHeader):
        raise TypeError(f"header must be a GalleryHeader, got {type(header).__name__}")
    if backend_of(location) == "milvus":
        from lookalike.gallery.milvus_store import MilvusStore

        return MilvusStore.create(str(location), header, overwrite=overwrite)
    from lookalike.gallery.faiss_store import FaissFolderStore

    return FaissFolderStore.create(location, header, overwrite=overwrite)


def open_gallery(location: str | Path, *, writable: bool = False) -> GalleryStore:
    """Open an existing gallery. ``writable`` takes the gallery's writer lock (one writer at a time;
    a second one gets :class:`~lookalike.gallery.store.GalleryLockedError`); readers need no lock and
    see a consistent snapshot."""
    if backend_of(location) == "milvus":
        from lookalike.gallery.milvus_store import MilvusStore

        return MilvusStore.open(str(location), writable=writable)
    from lookalike.gallery.faiss_store import FaissFolderStore

    return FaissFolderStore.open(location, writable=writable)
