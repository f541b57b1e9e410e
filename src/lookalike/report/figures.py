"""Figures as PNG bytes: training curves, the ROC curve with its threshold, the DET curve (FNIR
against FPIR) and figures against gallery size."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["det_figure", "gallery_size_figure", "roc_figure", "training_figure"]


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def training_figure(
    epochs: Sequence[dict[str, Any]], evals: Sequence[dict[str, Any]], *, metrics: Sequence[str]
) -> bytes | None:
    """Loss per epoch (left) and the val ``metrics`` at each evaluation (right); None without epochs.

    ``epochs``: records with ``epoch`` and ``loss``; ``evals``: records with ``epoch`` and the metrics.
    """
    if not epochs:
        return None
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4))
    left.plot([r["epoch"] for r in epochs], [r["loss"] for r in epochs], marker="o", color="#3b6ea8")
    left.set_xlabel("epoch")
    left.set_ylabel("training loss")
    left.set_title("loss (mean over each epoch)")
    left.grid(alpha=0.3)
    for key in metrics:
        points = [(r["epoch"], r[key]) for r in evals if key in r]
        if points:
            xs, ys = zip(*points, strict=True)
            right.plot(xs, ys, marker="o", label=key)
    right.set_xlabel("epoch (0 = before training)")
    right.set_ylim(0, 1.02)
    right.set_title("validation split (unseen classes)")
    right.grid(alpha=0.3)
    right.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return _png(fig)


def roc_figure(
    far: np.ndarray, tar: np.ndarray, *, threshold_far: float, threshold_tar: float, label: str
) -> bytes:
    """TAR against FAR (log FAR axis) with the chosen threshold's operating point marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 4))
    far = np.asarray(far, dtype=float)
    tar = np.asarray(tar, dtype=float)
    floor = 1e-3
    ax.plot(np.maximum(far, floor), tar, color="#3b6ea8", drawstyle="steps-post", label="ROC")
    ax.scatter([max(threshold_far, floor)], [threshold_tar], s=70, color="#c0392b", zorder=5, label=label)
    ax.set_xscale("log")
    ax.set_xlim(floor, 1.0)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(f"false accept rate (log; values below {floor:g} drawn at {floor:g})")
    ax.set_ylabel("true accept rate")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return _png(fig)


def det_figure(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    marks: Sequence[tuple[float, float, str]] = (),
    title: str = "",
) -> bytes:
    """The DET curve: FNIR against FPIR, both on log axes, one line per decision score.

    ``curves``: ``{name: (fpir, fnir)}``; ``marks``: operating points ``(fpir, fnir, label)``
    (e.g. a calibrated threshold). Rates of 0 are drawn at the floor 1e-3 (the axes say so).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.4, 4.2))
    floor = 1e-3
    for name, (fpir, fnir) in curves.items():
        x = np.maximum(np.asarray(fpir, dtype=float), floor)
        y = np.maximum(np.asarray(fnir, dtype=float), floor)
        ax.plot(x, y, drawstyle="steps-post", label=name)
    for fpir, fnir, label in marks:
        ax.scatter([max(fpir, floor)], [max(fnir, floor)], s=60, zorder=5, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(floor, 1.0)
    ax.set_ylim(floor, 1.05)
    ax.set_xlabel(f"FPIR: non-mated searches answered “match” (log; 0 drawn at {floor:g})")
    ax.set_ylabel("FNIR: mated searches not matched right (log)")
    ax.set_title(title or "detection error trade-off")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return _png(fig)


def gallery_size_figure(
    sizes: Sequence[float],
    series: Mapping[str, Sequence[float]],
    *,
    xlabel: str,
    ylabel: str = "rate",
    reference: tuple[float, str] | None = None,
    title: str = "",
) -> bytes:
    """Figures against gallery size (log x axis): one line per ``series`` ``{name: values}``;
    ``reference``: a horizontal line ``(value, label)`` (e.g. the target FPIR)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.4, 4.0))
    for name, values in series.items():
        ax.plot(list(sizes), list(values), marker="o", label=name)
    if reference is not None:
        ax.axhline(reference[0], color="#888", linestyle="--", label=reference[1])
    if len(sizes) > 1 and min(sizes) > 0 and max(sizes) / min(sizes) >= 10:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)
