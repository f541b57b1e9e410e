"""The demo's report page: :class:`~lookalike.report.ReportData` put together from a demo run
(:func:`lookalike.demo.run_demo`): data and split, the metrics before and after training, the
calibrated decision, the three outcomes of known and unknown objects, the DET curve, FPIR against
gallery size, and example searches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml

from lookalike.config import TrainingConfig, config_to_dict
from lookalike.report import ReportData, SearchCase, outcome_rows, worst_first, write_report

if TYPE_CHECKING:
    from pathlib import Path

    from lookalike.demo.run import DemoResult

__all__ = ["DemoPage", "write_demo_report"]


@dataclass(frozen=True)
class DemoPage:
    """What the page needs beyond :class:`~lookalike.demo.DemoResult`: the data set's sentence, the
    config, the split frame, the fit result, the test searches and the left-out classes."""

    description: str
    config: TrainingConfig
    split: pd.DataFrame
    result: Any
    cases: Sequence[SearchCase]
    held: frozenset[str]
    examples: int = 12


def write_demo_report(demo: DemoResult, page: DemoPage) -> Path:
    """Write ``demo.report`` (one self-contained HTML file); returns its path."""
    from lookalike.report import training_figure
    from lookalike.training.history import RunHistory

    history = RunHistory(demo.run_dir)
    evals = [r for r in history.evals() if r.get("split") == "val"]
    training_png = training_figure(
        history.epochs(), evals, metrics=["hit_rate@1", "hit_rate@10", "recall@10", "map@r"]
    )
    det_png, det_note, sizes_png = _open_set_figures(demo)
    known = [c for c in page.cases if c.known]
    unknown = [c for c in page.cases if not c.known]
    data = ReportData(
        title="lookalike demo: find this character among known ones",
        dataset=page.description,
        facts=_facts(page),
        split_rows=_split_rows(page.split),
        config_yaml=yaml.safe_dump(config_to_dict(page.config), sort_keys=False),
        ks=page.config.eval.ks,
        before=demo.before,
        after=demo.after,
        calibration=_calibration_rows(demo),
        open_set=_open_set_rows(demo),
        training_png=training_png,
        det_png=det_png,
        det_note=det_note,
        sizes_png=sizes_png,
        outcomes=outcome_rows(page.cases),
        searches=worst_first(known)[: page.examples],
        no_match=sorted(unknown, key=lambda c: (c.good, c.distance or 0.0))[: page.examples],
        stages=demo.stages,
        names=_short_names(page.split),
        commands=_commands(demo),
    )
    return write_report(demo.report, data)


def _open_set_figures(demo: DemoResult) -> tuple[bytes | None, str, bytes | None]:
    from lookalike.report.open_set import det_plot, threshold_by_size_plot

    evaluation = demo.open_set
    if evaluation is None:
        return None, "No open-set evaluation of the test split.", None
    report = evaluation.report
    if report.n_mated == 0 or report.n_non_mated == 0:
        note = (
            f"No DET curve: {report.n_mated} mated and {report.n_non_mated} non-mated test searches; "
            "it needs both."
        )
        return None, note, None
    target = demo.calibration.get("target_fpir") or 0.05
    mark = (
        demo.fpir,
        demo.fnir,
        f"the demo gallery at its threshold: FPIR {demo.fpir:.2f}, FNIR {demo.fnir:.2f}",
    )
    det = det_plot(report, marks=[mark])
    sizes = threshold_by_size_plot(evaluation, target_fpir=float(target)) if evaluation.sizes else None
    return det, "", sizes


def _facts(page: DemoPage) -> list[tuple[str, str]]:
    config, result, split = page.config, page.result, page.split
    return [
        ("images", f"{len(split)} in {split['label'].nunique()} classes"),
        (
            "model",
            f"{config.model.backbone} → {config.model.embed_dim}-d embedding, {config.model.image_size} px",
        ),
        (
            "miner / loss",
            f"{config.miner.name or 'no miner (the loss weighs every pair)'} / {config.loss.name}",
        ),
        (
            "training",
            f"{result.epochs_done} epochs, {result.train_seconds:.0f} s "
            f"({result.images_per_second:.0f} images/s)",
        ),
        ("best epoch (val " + config.eval.metric + ")", str(result.best_epoch)),
    ]


def _split_rows(split: pd.DataFrame) -> list[dict[str, Any]]:
    from lookalike.protocol import role_rows

    rows = []
    for name in ("train", "val", "test"):
        part = split[split["split"] == name]
        queries = role_rows(part, "query") if name != "train" else part.iloc[:0]
        rows.append(
            {
                "split": name,
                "classes": part["label"].nunique(),
                "queries": len(queries),
                "images": len(part) - len(queries),
            }
        )
    return rows


def _calibration_rows(demo: DemoResult) -> list[tuple[str, str]]:
    cal = demo.calibration
    fnir = cal.get("fnir_at_target") or {}
    size_range = cal.get("size_range")
    return [
        ("decision score", f"{cal.get('score')} (chosen on val: lowest FNIR at the target FPIR)"),
        ("FNIR at the target FPIR on val", ", ".join(f"{s} {v:.3f}" for s, v in fnir.items()) or "–"),
        ("target FPIR", f"{cal.get('target_fpir')}"),
        ("threshold for this gallery", f"{demo.threshold:.4f}"),
        (
            "calibrated on",
            f"val split, {cal.get('calibration_images')} images of "
            f"{cal.get('calibration_objects')} characters",
        ),
        ("gallery sizes covered", "–" if not size_range else f"{size_range[0]}–{size_range[1]} objects"),
        ("method", f"{cal.get('method')}: per gallery size, pooled with the gallery's own images"),
    ]


def _open_set_rows(demo: DemoResult) -> list[tuple[str, str]]:
    return [
        ("known test characters matched right", f"{demo.known_correct:.1%} of {demo.n_known}"),
        ("left-out test characters answered “no match”", f"{demo.unknown_rejected:.1%} of {demo.n_unknown}"),
        ("FPIR on the test searches", f"{demo.fpir:.3f} of {demo.n_unknown} non-mated"),
        ("FNIR on the test searches", f"{demo.fnir:.3f} of {demo.n_known} mated"),
        ("wrong-match rate (part of FNIR)", f"{demo.wrong_match_rate:.3f}"),
    ]


def _short_names(split: pd.DataFrame) -> dict[str, str]:
    if "char" not in split.columns:
        return {}
    first = split.drop_duplicates("label")
    return {str(r.label): f"{r.char} {r.label}" for r in first.itertuples()}


def _commands(demo: DemoResult) -> list[tuple[str, str]]:
    return [
        ("start the search page", f"lookalike serve --gallery {demo.gallery}"),
        ("search from the terminal", f"lookalike search --gallery {demo.gallery} IMAGE..."),
        (
            "evaluate the trained model",
            f"lookalike evaluate --checkpoint {demo.run_dir}/checkpoints/calibrated.pt "
            f"--manifest {demo.run_dir}/split.csv --split test --gallery-sizes 10,25,50,75",
        ),
    ]
