"""The ``split`` and ``role`` columns of a split manifest, and how to read them.

``split`` is ``train``, ``val`` or ``test``; every class lies wholly in one split.
``role`` says what an image does in evaluation:

- ``train``: a training image (``split == "train"``).
- ``query``: searched for in the gallery of its split.
- ``gallery``: searched in.
- ``query+gallery``: leave-one-out protocol, both: each such image is a query against all the
  other gallery images of its split. A query must never be matched with itself; the evaluation
  ensures it by the row id (the manifest row) that comes with each image.

Use :func:`is_query` and :func:`is_gallery` rather than comparing strings, so that the
leave-one-out encoding is understood everywhere.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = [
    "ROLES",
    "ROLE_GALLERY",
    "ROLE_QUERY",
    "ROLE_QUERY_GALLERY",
    "ROLE_TRAIN",
    "SPLITS",
    "is_gallery",
    "is_query",
]

SPLITS: tuple[str, ...] = ("train", "val", "test")
ROLE_TRAIN = "train"
ROLE_QUERY = "query"
ROLE_GALLERY = "gallery"
ROLE_QUERY_GALLERY = "query+gallery"
ROLES: tuple[str, ...] = (ROLE_TRAIN, ROLE_QUERY, ROLE_GALLERY, ROLE_QUERY_GALLERY)


def _roles(frame: pd.DataFrame) -> np.ndarray:
    if "role" not in frame.columns:
        raise ValueError(
            f"the frame has no 'role' column (columns: {list(frame.columns)}); split it first with "
            "split_manifest or `lookalike split`"
        )
    roles = frame["role"].astype(str).to_numpy()
    bad = sorted(set(roles) - set(ROLES))
    if bad:
        raise ValueError(
            f"unknown role value(s) {bad[:10]} in the 'role' column; expected one of {list(ROLES)}"
        )
    return roles


def is_query(frame: pd.DataFrame) -> np.ndarray:
    """Boolean mask (N,): rows that are queries (role ``query`` or ``query+gallery``)."""
    roles = _roles(frame)
    return (roles == ROLE_QUERY) | (roles == ROLE_QUERY_GALLERY)


def is_gallery(frame: pd.DataFrame) -> np.ndarray:
    """Boolean mask (N,): rows that are in the gallery (role ``gallery`` or ``query+gallery``)."""
    roles = _roles(frame)
    return (roles == ROLE_GALLERY) | (roles == ROLE_QUERY_GALLERY)
