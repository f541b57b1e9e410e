"""The whole system on one page: ``lookalike demo`` (and ``make demo``).

Stages, each through the same Python API the commands use:

1. data: the built-in glyphs data set (:mod:`lookalike.data.builtin`, no download), a public
   benchmark (``--dataset omniglot|cub|sop``, needs internet) or the user's own (``--data``);
2. train: the class-disjoint split with one query per val/test class, the metrics of the untrained
   model, CPU training, the metrics after (:func:`lookalike.training.fit`);
3. calibrate: the match threshold on the val split, stored in a copy of the best checkpoint;
4. index: a gallery of the test split, with a seeded share of the test classes left out;
5. search: every test query searched, with its decision (those of left-out classes should come
   back "no match");
6. report: ``report.html`` in the run folder (self-contained), see :mod:`lookalike.report`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from rich.console import Console

from lookalike.config import TrainingConfig, apply_overrides, config_to_dict, validate_config
from lookalike.data.builtin import BUILTIN_DATASETS, PUBLIC_DATASETS, GlyphsSpec

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
    """What a demo run produced: folders and files, the figures, and the time of each stage."""

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
    #: the calibrated threshold on the test searches: accepted impostors / impostors (queries of
    #: left-out classes, and known ones whose nearest item is another class), and accepted genuine /
    #: genuine; nan where there is none of a kind
    test_far: float = float("nan")
    test_tar: float = float("nan")


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


def _left_out_classes(labels: Sequence[str], share: float, seed: int) -> set[str]:
    classes = sorted(set(labels))
    n = min(len(classes) - 1, max(1, round(share * len(classes)))) if share > 0 else 0
    order = np.random.default_rng([seed, 0x6C656674]).permutation(len(classes))
    return {classes[i] for i in order[:n]}


def run_demo(
    out: str | Path,
    *,
    data: str | Path | None = None,
    dataset: str = "glyphs",
    spec: GlyphsSpec | None = None,
    data_dir: str | Path | None = None,
    overrides: Sequence[str] = (),
    left_out: float = 0.25,
    target_far: float = 0.05,
    examples: int = 12,
    console: Console | None = None,
) -> DemoResult:
    """Run every stage into the folder ``out`` (see the module doc) and write ``out/report.html``.

    ``data_dir``: where built-in and downloaded data sets are kept and reused (default ``out/data``).
    ``left_out``: share of the test classes kept out of the gallery (their queries should be
    answered "no match"). ``target_far``: the false accept rate the threshold is calibrated for.
    ``examples``: searches of each kind shown in the report.
    """
    from lookalike.training import fit

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
    result = fit(config, run_dir, console=console)
    if result.test is None or result.test_baseline is None:
        raise ValueError("the split has no test queries: use more classes (data.test > 0)")

    stages.start("calibrate", "the match threshold on the val split (unseen classes, open set)")
    calibration, checkpoint = _calibrate(
        run_dir, target_far=target_far, open_set_share=left_out, console=console
    )

    stages.start("index", "a gallery of the test split, some of its classes left out")
    split = pd.read_csv(run_dir / "split.csv")
    split["path"] = [str((run_dir / p).resolve()) if not Path(p).is_absolute() else p for p in split["path"]]
    test = split[split["split"] == "test"]
    queries = test[test["role"] == "query"]
    gallery_rows = test[test["role"] == "gallery"]
    held = _left_out_classes(queries["label"].astype(str).tolist(), left_out, config.data.seed)
    gallery_rows = gallery_rows[~gallery_rows["label"].astype(str).isin(held)]
    gallery_dir = out / "gallery"
    matcher = _build_gallery(gallery_dir, checkpoint, gallery_rows)
    console.print(
        f"gallery {gallery_dir}: {len(gallery_rows)} images of "
        f"{gallery_rows['label'].nunique()} test classes; {len(held)} test classes left out"
    )

    stages.start("search", "every test query against the gallery, with its decision")
    results = matcher.search(queries["path"].tolist(), k=5, names=queries["path"].tolist())
    cases = _cases(queries, results, held, split)
    known = [c for c in cases if c.known]
    unknown = [c for c in cases if not c.known]
    known_correct = float(np.mean([c.outcome == "correct match" for c in known])) if known else float("nan")
    unknown_rejected = float(np.mean([c.decision != "match" for c in unknown])) if unknown else float("nan")
    console.print(
        f"known characters: {known_correct:.1%} matched correctly ({len(known)} queries); "
        f"left-out characters: {unknown_rejected:.1%} answered no match ({len(unknown)} queries)"
    )
    test_far, test_tar, n_impostor, n_genuine = _rates_on_test(
        *_test_comparisons(cases), calibration["threshold"]["value"]
    )
    console.print(
        f"the threshold on test: FAR {test_far:.3f} of {n_impostor} impostor searches (target "
        f"{target_far}), TAR {test_tar:.3f} of {n_genuine} genuine ones"
    )

    stages.start("report", "report.html")
    stages.stop()
    report = out / "report.html"
    _write_report(
        report,
        description=description,
        config=config,
        split=split,
        result=result,
        run_dir=run_dir,
        calibration=calibration,
        cases=cases,
        held=held,
        gallery_dir=gallery_dir,
        stages=stages.times,
        examples=examples,
        known_correct=known_correct,
        unknown_rejected=unknown_rejected,
    )
    matcher.close()
    console.print(
        f"\n[bold]test hit_rate@1[/]: {result.test_baseline['hit_rate@1']:.3f} untrained -> "
        f"{result.test['hit_rate@1']:.3f} trained"
    )
    console.print(f"[bold]report[/]: {report.resolve()}  (open it in a browser)")
    console.print(f"[bold]start the page[/]: lookalike serve --gallery {gallery_dir}")
    return DemoResult(
        out=out,
        run_dir=run_dir,
        gallery=gallery_dir,
        report=report,
        manifest=Path(manifest),
        before=dict(result.test_baseline),
        after=dict(result.test),
        calibration=calibration,
        known_correct=known_correct,
        unknown_rejected=unknown_rejected,
        n_known=len(known),
        n_unknown=len(unknown),
        stages=stages.times,
        test_far=test_far,
        test_tar=test_tar,
    )


def _calibrate(
    run_dir: Path, *, target_far: float, open_set_share: float, console: Console
) -> tuple[dict[str, Any], Path]:
    """Calibrate the best checkpoint on the val split; returns the figures and the calibrated copy.

    ``open_set_share``: the share of val classes playing unknown objects, the same as the test
    gallery leaves out, so that the impostors the threshold is set on come in the mix the test
    searches meet (known classes whose nearest item is another class are the harder impostors)."""
    from lookalike.calibration import calibrate_split, store_calibration
    from lookalike.data import read_manifest
    from lookalike.models.inference import load_inference_model

    best = run_dir / "checkpoints" / "best.pt"
    model = load_inference_model(checkpoint=best)
    frame = read_manifest(run_dir / "split.csv")
    calibration = calibrate_split(
        model, frame, split="val", target_far=target_far, open_set_share=open_set_share
    )
    out = run_dir / "checkpoints" / "calibrated.pt"
    store_calibration(best, calibration, out=out)
    figures = calibration.to_dict()
    console.print(
        f"threshold {calibration.threshold.value:.4f} (target FAR {target_far}): on val FAR "
        f"{calibration.far:.3f}, TAR {calibration.tar:.3f}, ROC AUC {calibration.roc_auc:.3f}, "
        f"EER {calibration.eer:.3f} -> {out}"
    )
    for warning in calibration.warnings:
        console.print(f"[yellow]note[/]: {warning}")
    return figures, out


def _build_gallery(folder: Path, checkpoint: Path, rows: pd.DataFrame):
    """A gallery folder of ``rows`` embedded with the calibrated model; returns its Matcher."""
    from lookalike.gallery import GalleryHeader, Matcher, create_gallery
    from lookalike.models.inference import load_inference_model

    model = load_inference_model(checkpoint=checkpoint)
    threshold = model.threshold.value if model.threshold is not None else None
    header = GalleryHeader(
        embed_dim=model.embed_dim,
        distance=model.distance,
        model_fingerprint=model.fingerprint,
        preprocessing=model.preprocessing.to_dict(),
        model_source=f"checkpoint:{checkpoint.resolve()}",
        threshold=threshold,
        calibration=model.calibration,
    )
    store = create_gallery(folder, header, overwrite=False)
    matcher = Matcher(store, model)
    ids = [f"row-{row}" for row in rows.index]  # the split manifest's row: unique, traceable
    matcher.add(
        rows["path"].tolist(), rows["label"].astype(str).tolist(), ids=ids, paths=rows["path"].tolist()
    )
    return matcher


def _cases(queries: pd.DataFrame, results: list, held: set[str], split: pd.DataFrame) -> list:
    from lookalike.report import Neighbour, SearchCase

    titles = _titles(split)
    cases = []
    for (_, row), res in zip(queries.iterrows(), results, strict=True):
        label = str(row["label"])
        cases.append(
            SearchCase(
                query_path=str(row["path"]),
                query_label=label,
                known=label not in held,
                decision=res.decision,
                matched_label=res.label,
                distance=res.distance,
                threshold=res.threshold,
                neighbours=[
                    Neighbour(
                        path=n.path, label=str(n.label), distance=float(n.distance), correct=n.label == label
                    )
                    for n in res.neighbours
                ],
                title=titles.get(label, ""),
            )
        )
    return cases


def _titles(split: pd.DataFrame) -> dict[str, str]:
    if "char" not in split.columns or "name" not in split.columns:
        return {}
    first = split.drop_duplicates("label")
    return {str(r.label): f"{r.char} {str(r.name).lower()}" for r in first.itertuples()}


def _write_report(
    path: Path,
    *,
    description: str,
    config: TrainingConfig,
    split: pd.DataFrame,
    result,
    run_dir: Path,
    calibration: dict[str, Any],
    cases: list,
    held: set[str],
    gallery_dir: Path,
    stages: list[tuple[str, float]],
    examples: int,
    known_correct: float,
    unknown_rejected: float,
) -> None:
    from lookalike.metrics.verification import roc_curve
    from lookalike.report import ReportData, roc_figure, training_figure, worst_first, write_report
    from lookalike.training.history import RunHistory

    history = RunHistory(run_dir)
    evals = [r for r in history.evals() if r.get("split") == "val"]
    training_png = training_figure(
        history.epochs(), evals, metrics=["hit_rate@1", "hit_rate@10", "recall@10", "map@r"]
    )
    threshold = calibration["threshold"]["value"]
    values, genuine = _test_comparisons(cases)
    roc_png = None
    roc_note = (
        f"No ROC curve: of the {len(values)} test searches, {int(genuine.sum())} found their class "
        f"first and {int((~genuine).sum())} did not; the curve needs both kinds."
    )
    if genuine.any() and (~genuine).any():
        curve = roc_curve(values, genuine)
        far, tar, _, _ = _rates_on_test(values, genuine, threshold)
        roc_png = roc_figure(
            curve.far,
            curve.tar,
            threshold_far=far,
            threshold_tar=tar,
            label=f"calibrated threshold {threshold:.3f}: FAR {far:.2f}, TAR {tar:.2f} on test",
        )
    rows = []
    for name in ("train", "val", "test"):
        part = split[split["split"] == name]
        rows.append(
            {
                "split": name,
                "classes": part["label"].nunique(),
                "queries": int((part["role"] == "query").sum()),
                "images": int((part["role"] != "query").sum()),
            }
        )
    cfg = config_to_dict(config)
    facts = [
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
    cal_rows = [
        ("threshold (Euclidean distance)", f"{threshold:.4f}"),
        (
            "calibrated on",
            f"val split, {calibration.get('n_genuine')} genuine and "
            f"{calibration.get('n_impostor')} impostor comparisons",
        ),
        ("target FAR", f"{calibration.get('target_far')}"),
        (
            "FAR / TAR on val",
            f"{calibration.get('far', float('nan')):.3f} / {calibration.get('tar', float('nan')):.3f}",
        ),
        (
            "ROC AUC / EER on val",
            f"{calibration.get('roc_auc', float('nan')):.3f} / {calibration.get('eer', float('nan')):.3f}",
        ),
    ]
    known = [c for c in cases if c.known]
    unknown = [c for c in cases if not c.known]
    open_rows = [
        ("known test characters matched correctly", f"{known_correct:.1%} of {len(known)}"),
        ("left-out test characters answered “no match”", f"{unknown_rejected:.1%} of {len(unknown)}"),
    ]
    no_match = sorted(unknown, key=lambda c: (c.good, c.distance or 0.0))
    data = ReportData(
        title="lookalike demo: find this character among known ones",
        dataset=description,
        facts=facts,
        split_rows=rows,
        config_yaml=yaml.safe_dump(cfg, sort_keys=False),
        ks=config.eval.ks,
        before=result.test_baseline,
        after=result.test,
        calibration=cal_rows,
        open_set=open_rows,
        training_png=training_png,
        roc_png=roc_png,
        roc_note=roc_note,
        searches=worst_first(known)[:examples],
        no_match=no_match[:examples],
        stages=stages,
        names=_short_names(split),
        commands=[
            ("start the search page", f"lookalike serve --gallery {gallery_dir}"),
            ("search from the terminal", f"lookalike search --gallery {gallery_dir} IMAGE..."),
            (
                "evaluate the trained model",
                f"lookalike evaluate --checkpoint {run_dir}/checkpoints/best.pt "
                f"--manifest {run_dir}/split.csv --split test",
            ),
        ],
    )
    write_report(path, data)


def _short_names(split: pd.DataFrame) -> dict[str, str]:
    if "char" not in split.columns:
        return {}
    first = split.drop_duplicates("label")
    return {str(r.label): f"{r.char} {r.label}" for r in first.itertuples()}


def _rates_on_test(
    distances: np.ndarray, genuine: np.ndarray, threshold: float
) -> tuple[float, float, int, int]:
    """(FAR, TAR, impostors, genuine) of ``threshold`` on the test searches (from
    :func:`_test_comparisons`), with calibration's definitions: a search is genuine when the query's
    class is known and its nearest item is of that class, an impostor otherwise (a left-out class, or
    a known one whose nearest item is another)."""
    accepted = distances <= threshold
    far = float(accepted[~genuine].mean()) if (~genuine).any() else float("nan")
    tar = float(accepted[genuine].mean()) if genuine.any() else float("nan")
    return far, tar, int((~genuine).sum()), int(genuine.sum())


def _test_comparisons(cases: list) -> tuple[np.ndarray, np.ndarray]:
    """The nearest distance of every test search that found an item, and whether it is genuine."""
    searched = [c for c in cases if c.distance is not None]
    distances = np.array([c.distance for c in searched], dtype=float)
    genuine = np.array([c.known and _nearest_correct(c) for c in searched], dtype=bool)
    return distances, genuine


def _nearest_correct(case) -> bool:
    return bool(case.neighbours) and case.neighbours[0].correct
