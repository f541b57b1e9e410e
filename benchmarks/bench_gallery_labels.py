"""What a gallery write and a batched search spend outside the index: reading labels and deciding.

Each gallery (the FAISS folder store; Milvus Lite up to --milvus-max items) holds items with a path and
--meta metadata columns (strings and numbers). Median of --repeats runs, the two ways taken in turn.

1. Labels: the gallery's object count (distinct labels), which a gallery with a per-size calibration
   computes after every add and remove:

     items()    ``store.items()["label"].nunique()``: the whole item table (id, label, path, metadata)
     labels()   ``store.labels().nunique()``: ids and labels only

2. Decision: --queries searches (one store search, not timed) turned into results with k = 5
   neighbours listed, for each decision score, as deep as the matcher searches for it (5 for the
   nearest distance, --depth for the ratio and the z-norm):

     per query  what the matcher did before: the item rows of every neighbour found (``items``), then
                ``decide`` query by query (one decision_scores call each)
     batch      what it does now: the item rows of the listed neighbours, the other neighbours' labels
                (``labels(ids)``), then ``decide_all`` (one decision_scores call for the batch)

   The two answers are compared (they must be equal) before anything is timed.

Usage:
  python benchmarks/bench_gallery_labels.py                       # 100k and 1M folder, Milvus Lite at 20k
  python benchmarks/bench_gallery_labels.py --sizes 20000 --milvus-max 20000 --queries 256
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def timed(functions: dict[str, object], repeats: int) -> dict[str, float]:
    """Median seconds per call, the functions called in turn each repeat (after one warm-up each)."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    for f in functions.values():
        f()
    for _ in range(repeats):
        for name, f in functions.items():
            t = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(v) for name, v in times.items()}


def gallery_items(n: int, meta: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = [f"item{i:07d}" for i in range(n)]
    frame = pd.DataFrame(
        {
            "id": ids,
            "label": [f"object{i % max(n // 5, 1)}" for i in range(n)],
            "path": [f"/images/{i}.jpg" for i in ids],
        }
    )
    for c in range(meta):
        if c % 2:
            frame[f"m{c}"] = rng.normal(size=n)
        else:
            frame[f"m{c}"] = [f"text {c} {i} " * 3 for i in range(n)]
    return frame


def per_query(store, names, distances, ids, score: str, k: int) -> list:
    """The matcher's way before: every neighbour's item row, then one decision per query."""
    from lookalike.gallery.decision import decide, neighbour

    unique = list(dict.fromkeys(str(i) for i in ids.reshape(-1)))
    rows = {str(r["id"]): r for r in store.items(unique).to_dict(orient="records")}
    out = []
    for q, name in enumerate(names):
        found = [
            neighbour(rank + 1, str(i), float(distances[q, rank]), rows[str(i)])
            for rank, i in enumerate(ids[q])
        ]
        out.append(decide(name, found, 0.5, score=score, k=k))
    return out


def batched(store, names, distances, ids, score: str, k: int) -> list:
    """The matcher's way now (``Matcher.search_embeddings`` after its search)."""
    from lookalike.gallery.decision import decide_all, kept_ids
    from lookalike.gallery.matcher import _item_rows, _labels

    rows = _item_rows(store, kept_ids(ids, k))
    return decide_all(names, distances, ids, _labels(store, ids, rows), rows, 0.5, score=score, k=k)


def measure(n: int, engine: str, location: str, args: argparse.Namespace) -> dict:
    from lookalike.gallery import GalleryHeader, create_gallery
    from lookalike.metrics.identification import SCORES

    items = gallery_items(n, args.meta)
    x = np.random.default_rng(1).standard_normal((n, args.dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    out: dict = {"n": n, "engine": engine}
    with create_gallery(location, GalleryHeader(embed_dim=args.dim)) as store:
        for start in range(0, n, 100_000):
            store.add(x[start : start + 100_000], items.iloc[start : start + 100_000])
        assert store.items()["label"].nunique() == store.labels().nunique() == items["label"].nunique()
        out["labels"] = timed(
            {"items": lambda: store.items()["label"].nunique(), "labels": lambda: store.labels().nunique()},
            args.repeats,
        )
        queries = x[: args.queries] + 0.05 * np.random.default_rng(2).standard_normal(
            (args.queries, args.dim)
        )
        distances, ids = store.search(queries.astype(np.float32), args.depth)
        names = [f"query {i}" for i in range(args.queries)]
        for score in SCORES:
            depth = 5 if score == "nearest" else args.depth  # the matcher asks for max(k, depth)
            d, i = distances[:, :depth], ids[:, :depth]
            call = {
                "per query": lambda s=score, d=d, i=i: per_query(store, names, d, i, s, 5),
                "batch": lambda s=score, d=d, i=i: batched(store, names, d, i, s, 5),
            }
            assert call["per query"]() == call["batch"]()
            out[score] = timed(call, args.repeats)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100000,1000000", help="gallery sizes, comma separated")
    parser.add_argument(
        "--milvus-max", type=int, default=20000, help="largest gallery also built in Milvus Lite"
    )
    parser.add_argument(
        "--dim", type=int, default=32, help="embedding size (the labels read does not read vectors)"
    )
    parser.add_argument("--meta", type=int, default=4, help="metadata columns per item")
    parser.add_argument("--queries", type=int, default=256, help="searches per decided batch")
    parser.add_argument("--depth", type=int, default=32, help="neighbours per search")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.milvus_max and args.milvus_max not in sizes and args.milvus_max <= max(sizes):
        sizes = sorted({*sizes, args.milvus_max})
    engines = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            engines.append((n, "folder store", str(Path(tmp) / f"folder-{n}")))
            if n <= args.milvus_max:
                engines.append((n, "Milvus Lite", f"milvus-lite:{Path(tmp) / f'milvus-{n}.db'}#g"))
        results = []
        for n, engine, location in engines:
            results.append(measure(n, engine, location, args))
            print(f"measured {engine} at {n:,} items", flush=True)
    print(f"\n## the object count after a write: {args.meta} metadata columns, median of {args.repeats}")
    print("| gallery | engine | items()[label].nunique() | labels().nunique() | speed-up |")
    print("|---:|---|---:|---:|---:|")
    for r in results:
        t = r["labels"]
        print(
            f"| {r['n']:,} | {r['engine']} | {t['items'] * 1e3:.1f} ms | {t['labels'] * 1e3:.1f} ms "
            f"| {t['items'] / t['labels']:.1f}x |"
        )
    print(
        f"\n## results of {args.queries} searches (k = 5 listed; ratio, znorm: {args.depth} deep), "
        f"median of {args.repeats}"
    )
    print(
        "| gallery | engine | score | per query (all rows read) | batch (listed rows + labels) | speed-up |"
    )
    print("|---:|---|---|---:|---:|---:|")
    for r in results:
        for score in ("nearest", "ratio", "znorm"):
            t = r[score]
            print(
                f"| {r['n']:,} | {r['engine']} | {score} | {t['per query'] * 1e3:.1f} ms "
                f"| {t['batch'] * 1e3:.1f} ms | {t['per query'] / t['batch']:.1f}x |"
            )


if __name__ == "__main__":
    main()
