"""The demo's stages, run by :func:`run_demo` (see :mod:`lookalike.demo`)."""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from rich.console import Console

from lookalike.config import TrainingConfig, apply_overrides, validate_config
from lookalike.data.builtin import BUILTIN_DATASETS, PUBLIC_DATASETS, GlyphsSpec

if TYPE_CHECKING:
    from lookalike.calibration import CalibrationRecord
    from lookalike.evaluation import OpenSetEvaluation
    from lookalike.gallery import Matcher
    from lookalike.training import FitResult

__all__ = ["DEMO_CONFIG", "DemoResult", "demo_config", "glyphs_folder", "prepare_data", "run_demo"]

#: The demo's training config (``configs/demo.yaml`` is the same, for ``lookalike train``).
DEMO_CONFIG: dict[str, Any] = {
    "data": {
        "root": None,
        "val": 0.15,
        "test": 0.25,
        "seed": 0,
        "queries_per_class": 1,
        "num_workers": 0,
        "eval_batch_size": 256,
        "cache_images": True,
    },
    "model": {
        "backbone": "convnet4",
        "pretrained": False,
        "embed_dim": 64,
        "head": "linear",
        "image_size": 32,
        "freeze": "full",
        "in_chans": 1,
    },
    "augment": {"hflip": False, "crop_scale": [0.6, 1.0]},
    # the default recipe (multi-similarity, no miner) at configs/omniglot_cnn.yaml's tuned lr and P x K:
    # test map@r 0.566 against 0.374 for triplet + semi-hard, lr 2e-3, 32 x 4 (BENCHMARKS.md, issue 12)
    "sampler": {"p": 16, "k": 8},
    "miner": {"name": None},
    "loss": {"name": "multi_similarity"},
    "memory": {"size": 0},
    "optim": {"lr": 7.7e-3, "weight_decay": 1.0e-4, "warmup_epochs": 0.5, "grad_clip": 5.0},
    "train": {"epochs": 12, "device": "cpu", "amp": "off", "seed": 0},
    "eval": {"every": 3, "ks": [1, 10, 50, 1000], "metric": "map@r"},
}


@dataclass
class DemoResult:
    """What a demo run produced: folders and files, the figures, and the time of each stage.

    ``calibration``: the calibration record as stored (``CalibrationRecord.to_dict()``);
    ``fpir`` / ``fnir`` / ``wrong_match_rate``: of the test searches against the demo's gallery
    (queries of left-out classes are the non-mated searches); ``open_set``: the test split's DET
    and FPIR by gallery size.
    """

    out: Path
    run_dir: Path
    gallery: Path
    report: Path
    manifest: Path
    before: dict[str, float]
    after: dict[str, float]
    calibration: dict[str, Any]
    known_correct: float
    unknown_rejected: float
    n_known: int
    n_unknown: int
    stages: list[tuple[str, float]] = field(default_factory=list)
    fpir: float = float("nan")
    fnir: float = float("nan")
    wrong_match_rate: float = float("nan")
    threshold: float = float("nan")
    open_set: OpenSetEvaluation | None = None


def demo_config(root: str | Path, overrides: Sequence[str] = ()) -> TrainingConfig:
    """The demo's training config on the data at ``root``, with ``--set`` overrides. Choosing
    another miner or loss (``--set loss.name=...``) starts that section afresh: its options are
    the class's defaults plus any other ``--set`` of that section."""
    raw = copy.deepcopy(DEMO_CONFIG)
    raw["data"]["root"] = str(root)
    for section in ("miner", "loss"):  # another miner/loss: the default's options do not apply to it
        if any(o.startswith(f"{section}.name=") for o in overrides):
            raw[section] = {}
    return validate_config(apply_overrides(raw, list(overrides)), source="the demo config")


class _Stages:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.times: list[tuple[str, float]] = []
        self._name: str | None = None
        self._start = 0.0

    def start(self, name: str, what: str) -> None:
        self.stop()
        self._name, self._start = name, time.perf_counter()
        self.console.rule(f"[bold]{name}[/]: {what}", align="left")

    def stop(self) -> None:
        if self._name is not None:
            self.times.append((self._name, time.perf_counter() - self._start))
            self._name = None


def glyphs_folder(data_dir: str | Path, spec: GlyphsSpec) -> Path:
    """Where the demo keeps the glyphs data set of ``spec`` under ``data_dir`` (one folder per spec)."""
    name = f"glyphs-seed{spec.seed}-{spec.classes or 'all'}x{spec.per_class}-{spec.image_size}px"
    return Path(data_dir) / name


def prepare_data(
    out: Path,
    *,
    data: str | Path | None = None,
    dataset: str = "glyphs",
    spec: GlyphsSpec | None = None,
    data_dir: str | Path | None = None,
) -> tuple[Path, str]:
    """The manifest the demo trains on and a sentence describing it. Built-in and downloaded data
    sets are kept in ``data_dir`` (default ``out/data``) and reused by later runs."""
    data_dir = Path(data_dir) if data_dir is not None else out / "data"
    if data is not None:
        path = Path(data)
        if not path.exists():
            raise FileNotFoundError(
                f"--data {str(path)!r} does not exist; give an image folder (a folder per class) or a "
                "manifest (CSV/Parquet with path and label columns)"
            )
        if path.is_dir():
            from lookalike.data import manifest_from_folder, write_manifest

            frame = manifest_from_folder(path)
            manifest = write_manifest(frame, out / "manifest.csv")
            return (
                manifest,
                f"your images in {path} ({len(frame)} images, {frame['label'].nunique()} classes)",
            )
        return path, f"the manifest {path}"
    if dataset in BUILTIN_DATASETS:
        from lookalike.data.builtin import make_glyphs

        spec = spec or GlyphsSpec()
        folder = glyphs_folder(data_dir, spec)
        frame = make_glyphs(folder, spec)
        text = (
            f"Built-in glyphs: {frame['label'].nunique()} characters (Latin, Greek, Cyrillic, Armenian, "
            f"Georgian, symbols, arrows, maths) rendered from the fonts matplotlib ships, "
            f"{spec.per_class} images each ({spec.image_size} px, {frame['font'].nunique()} font faces, "
            "random warp, stroke, blur and noise); the model must learn “the same glyph in another font”."
        )
        return folder / "manifest.csv", text
    if dataset in PUBLIC_DATASETS:
        from lookalike.data.builtin import import_public_dataset

        root = data_dir / dataset
        frame = import_public_dataset(dataset, root)
        return root / "manifest.csv", f"{dataset} ({len(frame)} images, {frame['label'].nunique()} classes)"
    raise ValueError(
        f"unknown data set {dataset!r}; expected one of {list(BUILTIN_DATASETS + PUBLIC_DATASETS)}"
    )


@dataclass(frozen=True)
class _TestSplit:
    """The test split as the demo uses it: the query rows, all gallery rows, the gallery rows of
    the enrolled classes, the classes left out (their queries are the non-mated searches) and the
    whole split frame (paths made absolute)."""

    split: pd.DataFrame
    queries: pd.DataFrame
    gallery: pd.DataFrame
    enrolled_gallery: pd.DataFrame
    held: frozenset[str]


def run_demo(
    out: str | Path,
    *,
    data: str | Path | None = None,
    dataset: str = "glyphs",
    spec: GlyphsSpec | None = None,
    data_dir: str | Path | None = None,
    overrides: Sequence[str] = (),
    left_out: float = 0.25,
    target_fpir: float = 0.05,
    examples: int = 12,
    console: Console | None = None,
) -> DemoResult:
    """Run every stage into the folder ``out`` (see the module doc) and write ``out/report.html``.

    ``data_dir``: where built-in and downloaded data sets are kept and reused (default ``out/data``).
    ``left_out``: share of the test classes kept out of the gallery (their queries should be
    answered "no match"). ``target_fpir``: the FPIR (non-mated searches answered "match") the
    calibration sets the threshold for. ``examples``: searches of each kind shown in the report.
    """
    console = console or Console()
    out = Path(out)
    if (out / "run" / "metrics.jsonl").exists():
        raise FileExistsError(f"{out} already holds a demo run; choose another --out or remove it")
    demo_config(out / "data", overrides)  # a bad --set fails now, before any work
    out.mkdir(parents=True, exist_ok=True)
    stages = _Stages(console)
    stages.start("data", "a data set every later command reads as a folder per class + manifest")
    manifest, description = prepare_data(out, data=data, dataset=dataset, spec=spec, data_dir=data_dir)
    config = demo_config(manifest, overrides)
    console.print(f"{description}\nmanifest: {manifest}")
    stages.start("train", "class-disjoint split, metrics before, training, metrics after")
    run_dir = out / "run"
    result = _train(config, run_dir, console)
    stages.start("calibrate", "the decision score and the threshold for a target FPIR, on the val split")
    record, checkpoint = _calibrate(run_dir, target_fpir=target_fpir, seed=config.data.seed, console=console)
    stages.start("index", "a gallery of the test split, some of its classes left out")
    test = _test_split(run_dir, left_out, config.data.seed)
    with _build_gallery(out / "gallery", checkpoint, test, record, console) as matcher:
        stages.start("search", "every test query against the gallery, with its decision")
        searched = _search(matcher, test, console)
        stages.start("report", "report.html: DET curve, FPIR against gallery size, example searches")
        open_set = _open_set(matcher, test, record, left_out, config.data.seed)
    stages.stop()
    demo = DemoResult(
        out=out,
        run_dir=run_dir,
        gallery=out / "gallery",
        report=out / "report.html",
        manifest=Path(manifest),
        before=dict(result.test_baseline),  # type: ignore[arg-type]
        after=dict(result.test),  # type: ignore[arg-type]
        calibration=record.to_dict(),
        stages=stages.times,
        open_set=open_set,
        **searched.figures(),
    )
    from lookalike.demo.page import DemoPage, write_demo_report

    page = DemoPage(description, config, test.split, result, searched.cases, test.held, examples)
    write_demo_report(demo, page)
    _goodbye(demo, console)
    return demo


def _train(config: TrainingConfig, run_dir: Path, console: Console) -> FitResult:
    from lookalike.training import fit

    result = fit(config, run_dir, console=console)
    if result.test is None or result.test_baseline is None:
        raise ValueError("the split has no test queries: use more classes (data.test > 0)")
    return result


def _calibrate(
    run_dir: Path, *, target_fpir: float, seed: int, console: Console
) -> tuple[CalibrationRecord, Path]:
    """Calibrate the best checkpoint on the val split (every val image a search against the others);
    returns the record and the calibrated copy of the checkpoint."""
    from lookalike.calibration import calibrate_open_set, write_checkpoint_calibration
    from lookalike.data import read_manifest
    from lookalike.evaluation import embed_split
    from lookalike.models.inference import load_inference_model
    from lookalike.protocol import split_rows

    best = run_dir / "checkpoints" / "best.pt"
    model = load_inference_model(checkpoint=best)
    queries, gallery = split_rows(read_manifest(run_dir / "split.csv"), "val", queries="all")
    embedded = embed_split(model.embedder, queries, gallery, device=model.device)
    record = calibrate_open_set(
        embedded.embeddings.numpy(),
        embedded.rows["label"].astype(str).to_numpy(),
        target_fpir=target_fpir,
        distance=model.distance,
        seed=seed,
    )
    out = write_checkpoint_calibration(best, record, out=run_dir / "checkpoints" / "calibrated.pt")
    fnir = record.figures.get("fnir_at_target", {})
    console.print(
        f"decision score {record.score!r} (FNIR at FPIR {target_fpir} on val: "
        + ", ".join(f"{s} {v:.3f}" for s, v in fnir.items())
        + f"); thresholds for galleries of {record.size_range[0]}-{record.size_range[1]} objects -> {out}"
    )
    return record, out


def _test_split(run_dir: Path, left_out: float, seed: int) -> _TestSplit:
    from lookalike.evaluation.open_set import open_set_classes
    from lookalike.protocol import split_rows

    split = pd.read_csv(run_dir / "split.csv")
    split["path"] = [str((run_dir / p).resolve()) if not Path(p).is_absolute() else p for p in split["path"]]
    queries, gallery = split_rows(split, "test", queries="roles")
    classes = np.unique(gallery["label"].astype(str))
    enrolled = open_set_classes(classes, left_out, seed).tolist() if left_out > 0 else classes.tolist()
    kept = gallery[gallery["label"].astype(str).isin(set(enrolled))]
    return _TestSplit(split, queries, gallery, kept, frozenset(set(classes.tolist()) - set(enrolled)))


def _build_gallery(
    folder: Path, checkpoint: Path, test: _TestSplit, record: CalibrationRecord, console: Console
) -> Matcher:
    """A gallery folder of the enrolled test rows embedded with the calibrated model, built as
    ``lookalike index build`` builds one, its threshold set for its size; returns its Matcher."""
    from lookalike.gallery import Matcher
    from lookalike.gallery.calibration import set_gallery_calibration
    from lookalike.gallery.indexing import build_gallery, embed_items, gallery_header
    from lookalike.models.inference import load_inference_model

    model = load_inference_model(checkpoint=checkpoint)
    rows = test.enrolled_gallery
    items = pd.DataFrame(
        {"id": [f"row-{r}" for r in rows.index], "label": rows["label"].astype(str), "path": rows["path"]}
    ).reset_index(drop=True)  # the split manifest's row as id: unique, traceable
    store = build_gallery(
        folder, gallery_header(model), embed_items(model, items, device=model.device), items
    )
    threshold, objects = set_gallery_calibration(store, record)
    console.print(
        f"gallery {folder}: {len(items)} images of {objects} test classes; {len(test.held)} test classes "
        f"left out; threshold {threshold:.4f} on the {record.score} score for {objects} objects "
        f"(target FPIR {record.target_fpir})"
    )
    return Matcher(store, model)


@dataclass
class _Searched:
    """The test queries' searches against the demo gallery and their rates."""

    cases: list[Any]
    rates: Any
    threshold: float

    def figures(self) -> dict[str, Any]:
        known = [c for c in self.cases if c.known]
        unknown = [c for c in self.cases if not c.known]
        return {
            "known_correct": _share([c.outcome == "correct match" for c in known]),
            "unknown_rejected": _share([c.decision != "match" for c in unknown]),
            "n_known": len(known),
            "n_unknown": len(unknown),
            "fpir": self.rates.fpir,
            "fnir": self.rates.fnir,
            "wrong_match_rate": self.rates.wrong_match_rate,
            "threshold": self.threshold,
        }


def _search(matcher: Matcher, test: _TestSplit, console: Console) -> _Searched:
    from lookalike.metrics.identification import identification_rates

    paths = test.queries["path"].tolist()
    results = matcher.search(paths, k=5, names=paths)
    cases = _cases(test.queries, results, test.held, test.split)
    threshold = float(matcher.threshold)  # type: ignore[arg-type]
    rates = identification_rates(
        np.array([np.inf if c.score is None else c.score for c in cases]),
        np.array([c.neighbours[0].label if c.neighbours else None for c in cases], dtype=object),
        np.array([c.query_label for c in cases], dtype=object),
        np.array([c.known for c in cases], dtype=bool),
        threshold=threshold,
    )
    searched = _Searched(cases, rates, threshold)
    f = searched.figures()
    console.print(
        f"known characters: {f['known_correct']:.1%} matched right ({f['n_known']} mated searches); "
        f"left-out characters: {f['unknown_rejected']:.1%} answered no match ({f['n_unknown']} non-mated)\n"
        f"on the test searches: FPIR {rates.fpir:.3f} of {rates.n_non_mated} non-mated (target "
        f"{matcher.gallery.header.calibration.get('target_fpir')}), FNIR {rates.fnir:.3f} of {rates.n_mated} "
        f"mated, wrong-match rate {rates.wrong_match_rate:.3f} (part of FNIR)"
    )
    return searched


def _open_set(
    matcher: Matcher, test: _TestSplit, record: CalibrationRecord, left_out: float, seed: int
) -> OpenSetEvaluation:
    """The test split's DET curves (the demo's held-out classes as the non-mated ones) and FPIR at
    the calibrated threshold on galleries of an eighth to all but a quarter of its classes."""
    from lookalike.evaluation import embed_split, evaluate_open_set

    embedded = embed_split(matcher.model.embedder, test.queries, test.gallery, device=matcher.model.device)
    data = embedded.eval_set()
    n = len(data.classes)
    lo, hi = max(1, round(n / 8)), max(1, n - round(n / 4))
    sizes = sorted({round(lo * (hi / lo) ** (i / 4)) for i in range(5)})
    return evaluate_open_set(
        data,
        distance=matcher.model.distance,
        non_mated_share=left_out if left_out > 0 else 0.25,
        seed=seed,
        gallery_sizes=sizes,
        draws=3,
        threshold=record,
        threshold_score=record.score,
        depth=record.depth,
    )


def _cases(queries: pd.DataFrame, results: list, held: frozenset[str], split: pd.DataFrame) -> list:
    from lookalike.report import Neighbour, SearchCase

    titles = _titles(split)
    cases = []
    for (_, row), res in zip(queries.iterrows(), results, strict=True):
        label = str(row["label"])
        neighbours = [
            Neighbour(path=n.path, label=str(n.label), distance=float(n.distance), correct=n.label == label)
            for n in res.neighbours
        ]
        cases.append(
            SearchCase(
                query_path=str(row["path"]),
                query_label=label,
                known=label not in held,
                decision=res.decision,
                matched_label=res.label,
                distance=res.distance,
                threshold=res.threshold,
                neighbours=neighbours,
                title=titles.get(label, ""),
                score=res.score,
            )
        )
    return cases


def _titles(split: pd.DataFrame) -> dict[str, str]:
    if "char" not in split.columns or "name" not in split.columns:
        return {}
    first = split.drop_duplicates("label")
    return {str(r.label): f"{r.char} {str(r.name).lower()}" for r in first.itertuples()}


def _share(flags: list[bool]) -> float:
    return float(np.mean(flags)) if flags else float("nan")


def _goodbye(demo: DemoResult, console: Console) -> None:
    console.print(
        f"\n[bold]test hit_rate@1[/]: {demo.before['hit_rate@1']:.3f} untrained -> "
        f"{demo.after['hit_rate@1']:.3f} trained"
    )
    console.print(f"[bold]report[/]: {demo.report.resolve()}  (open it in a browser)")
    console.print(f"[bold]start the page[/]: lookalike serve --gallery {demo.gallery}")
