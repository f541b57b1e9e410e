"""The open-set options and output of ``lookalike evaluate`` and ``evaluate-embeddings``: FNIR at
FPIR (a table per decision score), the DET plot, and the figures by gallery size (enrolled classes)
or with distractors. The maths is :func:`lookalike.evaluation.summary.evaluate_open_set`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from lookalike._io import atomic_path

if TYPE_CHECKING:
    import numpy as np

    from lookalike.calibration import CalibrationRecord
    from lookalike.evaluation import EvalSet, OpenSetEvaluation

__all__ = [
    "DetPlotOption",
    "DistractorsOption",
    "DrawsOption",
    "GallerySizesOption",
    "NonMatedShareOption",
    "OpenSetOptions",
    "SeedOption",
    "SizesPlotOption",
    "run_open_set",
]

NonMatedShareOption = Annotated[
    float,
    typer.Option(
        "--non-mated-share",
        help="Share of the split's classes left out of the gallery: every image of theirs is a "
        "non-mated search (FPIR, FNIR at FPIR, DET).",
    ),
]
GallerySizesOption = Annotated[
    str | None,
    typer.Option(
        "--gallery-sizes",
        help="Comma-separated gallery sizes in ENROLLED CLASSES (e.g. 10,20,50): hit_rate@1, MAP@R and "
        "FNIR at FPIR at each, over --draws random galleries; the other classes' images are the "
        "non-mated searches.",
    ),
]
DrawsOption = Annotated[int, typer.Option("--draws", min=1, help="Random galleries per gallery size.")]
DistractorsOption = Annotated[
    Path | None,
    typer.Option(
        "--distractors",
        help="Images of objects never searched for, enrolled into the gallery in growing numbers "
        "(0, 10, 100, ..., all): a folder or a manifest with a path column (evaluate), an embeddings "
        "file (evaluate-embeddings).",
    ),
]
DetPlotOption = Annotated[
    Path | None,
    typer.Option("--det-plot", help="Write the DET curve (PNG) here (default: beside the JSON, .det.png)."),
]
SizesPlotOption = Annotated[
    Path | None,
    typer.Option(
        "--sizes-plot",
        help="Write the figures by gallery size (PNG) here (default: beside the JSON, .sizes.png).",
    ),
]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of the held-out classes and the draws.")]


@dataclass(frozen=True)
class OpenSetOptions:
    """The open-set options of a command, checked."""

    non_mated_share: float = 0.25
    gallery_sizes: str | None = None
    draws: int = 3
    distractors: Path | None = None
    det_plot: Path | None = None
    sizes_plot: Path | None = None
    seed: int = 0

    def sizes(self) -> list[int] | None:
        from lookalike.evaluation.summary import parse_sizes

        if self.gallery_sizes is not None and self.distractors is not None:
            raise ValueError(
                "give --gallery-sizes or --distractors, not both (each defines the gallery's size)"
            )
        if not 0.0 < self.non_mated_share < 1.0:
            raise ValueError(f"--non-mated-share must be in (0, 1), got {self.non_mated_share}")
        return None if self.gallery_sizes is None else parse_sizes(self.gallery_sizes)


def run_open_set(
    data: EvalSet,
    options: OpenSetOptions,
    *,
    distance: str,
    distractors: tuple[np.ndarray, list[str] | None] | None,
    calibration: CalibrationRecord | None,
    json_path: Path | None,
    console: Console,
) -> dict[str, Any]:
    """Evaluate, print the tables, write the plots; returns the JSON part (``open_set``, and
    ``gallery_sizes`` when sizes or distractors were given). ``calibration``: the model's; its
    threshold for each gallery's size, on its decision score, gives the rates at it."""
    from lookalike.evaluation.summary import evaluate_open_set

    decision: dict[str, Any] = {}
    if calibration is not None:
        decision = {
            "threshold": calibration,
            "threshold_score": calibration.score,
            "depth": calibration.depth,
        }
    evaluation = evaluate_open_set(
        data,
        distance=distance,
        non_mated_share=options.non_mated_share,
        seed=options.seed,
        gallery_sizes=options.sizes(),
        draws=options.draws,
        distractors=None if distractors is None else distractors[0],
        distractor_labels=None if distractors is None else distractors[1],
        **decision,
    )
    console.print(fnir_table(evaluation))
    at = evaluation.report.at_threshold
    if at is not None:
        n = evaluation.report.n_enrolled_classes
        console.print(
            f"at the calibrated threshold {at.threshold:.4f} ({at.score} score, {n} enrolled classes): "
            f"FPIR {_with_ci(at.fpir, at.fpir_ci95)} of {at.n_non_mated} non-mated, "
            f"FNIR {_with_ci(at.fnir, at.fnir_ci95)} of {at.n_mated} mated, wrong-match rate "
            f"{_fmt(at.wrong_match_rate)}"
        )
    if evaluation.sizes:
        console.print(sizes_table(evaluation))
    payload = evaluation.to_dict()
    payload["plots"] = _write_plots(evaluation, options, json_path, console)
    return payload


def fnir_table(evaluation: OpenSetEvaluation) -> Table:
    """FNIR at each target FPIR (columns) for each decision score (rows), with 95 % intervals."""
    report = evaluation.report
    targets = list(dict.fromkeys(r.fpir for r in report.fnir_at_fpir))
    table = Table(title="open set: FNIR at FPIR (mated searches not matched right)")
    table.add_column("decision score")
    for t in targets:
        table.add_column(f"FPIR {t:g}", justify="right")
    for score in dict.fromkeys(r.score for r in report.fnir_at_fpir):
        rows = [r for r in report.fnir_at_fpir if r.score == score]
        table.add_row(score, *(_with_ci(r.fnir, r.fnir_ci95, r.fpir_resolved) for r in rows))
    table.caption = (
        f"{report.n_mated} mated and {report.n_non_mated} non-mated searches; {report.n_enrolled_classes} "
        f"of {report.n_classes} classes enrolled ({report.n_gallery_images} gallery images); "
        "[95 % Wilson interval]; * too few non-mated searches to resolve that FPIR"
    )
    return table


def sizes_table(evaluation: OpenSetEvaluation) -> Table:
    """One row per gallery size: the size, hit_rate@1, MAP@R, FNIR at FPIR 0.05 per score, and the
    rates at the threshold when there is one."""
    points = evaluation.sizes
    distractors = evaluation.size_unit == "distractor images"
    table = Table(title=f"by gallery size ({evaluation.size_unit})")
    table.add_column("distractors" if distractors else "enrolled classes", justify="right")
    table.add_column("gallery images", justify="right")
    for name in ("hit_rate@1", "map@r"):
        table.add_column(name, justify="right")
    scores = list(dict.fromkeys(r.score for r in points[0].fnir_at_fpir))
    for score in scores:
        table.add_column(f"FNIR@FPIR 0.05 {score}", justify="right")
    with_threshold = points[0].at_threshold is not None
    if with_threshold:
        table.add_column("FPIR at threshold", justify="right")
        table.add_column("FNIR at threshold", justify="right")
    for p in points:
        row = [str(p.n_distractors if distractors else p.size_classes), f"{p.size_images:.0f}"]
        row += [_fmt(p.hit_rate_at_1), _fmt(p.map_at_r)]
        for score in scores:
            hit = [r for r in p.fnir_at_fpir if r.score == score and math.isclose(r.fpir, 0.05)]
            row.append(_with_ci(hit[0].fnir, hit[0].fnir_ci95, hit[0].fpir_resolved) if hit else "")
        if with_threshold and p.at_threshold is not None:
            row += [
                _with_ci(p.at_threshold.fpir, p.at_threshold.fpir_ci95),
                _with_ci(p.at_threshold.fnir, p.at_threshold.fnir_ci95),
            ]
        table.add_row(*row)
    table.caption = f"{points[0].draws} draw(s) per size; [95 % Wilson interval]"
    return table


def _write_plots(
    evaluation: OpenSetEvaluation, options: OpenSetOptions, json_path: Path | None, console: Console
) -> dict[str, str]:
    from lookalike.report.open_set import det_plot, gallery_size_plot

    stem = None if json_path is None else json_path.with_suffix("")
    det = options.det_plot or (None if stem is None else stem.with_suffix(".det.png"))
    written: dict[str, str] = {}
    if det is not None:
        written["det"] = _write_png(det, det_plot(evaluation.report))
    sizes = options.sizes_plot or (None if stem is None else stem.with_suffix(".sizes.png"))
    if evaluation.sizes and sizes is not None:
        written["gallery_sizes"] = _write_png(sizes, gallery_size_plot(evaluation))
    for name, path in written.items():
        console.print(f"{name} plot written to {path}")
    return written


def _write_png(path: Path, data: bytes) -> str:
    with atomic_path(path, suffix=".png") as tmp:
        tmp.write_bytes(data)
    return str(path)


def _fmt(v: float) -> str:
    return "nan" if math.isnan(v) else f"{v:.3f}"


def _with_ci(value: float, ci: tuple[float, float], resolved: bool = True) -> str:
    if math.isnan(value):
        return "–"
    return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" + ("" if resolved else " *")
