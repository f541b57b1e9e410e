"""The open-set evaluation in one call, as ``lookalike evaluate``, ``evaluate-embeddings`` and the
demo run it: FNIR at each target FPIR and the DET curves on a gallery holding out a share of the
classes, and, when asked, the figures at each gallery size (enrolled classes) or with growing
numbers of distractors (images). Also: reading distractors (a folder of images, a manifest, or
saved embeddings)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lookalike.evaluation.gallery_sizes import (
    SizePoint,
    ThresholdForSize,
    distractor_sweep,
    drawn_gallery_threshold,
    gallery_size_sweep,
)
from lookalike.evaluation.open_set import (
    DEFAULT_DEPTH,
    EvalSet,
    OpenSetReport,
    open_set_classes,
    open_set_report,
)

if TYPE_CHECKING:
    import pandas as pd

    from lookalike.calibration.record import CalibrationRecord
    from lookalike.models import Embedder

__all__ = [
    "SIZE_UNITS",
    "OpenSetEvaluation",
    "distractor_rows",
    "embed_distractors",
    "evaluate_open_set",
    "load_distractor_embeddings",
    "parse_sizes",
]

#: What a gallery size counts: enrolled classes (``--gallery-sizes``) or distractor images.
SIZE_UNITS: tuple[str, ...] = ("enrolled classes", "distractor images")


@dataclass(frozen=True)
class OpenSetEvaluation:
    """:class:`~lookalike.evaluation.open_set.OpenSetReport` and the figures by gallery size
    (empty without sizes or distractors); ``size_unit`` is one of :data:`SIZE_UNITS`."""

    report: OpenSetReport
    sizes: tuple[SizePoint, ...] = ()
    size_unit: str = SIZE_UNITS[0]

    def to_dict(self) -> dict[str, Any]:
        """JSON keys in the FRVT vocabulary: ``open_set`` and ``gallery_sizes``."""
        out: dict[str, Any] = {"open_set": self.report.to_dict()}
        if self.sizes:
            out["gallery_sizes"] = {"unit": self.size_unit, "points": [p.to_dict() for p in self.sizes]}
        return out


def evaluate_open_set(
    data: EvalSet,
    *,
    distance: str = "euclidean",
    non_mated_share: float = 0.25,
    seed: int = 0,
    gallery_sizes: Sequence[int] | None = None,
    draws: int = 3,
    distractors: np.ndarray | None = None,
    distractor_labels: Sequence[str] | None = None,
    threshold: float | ThresholdForSize | CalibrationRecord | None = None,
    threshold_score: str = "nearest",
    depth: int = DEFAULT_DEPTH,
) -> OpenSetEvaluation:
    """The open-set report, plus the gallery-size sweep (``gallery_sizes``: enrolled classes) or
    the distractor sweep (``distractors`` (M, D)); not both. ``threshold`` (a value, a function
    of the size in enrolled classes, or a calibration record that each gallery sets its threshold
    from) gives the rates at it at each size."""
    if gallery_sizes and distractors is not None:
        raise ValueError("give gallery sizes or distractors, not both (each defines the gallery's size)")
    common = {"distance": distance, "seed": seed, "depth": depth}
    enrolled = open_set_classes(data.classes, non_mated_share, seed)
    base = drawn_gallery_threshold(threshold, data, enrolled, None, len(enrolled), distance)
    report = open_set_report(
        data, non_mated_share=non_mated_share, threshold=base, threshold_score=threshold_score, **common
    )
    kw = {**common, "threshold": threshold, "threshold_score": threshold_score}
    if gallery_sizes:
        points = gallery_size_sweep(data, list(gallery_sizes), draws=draws, **kw)
        return OpenSetEvaluation(report, tuple(points), SIZE_UNITS[0])
    if distractors is not None:
        points = distractor_sweep(
            data, distractors, distractor_labels=distractor_labels, non_mated_share=non_mated_share, **kw
        )
        return OpenSetEvaluation(report, tuple(points), SIZE_UNITS[1])
    return OpenSetEvaluation(report)


def parse_sizes(text: str) -> list[int]:
    """``"10,20,50"`` -> [10, 20, 50]: positive integers, increasing order kept as given."""
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"gallery sizes must be comma-separated positive integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise ValueError(f"gallery sizes must be comma-separated positive integers, got {text!r}")
    return values


def distractor_rows(path: str | Path) -> pd.DataFrame:
    """The distractor images: every image under a folder, or a manifest's rows (CSV/Parquet with a
    ``path`` column, relative paths against the manifest's folder; a ``label`` column, when
    present, groups them into objects)."""
    import pandas as pd

    from lookalike.embed import list_images

    p = Path(path)
    if p.is_dir():
        return list_images(p)
    if not p.is_file():
        raise FileNotFoundError(f"no such distractors folder or manifest: {p}")
    if p.suffix.lower() not in (".csv", ".parquet"):
        raise ValueError(f"distractors: give a folder of images or a .csv/.parquet manifest, got {p.name}")
    frame = pd.read_parquet(p) if p.suffix.lower() == ".parquet" else pd.read_csv(p)
    if "path" not in frame.columns or frame.empty:
        raise ValueError(
            f"{p.name}: a distractors manifest needs rows and a 'path' column; columns: {list(frame.columns)}"
        )
    frame = frame.copy()
    frame["path"] = [
        str(q) if Path(q).is_absolute() else str((p.parent / q).resolve()) for q in frame["path"]
    ]
    return frame.reset_index(drop=True)


def embed_distractors(
    embedder: Embedder,
    path: str | Path,
    *,
    device: Any = "cpu",
    batch_size: int = 128,
    progress: bool = False,
) -> tuple[np.ndarray, list[str] | None]:
    """(M, D) float32 embeddings of the distractors at ``path`` (see :func:`distractor_rows`) and
    their labels (None: each image its own object)."""
    from lookalike.embed import embed_frame

    rows = distractor_rows(path)
    emb = embed_frame(embedder, rows, batch_size=batch_size, device=device, progress=progress)
    labels = rows["label"].astype(str).tolist() if "label" in rows.columns else None
    return np.ascontiguousarray(emb.detach().cpu().numpy(), dtype=np.float32), labels


def load_distractor_embeddings(path: str | Path) -> tuple[np.ndarray, list[str] | None]:
    """Saved distractor embeddings: a ``.npy`` (M, D) array (each its own object), or any file
    :func:`lookalike.evaluation.tables.load_embeddings` reads (its labels group them)."""
    from lookalike.evaluation.tables import load_embeddings

    p = Path(path)
    if p.suffix.lower() == ".npy":
        if not p.is_file():
            raise FileNotFoundError(f"no such distractors file: {p}")
        emb = np.load(p, allow_pickle=False)
        if emb.ndim != 2:
            raise ValueError(f"{p.name}: distractor embeddings must be (M, D), got shape {emb.shape}")
        return np.ascontiguousarray(emb, dtype=np.float32), None
    table = load_embeddings(p)
    return np.ascontiguousarray(table.embeddings, dtype=np.float32), np.asarray(table.labels).astype(
        str
    ).tolist()
