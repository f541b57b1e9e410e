"""The gallery: a persistent, searchable set of embeddings, and the match decision.

- ``store.py``: the store protocol every backend implements, the gallery header, and opening or
  creating a gallery by location; ``faiss_store.py``: the FAISS folder store (the embedded
  default); ``milvus_store.py``: Milvus (Lite, server or cluster) for scale-out;
- ``indexing.py``: building a gallery from a model and a manifest or embeddings file;
- ``matcher.py``: search plus the match decision (:class:`Matcher`), what the CLI, the demo and
  the service call.
"""

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
