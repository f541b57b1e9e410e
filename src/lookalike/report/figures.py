"""Figures of the demo report as PNG bytes: training curves and the ROC curve with its threshold."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["roc_figure", "training_figure"]


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
