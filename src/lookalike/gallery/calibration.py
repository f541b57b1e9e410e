"""A gallery's calibration: the record in its header and the threshold for its current size.

The record itself (:class:`lookalike.calibration.CalibrationRecord`) and how it maps a gallery size to
a threshold live in :mod:`lookalike.calibration`; this module applies it to a store, and is the one way a
gallery's threshold is written (index build / add / remove, the matcher, the demo).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lookalike.calibration import CalibrationRecord, header_calibration, read_calibration

if TYPE_CHECKING:
    from lookalike.gallery.store import GalleryStore

__all__ = ["gallery_objects", "rederive_gallery_threshold", "set_gallery_calibration"]


def gallery_objects(store: GalleryStore) -> int:
    """How many objects (distinct labels) a gallery holds."""
    if len(store) == 0:
        return 0
    return int(store.items()["label"].astype(str).nunique())


def set_gallery_calibration(
    store: GalleryStore, record: CalibrationRecord | None
) -> tuple[float | None, int]:
    """Store ``record`` in the gallery's header with the threshold for its current size (None: clear
    both). Returns ``(threshold, objects)``; the one way a gallery's threshold is written."""
    n = gallery_objects(store)
    if record is None:
        store.set_threshold(None, None)
        return None, n
    threshold, stored = header_calibration(record, n)
    store.set_threshold(threshold, stored)
    return threshold, n


def rederive_gallery_threshold(store: GalleryStore) -> tuple[float, int] | None:
    """After items were added or removed: set the gallery's threshold for its new size from its
    calibration record, ``(threshold, objects)``; None when it has one threshold for every size."""
    record = read_calibration(store.header.calibration, threshold=store.header.threshold)
    if record is None or record.method != "object-profiles":
        return None
    threshold, n = set_gallery_calibration(store, record)
    return float(threshold), n  # type: ignore[arg-type]
