"""Gallery locations: which backend a location string names, decided here and nowhere else.

- a folder path: the FAISS folder store (:mod:`lookalike.gallery.faiss_store`);
- ``milvus-lite:PATH.db[#collection]`` (embedded Milvus Lite) or ``milvus://HOST:PORT/COLLECTION``
  (a Milvus server or cluster): :mod:`lookalike.gallery.milvus_store`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from lookalike.gallery.store import GalleryError

__all__ = ["MILVUS_LITE_PREFIX", "MILVUS_PREFIX", "backend_of", "gallery_folder", "is_milvus_location"]

MILVUS_LITE_PREFIX = "milvus-lite:"
MILVUS_PREFIX = "milvus://"


def is_milvus_location(location: str | Path) -> bool:
    """True for ``milvus-lite:...`` and ``milvus://...`` locations."""
    return str(location).startswith((MILVUS_LITE_PREFIX, MILVUS_PREFIX))


def backend_of(location: str | Path) -> Literal["faiss", "milvus"]:
    """The backend a location names; another ``scheme://`` is refused with the valid forms."""
    text = str(location)
    if is_milvus_location(text):
        return "milvus"
    if "://" in text:
        raise GalleryError(
            f"unknown gallery location {text!r}; use a folder path, 'milvus-lite:PATH.db[#collection]' "
            "or 'milvus://HOST:PORT/COLLECTION'"
        )
    return "faiss"


def gallery_folder(location: str | Path) -> Path | None:
    """The folder of a folder store; None for a Milvus location."""
    return None if is_milvus_location(location) else Path(location)
