"""Gallery stores: the FAISS folder store and Milvus Lite against raw FAISS on the same vectors.

Seeded random vectors (D = 384 by default, standard normal, L2-normalised) are the gallery; queries
are drawn the same way from another seed. For each gallery size:

  faiss           raw ``faiss.IndexFlatL2``: add, search (in memory, nothing persisted)
  folder store    ``create_gallery(FOLDER, GalleryHeader(embed_dim=D))`` (exact ``Flat``): add = validate,
                  index, write the generation's files (fsync) and switch the pointer; search returns true
                  Euclidean distances and string ids
  milvus-lite     ``create_gallery("milvus-lite:PATH.db#g", ...)`` (FLAT): only up to --milvus-max vectors
                  (Milvus Lite inserts through gRPC row by row; 1M takes too long for this machine)

Measured: add throughput (vectors/s, one add of the whole gallery), batch search throughput
(queries/s, --batch queries at once, k = 10, median of --repeats, the raw FAISS and the store runs
interleaved so that a busy machine slows both alike), single-query latency p50 / p99 over --single
queries one at a time, and for the stores the time to add 1,000 more vectors to the full gallery and to
open it. "overhead" = store batch-search time / raw FAISS batch-search time - 1.

Usage:
  python benchmarks/bench_gallery.py                                  # 100k and 1M, Milvus Lite at 100k
  python benchmarks/bench_gallery.py --sizes 20000 --milvus-max 20000 --single 100
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

K = 10


def make_vectors(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, 65536):
        block = rng.standard_normal((min(65536, n - s), d), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        x[s : s + block.shape[0]] = block
    return x


def latencies(searches: dict[str, object], queries: np.ndarray) -> dict[str, tuple[float, float]]:
    """p50 and p99 (ms) of single-query searches, the engines taking turns query by query."""
    times: dict[str, list[float]] = {name: [] for name in searches}
    for i in range(queries.shape[0]):
        for name, search in searches.items():
            t = time.perf_counter()
            search(queries[i : i + 1])
            times[name].append(time.perf_counter() - t)
    return {
        name: tuple(float(v) for v in np.percentile(np.array(t) * 1e3, [50, 99])) for name, t in times.items()
    }


def interleaved(searches: dict[str, object], queries: np.ndarray, repeats: int) -> dict[str, float]:
    """Median seconds of one batch search per engine, the engines run in turn each repeat."""
    times: dict[str, list[float]] = {name: [] for name in searches}
    for search in searches.values():  # warm-up: first touches of the index memory
        search(queries[:8])
    for _ in range(repeats):
        for name, search in searches.items():
            t = time.perf_counter()
            search(queries)
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(v) for name, v in times.items()}


def run_size(n: int, args: argparse.Namespace, workdir: Path) -> list[dict]:
    import faiss

    from lookalike.gallery import GalleryHeader, create_gallery, open_gallery

    d = args.dim
    x = make_vectors(n, d, seed=0)
    queries = make_vectors(max(args.batch, args.single), d, seed=1)
    batch, single = queries[: args.batch], queries[: args.single]
    items = pd.DataFrame({"id": [f"item{i}" for i in range(n)], "label": [f"c{i % 1000}" for i in range(n)]})
    extra = make_vectors(1000, d, seed=2)
    extra_items = pd.DataFrame({"id": [f"extra{i}" for i in range(1000)], "label": "x"})
    rows: list[dict] = []
    milvus_rows: list[dict] = []
    mi = None

    if n <= args.milvus_max:
        loc = f"milvus-lite:{workdir / f'milvus-{n}.db'}#g"
        mstore = create_gallery(loc, GalleryHeader(embed_dim=d))
        t = time.perf_counter()
        mstore.add(x, items)
        m_add = time.perf_counter() - t
        _, mi = mstore.search(batch[:50], K)
        m_batch = interleaved({"milvus": lambda q: mstore.search(q, K)}, batch, args.repeats)["milvus"]
        m_lat = latencies({"milvus": lambda q: mstore.search(q, K)}, single)["milvus"]
        t = time.perf_counter()
        mstore.add(extra, extra_items)
        m_more = time.perf_counter() - t
        mstore.close()
        t = time.perf_counter()
        open_gallery(loc).close()
        m_open = time.perf_counter() - t
        milvus_rows.append(
            dict(
                n=n,
                engine="Milvus Lite (FLAT)",
                add=n / m_add,
                qps=len(batch) / m_batch,
                p50=m_lat[0],
                p99=m_lat[1],
                overhead=m_batch,  # seconds; relative to raw FAISS once that is measured
                more=m_more,
                open=m_open,
                disk=None,
            )
        )
    else:
        milvus_rows.append(
            dict(
                n=n,
                engine=f"Milvus Lite: not run above --milvus-max {args.milvus_max:,}",
                add=None,
                qps=None,
                p50=None,
                p99=None,
                overhead=None,
                more=None,
                open=None,
                disk=None,
            )
        )
    raw = faiss.IndexFlatL2(d)
    t = time.perf_counter()
    raw.add(x)
    raw_add = time.perf_counter() - t

    folder = workdir / f"folder-{n}"
    store = create_gallery(folder, GalleryHeader(embed_dim=d))
    t = time.perf_counter()
    store.add(x, items)
    store_add = time.perf_counter() - t
    del x, items  # 1.5 GB at 1M: not needed any more

    # the answers agree before anything is timed: same neighbours, distances = sqrt(raw FAISS's)
    rd, ri = raw.search(batch[:50], K)
    sd, si = store.search(batch[:50], K)
    assert (si == np.asarray([f"item{i}" for i in ri.ravel()], dtype=object).reshape(ri.shape)).all()
    assert np.allclose(sd, np.sqrt(np.maximum(rd, 0)), atol=1e-5)

    batch_s = interleaved(
        {"faiss": lambda q: raw.search(q, K), "store": lambda q: store.search(q, K)}, batch, args.repeats
    )
    lat = latencies({"faiss": lambda q: raw.search(q, K), "store": lambda q: store.search(q, K)}, single)
    raw_lat, store_lat = lat["faiss"], lat["store"]
    raw.reset()  # frees its memory before the next engine
    t = time.perf_counter()
    store.add(extra, extra_items)
    store_more = time.perf_counter() - t
    store.close()
    t = time.perf_counter()
    open_gallery(folder).close()
    store_open = time.perf_counter() - t
    size_gb = sum(p.stat().st_size for p in folder.iterdir()) / 1e9
    shutil.rmtree(folder)

    rows.append(
        dict(
            n=n,
            engine="raw FAISS IndexFlatL2",
            add=n / raw_add,
            qps=len(batch) / batch_s["faiss"],
            p50=raw_lat[0],
            p99=raw_lat[1],
            overhead=None,
            more=None,
            open=None,
            disk=None,
        )
    )
    rows.append(
        dict(
            n=n,
            engine="folder store (Flat)",
            add=n / store_add,
            qps=len(batch) / batch_s["store"],
            p50=store_lat[0],
            p99=store_lat[1],
            overhead=batch_s["store"] / batch_s["faiss"] - 1,
            more=store_more,
            open=store_open,
            disk=size_gb,
        )
    )

    if mi is not None:  # Milvus Lite's top-10 against the folder store's (exact) on the same 50 queries
        agree = float(np.mean([len(set(mi[r]) & set(si[r])) / K for r in range(50)]))
        milvus_rows[0]["engine"] += f" (top-10 agreement with exact {agree:.3f})"
        milvus_rows[0]["overhead"] = milvus_rows[0]["overhead"] / batch_s["faiss"] - 1
    return rows + milvus_rows


def fmt(value: float | None, spec: str, unit: str = "") -> str:
    return "" if value is None else f"{value:{spec}}{unit}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=lambda s: [int(v) for v in s.split(",")], default=[100_000, 1_000_000])
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--batch", type=int, default=256, help="queries per batch search")
    p.add_argument("--repeats", type=int, default=3, help="batch searches per engine (median)")
    p.add_argument("--single", type=int, default=200, help="single queries for p50/p99")
    p.add_argument("--milvus-max", type=int, default=100_000, help="largest gallery tried on Milvus Lite")
    p.add_argument(
        "--workdir", type=Path, default=None, help="where the galleries are written (default: a temp dir)"
    )
    args = p.parse_args()

    import faiss

    print(
        f"D = {args.dim}, k = {K}, batch = {args.batch} queries (median of {args.repeats}), "
        f"latency over {args.single} single queries; FAISS {faiss.__version__}, "
        f"{faiss.omp_get_max_threads()} OpenMP threads",
        flush=True,
    )
    workdir = Path(tempfile.mkdtemp(prefix="bench_gallery_", dir=args.workdir))
    print()
    print(
        "| gallery | engine | add (vectors/s) | batch search (queries/s) | overhead vs FAISS | p50 | p99 "
        "| +1,000 to full gallery | open | on disk |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|", flush=True)
    try:
        for n in args.sizes:
            t = time.perf_counter()
            rows = run_size(n, args, workdir)
            for r in rows:  # printed as each size is done
                print(
                    f"| {r['n']:,} | {r['engine']} | {fmt(r['add'], ',.0f')} | {fmt(r['qps'], ',.0f')} "
                    f"| {fmt(None if r['overhead'] is None else 100 * r['overhead'], '+.1f', '%')} "
                    f"| {fmt(r['p50'], '.2f', ' ms')} | {fmt(r['p99'], '.2f', ' ms')} "
                    f"| {fmt(r['more'], '.2f', ' s')} | {fmt(r['open'], '.2f', ' s')} "
                    f"| {fmt(r['disk'], '.2f', ' GB')} |",
                    flush=True,
                )
            print(f"<!-- {n:,} vectors measured in {time.perf_counter() - t:.0f} s -->", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
