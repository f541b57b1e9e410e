"""The gallery: a persistent, searchable set of embeddings (FAISS folder or Milvus), and the match decision.

What lives here: the store protocol and header (``store``), the item rules (``items``), which
backend a location names (``location``), creating/opening (``opening``), what the backends share
(``backend``), the two backends (``faiss_store``, ``milvus_store``), building a gallery from a
model (``indexing``), its calibration applied to a store (``calibration``), the match decision and
its result records (``decision``) and the matcher (embed, search, decide: ``matcher``).
"""

from lookalike.gallery.location import is_milvus_location
from lookalike.gallery.matcher import Matcher, Neighbour, SearchResult
from lookalike.gallery.opening import create_gallery, open_gallery
from lookalike.gallery.store import (
    GalleryError,
    GalleryHeader,
    GalleryLockedError,
    GalleryStore,
    check_model,
    index_recall,
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
    "is_milvus_location",
    "open_gallery",
]
