"""The gallery: a persistent, searchable set of embeddings (FAISS folder or Milvus), see
:mod:`lookalike.gallery.store`."""

from lookalike.gallery.matcher import Matcher, Neighbour, SearchResult
from lookalike.gallery.store import (
    GalleryError,
    GalleryHeader,
    GalleryLockedError,
    GalleryStore,
    check_model,
    create_gallery,
    index_recall,
    open_gallery,
)

__all__ = [
    "GalleryError",
    "GalleryHeader",
    "GalleryLockedError",
    "GalleryStore",
    "Matcher",
    "Neighbour",
    "SearchResult",
    "check_model",
    "create_gallery",
    "index_recall",
    "open_gallery",
]
