"""Figures of an open-set evaluation (:mod:`lookalike.evaluation.summary`): the DET curve of each
decision score, and the figures against gallery size."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from lookalike.report.figures import det_figure, gallery_size_figure

if TYPE_CHECKING:
    from lookalike.evaluation.open_set import OpenSetReport
    from lookalike.evaluation.summary import OpenSetEvaluation

__all__ = ["det_plot", "gallery_size_plot", "threshold_by_size_plot"]


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


def threshold_by_size_plot(evaluation: OpenSetEvaluation, *, target_fpir: float, title: str = "") -> bytes:
    """FPIR, FNIR and the wrong-match rate at the calibrated threshold (set for each gallery's size)
    against gallery size in enrolled classes, with the target FPIR as a dashed line."""
    points = [p for p in evaluation.sizes if p.at_threshold is not None]
    if not points:
        raise ValueError("the evaluation has no rates at a threshold (give a calibration's threshold)")
    rates = [p.at_threshold for p in points]
    series = {
        "FPIR (non-mated answered “match”)": [r.fpir for r in rates],  # type: ignore[union-attr]
        "FNIR (mated not matched right)": [r.fnir for r in rates],  # type: ignore[union-attr]
        "wrong-match rate (part of FNIR)": [r.wrong_match_rate for r in rates],  # type: ignore[union-attr]
    }
    return gallery_size_figure(
        [p.size_classes for p in points],
        series,
        xlabel="gallery size (enrolled classes)",
        reference=(target_fpir, f"target FPIR {target_fpir:g}"),
        title=title
        or f"at the calibrated threshold ({rates[0].score} score), {points[0].draws} draws per size",
    )
