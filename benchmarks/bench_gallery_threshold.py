"""What it costs a gallery to set its threshold after a write: the calibration's size table alone
(count the objects, look the size up), against the threshold pooled with the gallery's own images
(:mod:`lookalike.calibration.adaptive`): a refit (its probes searched in the store) and a reuse of
the stored probe scores (a write that moved the gallery by less than 10 %).

A FAISS flat folder store of clustered random unit vectors (``--per-object`` images per object), the
calibration made on a separate set of the same kind. Wall time per call, median of ``--repeats``.

    PYTHONPATH=src python benchmarks/bench_gallery_threshold.py --sizes 20000,200000 --dim 256
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from lookalike.calibration import calibrate_open_set, read_calibration
from lookalike.calibration.adaptive import GalleryFit
from lookalike.gallery import GalleryHeader, create_gallery
from lookalike.gallery.calibration import gallery_objects, set_gallery_calibration


def clustered(n: int, dim: int, per_object: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    objects = max(2, n // per_object)
    centres = rng.normal(size=(objects, dim)).astype(np.float32)
    labels = rng.integers(0, objects, size=n)
    x = centres[labels] + 0.9 * rng.normal(size=(n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, np.array([f"o{i}" for i in labels])


def timed(fn, repeats: int) -> float:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def measure(n: int, dim: int, per_object: int, repeats: int, record) -> dict[str, float]:
    emb, labels = clustered(n, dim, per_object, seed=n)
    with tempfile.TemporaryDirectory() as tmp:
        store = create_gallery(Path(tmp) / "g", GalleryHeader(embed_dim=dim))
        for lo in range(0, n, 50_000):
            store.add(emb[lo : lo + 50_000], pd.DataFrame({"label": labels[lo : lo + 50_000]}))
        table = timed(lambda: record.threshold_for(gallery_objects(store)), repeats)
        refit = timed(lambda: set_gallery_calibration(store, record), repeats)
        previous = GalleryFit.stored(read_calibration(store.header.calibration).figures)
        reuse = timed(lambda: set_gallery_calibration(store, record, previous=previous), repeats)
        store.close()
    return {"size table": table, "refit (probes searched)": refit, "reuse (stored scores)": reuse}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="20000,200000")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--per-object", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    cal_emb, cal_labels = clustered(2000, args.dim, args.per_object, seed=1)
    record = calibrate_open_set(cal_emb, cal_labels, target_fpir=0.05, score="nearest")
    table = Table(title=f"setting a gallery's threshold after a write (flat folder store, {args.dim}-d)")
    for col in ("items", "objects", "size table", "refit (probes searched)", "reuse (stored scores)"):
        table.add_column(col, justify="right")
    for n in (int(x) for x in args.sizes.split(",")):
        times = measure(n, args.dim, args.per_object, args.repeats, record)
        table.add_row(f"{n:,}", f"{n // args.per_object:,}", *(f"{t * 1000:.0f} ms" for t in times.values()))
    Console(width=140).print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
