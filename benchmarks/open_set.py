"""Does the match decision keep its FPIR promise at any gallery size? Open-set identification on
saved embeddings of a split's val and test images, one data set per folder.

For each data set (a folder holding ``emb.parquet``, as ``lookalike embed`` writes it, of every
val and test image of ``split.csv``, with ``split`` and ``label`` columns):

1. calibrate on val for a target FPIR (``lookalike.calibration.calibrate_open_set``: the decision
   score chosen on val, a threshold for every gallery size);
2. test galleries enrolling from an eighth to all but a quarter of the test classes (``--draws``
   random draws per size; every image of the other classes searched as non-mated, every image of
   an enrolled class searched against the others, never itself): FPIR at the threshold each
   gallery sets from the calibration and its own images, as ``lookalike index build`` does
   (:mod:`lookalike.calibration.adaptive`; target band [0.025, 0.09], largest / smallest <= 1.6),
   and, for comparison, at the calibration's threshold for the size alone;
3. a gallery grown 6x by adds through the gallery store's ``add`` (a FAISS folder store), the
   threshold re-derived after each add (``set_gallery_calibration``): FPIR after each;
4. on a test gallery of all but a quarter of the classes (the quarter searched as non-mated): FNIR
   at FPIR 0.05 (threshold set on the test's own non-mated searches, the DET reading) for each
   decision score against the nearest-distance rule, and FNIR / FPIR / wrong-match rate at each
   score's own val-calibrated threshold; and the DET reading on a gallery of every test class with
   the val images searched as the non-mated ones.

    PYTHONPATH=src python benchmarks/open_set.py DATA/glyphs DATA/omniglot DATA/cub --draws 20
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from lookalike.calibration import calibrate_open_set
from lookalike.embed import read_embeddings
from lookalike.evaluation import EvalSet, gallery_size_sweep, open_set_report
from lookalike.evaluation.gallery_sizes import drawn_gallery_threshold
from lookalike.evaluation.open_set import (
    Searches,
    fnir_rows,
    open_set_classes,
    rates_at_threshold,
    search_enrolled,
)
from lookalike.gallery.calibration import set_gallery_calibration
from lookalike.metrics.identification import SCORES

FPIR_BAND = (0.025, 0.09)
MAX_SPREAD = 1.6


def load(folder: Path) -> tuple[EvalSet, EvalSet, str]:
    """(val, test) every image a query and a gallery item, and the distance of the embeddings."""
    table, emb, meta = read_embeddings(folder / "emb.parquet")
    if "split" not in table.columns:
        split = pd.read_csv(folder / "split.csv")
        table = table.merge(split[["path", "split"]], on="path", how="left")
    sets = []
    for name in ("val", "test"):
        mask = (table["split"].astype(str) == name).to_numpy()
        if not mask.any():
            raise SystemExit(f"{folder}/emb.parquet has no {name} rows")
        n = int(mask.sum())
        sets.append(
            EvalSet(
                emb[mask], table["label"].astype(str).to_numpy()[mask], np.ones(n, bool), np.ones(n, bool)
            )
        )
    return sets[0], sets[1], str(meta.get("distance", "euclidean"))


def size_ladder(n_classes: int, steps: int = 5) -> list[int]:
    """From an eighth to all but a quarter of the classes, geometric."""
    lo, hi = max(2, round(n_classes / 8)), n_classes - max(1, round(n_classes / 4))
    return sorted({round(lo * (hi / lo) ** (i / (steps - 1))) for i in range(steps)})


def grown_gallery(test: EvalSet, record, *, draws: int, seed: int, distance: str) -> list[list[float]]:
    """FPIR after each add while a folder-store gallery grows 6x (in classes), per draw."""
    from lookalike.gallery import GalleryHeader, create_gallery

    classes = test.classes
    final = len(classes) - max(1, round(len(classes) / 4))
    start = max(1, final // 6)
    steps = [start * i for i in range(1, 7)]
    out = []
    for d in range(draws):
        order = np.random.default_rng([seed, d, 6]).permutation(classes)
        enrolled, others = order[: steps[-1]], order[steps[-1] :]
        non_mated = np.isin(test.labels, others)
        fpirs = []
        with tempfile.TemporaryDirectory() as tmp:
            header = GalleryHeader(embed_dim=test.embeddings.shape[1], distance=distance)
            store = create_gallery(Path(tmp) / "g", header)
            done = 0
            for n in steps:
                add = np.isin(test.labels, enrolled[done:n])
                items = pd.DataFrame(
                    {"label": test.labels[add], "path": [f"img{i}" for i in np.flatnonzero(add)]}
                )
                store.add(test.embeddings[add], items)
                threshold, objects = set_gallery_calibration(store, record)
                assert objects == n, (objects, n)
                fpirs.append(_store_fpir(store, test, non_mated, record, threshold))
                done = n
            store.close()
        out.append(fpirs)
    return out


def _store_fpir(store, test: EvalSet, non_mated: np.ndarray, record, threshold: float) -> float:
    dist, ids = store.search(np.ascontiguousarray(test.embeddings[non_mated]), record.depth)
    labels_by_id = store.labels().to_dict()
    labels = np.array([[labels_by_id.get(str(i)) for i in row] for row in ids], dtype=object)
    dist = np.where(np.equal(labels, None), np.inf, dist)
    searches = Searches(
        labels, dist, test.labels[non_mated], np.zeros(int(non_mated.sum()), bool), len(store), np.nan, np.nan
    )
    return rates_at_threshold([searches], threshold, record.score).fpir


def whole_test_fnir(val: EvalSet, test: EvalSet, *, distance: str, target: float) -> dict[str, float]:
    """FNIR at ``target`` FPIR (DET reading) of each score on a gallery of *every* test class, each
    test image searched against the others, with the val images (classes never enrolled) searched
    as the non-mated ones."""
    both = EvalSet(
        np.concatenate([test.embeddings, val.embeddings]),
        np.concatenate([test.labels, val.labels]),
        np.ones(len(test.labels) + len(val.labels), bool),
        np.ones(len(test.labels) + len(val.labels), bool),
    )
    found = search_enrolled(both, test.classes, None, distance=distance, depth=32, retrieval=False)
    return {row.score: row.fnir for row in fnir_rows([found], [target], SCORES)}


def measure(folder: Path, *, draws: int, seed: int, target: float, console: Console) -> dict:
    t0 = time.perf_counter()
    val, test, distance = load(folder)
    record = calibrate_open_set(val.embeddings, val.labels, target_fpir=target, distance=distance, seed=seed)
    sizes = size_ladder(len(test.classes))
    sweep = functools.partial(  # the calibrated score and threshold, on any set of galleries
        gallery_size_sweep,
        draws=draws,
        seed=seed,
        distance=distance,
        scores=(record.score,),
        targets=(target,),
        threshold=record,
        threshold_score=record.score,
        depth=record.depth,
    )
    points = sweep(test, sizes)
    fpir = [p.at_threshold.fpir for p in points]
    alone = [p.at_threshold.fpir for p in sweep(test, sizes, threshold=record.threshold_for)]
    # the size model on val itself, and the thresholds the test's own non-mated searches would give
    val_sizes = size_ladder(len(val.classes), steps=4)
    on_val = sweep(val, val_sizes, threshold=record.threshold_for)
    thresholds = [(p.at_threshold.threshold, p.fnir_at_fpir[0].threshold) for p in points]
    grown = np.asarray(grown_gallery(test, record, draws=draws, seed=seed, distance=distance))
    det_fnir, per_score = {}, {}
    for score in SCORES:  # each score calibrated on val, read on the test gallery of all but a quarter
        forced = calibrate_open_set(
            val.embeddings, val.labels, target_fpir=target, distance=distance, score=score, seed=seed
        )
        enrolled = open_set_classes(test.classes, 0.25, seed)
        report = open_set_report(
            test,
            distance=distance,
            seed=seed,
            targets=(target,),
            scores=(score,),
            depth=forced.depth,
            threshold=drawn_gallery_threshold(forced, test, enrolled, None, len(enrolled), distance),
            threshold_score=score,
        )
        det_fnir[score] = report.fnir_at_fpir[0].fnir
        per_score[score] = report.at_threshold
    return {
        "whole_test": whole_test_fnir(val, test, distance=distance, target=target),
        "name": folder.name,
        "record": record,
        "sizes": sizes,
        "points": points,
        "fpir": fpir,
        "alone": alone,
        "grown": grown,
        "val_sizes": val_sizes,
        "val_fpir": [p.at_threshold.fpir for p in on_val],
        "thresholds": thresholds,
        "det_fnir": det_fnir,
        "per_score": per_score,
        "seconds": time.perf_counter() - t0,
        "n_val": (len(val.classes), len(val.labels)),
        "n_test": (len(test.classes), len(test.labels)),
    }


def show(results: list[dict], target: float, console: Console) -> bool:
    ok = True
    table = Table(
        title=f"FPIR at the val-calibrated threshold (target {target}) by test gallery size "
        "(enrolled classes)"
    )
    for col in (
        "data set",
        "val / test classes (images)",
        "score",
        "sizes",
        "FPIR by size",
        "max/min",
        "calibration alone",
        "grown 6x by adds: FPIR",
        "max/min",
        "pass",
    ):
        table.add_column(col)
    for r in results:
        fp, grown = np.asarray(r["fpir"]), r["grown"].mean(axis=0)
        spread, gspread = fp.max() / max(fp.min(), 1e-9), grown.max() / max(grown.min(), 1e-9)
        good = bool(
            np.all((fp >= FPIR_BAND[0]) & (fp <= FPIR_BAND[1]))
            and spread <= MAX_SPREAD
            and np.all((grown >= FPIR_BAND[0]) & (grown <= FPIR_BAND[1]))
            and gspread <= MAX_SPREAD
        )
        ok &= good
        table.add_row(
            r["name"],
            f"{r['n_val'][0]} ({r['n_val'][1]}) / {r['n_test'][0]} ({r['n_test'][1]})",
            r["record"].score,
            ",".join(map(str, r["sizes"])),
            " ".join(f"{x:.3f}" for x in fp),
            f"{spread:.2f}",
            " ".join(f"{x:.3f}" for x in r["alone"]),
            " ".join(f"{x:.3f}" for x in grown),
            f"{gspread:.2f}",
            "yes" if good else "NO",
        )
    console.print(table)
    table = Table(
        title=f"FNIR at FPIR {target} on test (DET reading), and at each score's val-calibrated "
        "threshold (test gallery of all but a quarter of the classes)"
    )
    for col in (
        "data set",
        "score",
        "FNIR@FPIR (DET)",
        "vs nearest",
        "every test class enrolled, val searched as non-mated: FNIR@FPIR",
        "vs nearest",
        "FNIR at calibrated",
        "FPIR at calibrated",
        "wrong-match",
    ):
        table.add_column(col)
    for r in results:
        for score in SCORES:
            a = r["per_score"][score]
            table.add_row(
                r["name"],
                score + (" (chosen)" if score == r["record"].score else ""),
                f"{r['det_fnir'][score]:.3f}",
                f"{r['det_fnir'][score] - r['det_fnir']['nearest']:+.3f}",
                f"{r['whole_test'][score]:.3f}",
                f"{r['whole_test'][score] - r['whole_test']['nearest']:+.3f}",
                f"{a.fnir:.3f}",
                f"{a.fpir:.3f}",
                f"{a.wrong_match_rate:.3f}",
            )
    console.print(table)
    for r in results:
        console.print(
            f"{r['name']}: the size model on val galleries of {r['val_sizes']} classes: FPIR "
            + " ".join(f"{x:.3f}" for x in r["val_fpir"])
            + "; test thresholds by size, calibrated / the test's own for FPIR "
            + f"{target}: "
            + " ".join(f"{a:.3f}/{b:.3f}" for a, b in r["thresholds"])
        )
        console.print(f"{r['name']}: {r['seconds']:.0f} s; calibration figures {dict(r['record'].figures)}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target-fpir", type=float, default=0.05)
    args = parser.parse_args(argv)
    console = Console(width=200)
    results = [
        measure(f, draws=args.draws, seed=args.seed, target=args.target_fpir, console=console)
        for f in args.folders
    ]
    ok = show(results, args.target_fpir, console)
    console.print("targets met" if ok else "targets NOT met on every data set")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
