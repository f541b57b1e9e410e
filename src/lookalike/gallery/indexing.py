"""Filling a gallery: which items (a manifest's rows, a folder of class folders, saved
embeddings), their embeddings with the gallery's model, and building a new gallery so that a
failure leaves nothing behind.

Used by ``lookalike index build`` / ``index add`` and by anyone building a gallery from Python.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from lookalike.calibration import CalibrationRecord
    from lookalike.gallery.store import GalleryHeader, GalleryStore
    from lookalike.models.inference import InferenceModel

__all__ = [
    "SPLIT_COLUMNS",
    "build_gallery",
    "check_items",
    "embed_items",
    "gallery_header",
    "model_calibration",
    "model_threshold",
    "read_embeddings_file",
    "select_rows",
]

SPLIT_COLUMNS: tuple[str, ...] = ("split", "role", "split_seed", "source_sha256")
"""Bookkeeping columns of a split manifest, not carried into the gallery's item metadata."""


def select_rows(frame: pd.DataFrame, *, split: str | None = None, role: str | None = None) -> pd.DataFrame:
    """The rows of a manifest to put in a gallery: those of ``split`` (when given) with ``role``
    (``gallery``, ``query`` or ``all``; default ``gallery`` when a split is given, else ``all``).
    Split bookkeeping columns are dropped; other columns stay (id, label, path, metadata)."""
    from lookalike.protocol import ROLE_CHOICES, ProtocolError, role_rows, split_of

    if role is not None and role not in ROLE_CHOICES:
        raise ValueError(f"role must be one of {', '.join(ROLE_CHOICES)}, got {role!r}")
    rows = frame
    if split is not None:
        if "split" not in frame.columns:
            raise ValueError(
                "the manifest has no 'split' column: run `lookalike split` on it, or drop --split"
            )
        try:
            rows = split_of(frame, split)
        except ProtocolError as err:
            raise ValueError(str(err)) from None
        role = role or "gallery"
    role = role or "all"
    rows = role_rows(rows, role)
    if rows.empty and role != "all":
        raise ValueError(f"no {role} rows{f' in split {split!r}' if split else ''} of the manifest")
    return rows.drop(columns=[c for c in SPLIT_COLUMNS if c in rows.columns])


def read_embeddings_file(
    path: str | Path, *, split: str | None = None, role: str | None = None
) -> tuple[np.ndarray, pd.DataFrame, dict[str, Any]]:
    """Read saved embeddings (``lookalike embed`` output, see :func:`lookalike.embed.read_embeddings`):
    ``(embeddings (N, D) float32, items (id when present, label, path, + metadata), the file's
    metadata: model_fingerprint, model_source, ...)``, restricted to ``split``/``role`` rows as
    :func:`select_rows` does."""
    from lookalike.embed import read_embeddings

    table, emb, meta = read_embeddings(path)
    name = Path(path).name
    if "label" not in table.columns:
        raise ValueError(
            f"{name} has no 'label' column, which a gallery needs (embed a manifest with labels); "
            f"columns: {list(table.columns)}"
        )
    table = table.reset_index(drop=True)
    rows = select_rows(table, split=split, role=role)
    if rows.empty:
        raise ValueError(f"{name} holds no embeddings")
    items = rows.drop(columns=[c for c in ("row",) if c in rows.columns]).reset_index(drop=True)
    return np.ascontiguousarray(emb[rows.index.to_numpy()], dtype=np.float32), items, meta


def embed_items(
    model: InferenceModel,
    items: pd.DataFrame,
    *,
    batch_size: int = 64,
    device: Any = "cpu",
    progress: bool = False,
) -> np.ndarray:
    """(N, D) float32 embeddings of the items' images (``path`` column), in row order, with the
    model's eval preprocessing; an unreadable image raises naming its row and path."""
    from lookalike.embed import embed_frame

    frame = items.reset_index(drop=True) if not items.index.is_unique else items
    emb = embed_frame(model.embedder, frame, batch_size=batch_size, device=device, progress=progress)
    return np.ascontiguousarray(emb.numpy(), dtype=np.float32)


def check_items(embeddings: np.ndarray, items: pd.DataFrame, *, embed_dim: int) -> None:
    """Refuse a batch that a store would refuse, before anything is written: shapes, labels, ids."""
    if embeddings.ndim != 2 or embeddings.shape[1] != embed_dim:
        raise ValueError(
            f"dimension mismatch: the gallery holds {embed_dim}-d embeddings, got shape {embeddings.shape}"
        )
    if len(items) != len(embeddings):
        raise ValueError(f"{len(items)} items for {len(embeddings)} embeddings")
    if "label" not in items.columns:
        raise ValueError(f"the items have no 'label' column; columns: {list(items.columns)}")
    if "id" in items.columns:
        ids = items["id"].astype(str)
        dup = ids[ids.duplicated()]
        if len(dup):
            raise ValueError(f"duplicate id {dup.iloc[0]!r} in the items; ids must be unique")


def model_threshold(model: InferenceModel, distance: str) -> tuple[float | None, dict | None]:
    """The threshold a model carries from calibration, as (value, calibration figures); (None, None)
    when it has none. Refuses a threshold calibrated on similarities for a distance gallery."""
    t = model.threshold
    if t is None:
        return None, None
    if t.higher_is_closer:
        raise ValueError(
            f"the model's threshold ({t.value}) was calibrated on similarities, but a {distance} gallery "
            "compares distances; recalibrate with --target-fpir F --calibrate-on SPLIT_MANIFEST"
        )
    calibration = dict(model.calibration or {})
    calibration.setdefault("source", _absolute_source(model.source))
    return float(t.value), calibration


def model_calibration(model: InferenceModel) -> CalibrationRecord | None:
    """The calibration record a model carries (None: none), with its source recorded. Refuses a
    threshold calibrated on similarities (a gallery compares distances)."""
    from lookalike.calibration import read_calibration

    value, calibration = model_threshold(model, model.distance)
    return None if value is None else read_calibration(calibration, threshold=value)


def gallery_header(
    model: InferenceModel,
    *,
    index_factory: str = "Flat",
    threshold: float | None = None,
    calibration: dict | CalibrationRecord | None = None,
    n_objects: int | None = None,
    gallery: tuple[np.ndarray, Sequence[str]] | None = None,
) -> GalleryHeader:
    """The header of a gallery built with ``model``. ``calibration``: a record or a stored dict. With a
    record, ``threshold`` must be None; the threshold is set for the gallery to be built, given as
    ``gallery`` (its embeddings and labels: the record pooled with the gallery's own non-mated
    searches, searched exactly, see :mod:`lookalike.calibration.adaptive`), or as its size
    ``n_objects`` alone (the record's threshold for that size)."""
    from lookalike.calibration import CalibrationRecord, header_calibration
    from lookalike.calibration.adaptive import fit_arrays
    from lookalike.gallery.store import GalleryHeader

    if isinstance(calibration, CalibrationRecord):
        if threshold is not None or (n_objects is None and gallery is None):
            raise ValueError("with a calibration record give the gallery (or its n_objects) and no threshold")
        if gallery is not None:
            fit = fit_arrays(calibration, gallery[0], np.asarray(gallery[1]), distance=model.distance)
            threshold, calibration = header_calibration(
                calibration, fit.objects, threshold=fit.threshold, figures=fit.figures()
            )
        else:
            threshold, calibration = header_calibration(calibration, int(n_objects))  # type: ignore[arg-type]
    if threshold is not None and not math.isfinite(float(threshold)):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    return GalleryHeader(
        embed_dim=int(model.embedder.embed_dim),
        distance=model.distance,
        model_fingerprint=model.fingerprint,
        preprocessing=model.preprocessing.to_dict(),
        model_source=_absolute_source(model.source),
        threshold=None if threshold is None else float(threshold),
        calibration=calibration,
        index_factory=index_factory,
    )


def build_gallery(
    location: str | Path,
    header: GalleryHeader,
    embeddings: np.ndarray,
    items: pd.DataFrame,
    *,
    overwrite: bool = False,
) -> GalleryStore:
    """Create a gallery at ``location`` holding ``items`` with ``embeddings`` (N, D) and return it
    open. The batch is checked first; the gallery is built aside and swapped in complete, so a failure
    leaves a gallery it was to replace (``overwrite``) as it was, and removes a folder this call
    created."""
    from lookalike.gallery.location import gallery_folder
    from lookalike.gallery.opening import create_gallery

    check_items(embeddings, items, embed_dim=header.embed_dim)
    folder = gallery_folder(location)
    existed = folder is not None and folder.exists()
    try:
        return create_gallery(
            location,
            header,
            overwrite=overwrite,
            embeddings=np.ascontiguousarray(embeddings, dtype=np.float32),
            items=items.reset_index(drop=True),
        )
    except BaseException:
        if folder is not None and not existed and folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        raise


def _absolute_source(source: str) -> str:
    """``checkpoint:PATH`` with PATH made absolute, so the gallery finds its model from any folder."""
    kind, _, value = source.partition(":")
    if kind == "checkpoint" and value:
        return f"checkpoint:{Path(value).resolve()}"
    return source
