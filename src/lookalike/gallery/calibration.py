"""A gallery's calibration: the record in its header and the threshold for the gallery as it is.

The record itself (:class:`lookalike.calibration.CalibrationRecord`) lives in
:mod:`lookalike.calibration`, and how a gallery pools it with its own non-mated searches in
:mod:`lookalike.calibration.adaptive`; this module applies it to a store, and is the one way a
gallery's threshold is written (index build / add / remove, the matcher, the demo).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from lookalike.calibration import CalibrationRecord, header_calibration, read_calibration
from lookalike.calibration.adaptive import GalleryFit, fit_search

if TYPE_CHECKING:
    from lookalike.gallery.store import GalleryStore

__all__ = ["fit_store", "gallery_objects", "rederive_gallery_threshold", "set_gallery_calibration"]


def gallery_objects(store: GalleryStore) -> int:
    """How many objects (distinct labels) a gallery holds (a labels-only read)."""
    if len(store) == 0:
        return 0
    return int(store.labels().nunique())


def fit_store(
    store: GalleryStore, record: CalibrationRecord, *, seed: int = 0, previous: GalleryFit | None = None
) -> GalleryFit:
    """The threshold for the gallery as it is (:func:`lookalike.calibration.adaptive.fit_search`, its
    probes searched in the store itself, so an approximate index is calibrated as it searches;
    ``previous``: the probe scores its header stored, reused while they are not stale)."""
    labels = store.labels()
    ids = labels.index.to_numpy(dtype=object)
    names = labels.to_numpy(dtype=str)
    by_id = dict(zip(ids.tolist(), names.tolist(), strict=True))

    def search(probes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        dist, found = store.search(store.vectors(ids[probes].tolist()), k)
        found_labels = np.array([[by_id.get(i) for i in row] for row in found], dtype=object)
        found_labels = found_labels.reshape(found.shape)
        return np.where(np.equal(found_labels, None), np.inf, dist), found_labels

    return fit_search(record, names, search, seed=seed, previous=previous)


def set_gallery_calibration(
    store: GalleryStore, record: CalibrationRecord | None, *, previous: GalleryFit | None = None
) -> tuple[float | None, int]:
    """Store ``record`` in the gallery's header with the threshold for the gallery as it is (None:
    clear both). Returns ``(threshold, objects)``; the one way a gallery's threshold is written.
    ``previous``: probe scores to reuse while not stale (:func:`fit_store`)."""
    if record is None:
        store.set_threshold(None, None)
        return None, gallery_objects(store)
    fit = fit_store(store, record, previous=previous)
    threshold, stored = header_calibration(
        record, fit.objects, threshold=fit.threshold, figures=fit.figures()
    )
    store.set_threshold(threshold, stored)
    return threshold, fit.objects


def rederive_gallery_threshold(store: GalleryStore) -> tuple[float, int] | None:
    """After items were added or removed: set the gallery's threshold for it as it now is, from its
    calibration record, ``(threshold, objects)``; None when it has one threshold for every size."""
    record = read_calibration(store.header.calibration, threshold=store.header.threshold)
    if record is None or record.method != "object-profiles":
        return None
    threshold, n = set_gallery_calibration(store, record, previous=GalleryFit.stored(record.figures))
    return float(threshold), n  # type: ignore[arg-type]
