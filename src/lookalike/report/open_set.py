"""Figures of an open-set evaluation (:mod:`lookalike.evaluation.summary`): the DET curve of each
decision score, and the figures against gallery size."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from lookalike.report.figures import det_figure, gallery_size_figure

if TYPE_CHECKING:
    from lookalike.evaluation.open_set import OpenSetReport
    from lookalike.evaluation.summary import OpenSetEvaluation

__all__ = ["det_plot", "gallery_size_plot"]


def det_plot(
    report: OpenSetReport, *, marks: Sequence[tuple[float, float, str]] = (), title: str = ""
) -> bytes:
    """The DET curves (FNIR against FPIR, log axes) of ``report``, one per decision score."""
    curves = {score: (curve.fpir, curve.fnir) for score, curve in report.det.items()}
    title = title or (
        f"DET: {report.n_mated} mated / {report.n_non_mated} non-mated searches, "
        f"{report.n_enrolled_classes} enrolled classes"
    )
    return det_figure(curves, marks=marks, title=title)


def gallery_size_plot(evaluation: OpenSetEvaluation, *, fpir: float = 0.05, title: str = "") -> bytes:
    """hit_rate@1, MAP@R and FNIR at ``fpir`` (each score) against gallery size, and the FPIR at
    the given threshold when the sweep had one (with the target as a dashed line)."""
    points = evaluation.sizes
    if not points:
        raise ValueError("the evaluation has no gallery sizes (give gallery sizes or distractors)")
    distractors = evaluation.size_unit == "distractor images"
    sizes = [p.n_distractors if distractors else p.size_classes for p in points]
    series: dict[str, list[float]] = {
        "hit_rate@1": [p.hit_rate_at_1 for p in points],
        "map@r": [p.map_at_r for p in points],
    }
    for score in dict.fromkeys(r.score for r in points[0].fnir_at_fpir):
        series[f"FNIR @ FPIR {fpir:g} ({score})"] = [
            next((r.fnir for r in p.fnir_at_fpir if r.score == score and r.fpir == fpir), float("nan"))
            for p in points
        ]
    reference = None
    if points[0].at_threshold is not None:
        series[f"FPIR at the threshold ({points[0].at_threshold.score})"] = [
            p.at_threshold.fpir for p in points
        ]
        reference = (fpir, f"target FPIR {fpir:g}")
    xlabel = "distractor images added" if distractors else "gallery size (enrolled classes)"
    return gallery_size_figure(sizes, series, xlabel=xlabel, reference=reference, title=title)
