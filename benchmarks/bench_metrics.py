"""Retrieval metrics and exact top-k: lookalike against PML, OML and FAISS on the same data.

Every engine runs in its own subprocess, so its peak memory (``ru_maxrss``) is its own. Each child
builds the same data from the seed (queries and gallery drawn around 1,000 class centres, then
L2-normalised, so that every engine's plain L2 ranking is lookalike's default distance), records
its RSS after imports and data, runs the evaluation once and reports time and peak RSS.

Engines:
  lookalike       ``lookalike.metrics.retrieval_metrics`` (hit_rate, recall, precision, map @ ks;
                  map@r, r_precision)
  lookalike-topk  ``lookalike.knn.topk`` alone, k = the largest k
  faiss           ``faiss.IndexFlatL2`` add + search, k = the largest k
  pml             ``AccuracyCalculator(include=(precision_at_1, r_precision, mean_average_precision_at_r))``,
                  default settings otherwise (k=None: it ranks the whole gallery)
  oml             ``batched_knn_qg`` + ``calc_retrieval_metrics`` (cmc, precision, map @ ks)

Usage:
  python benchmarks/bench_metrics.py                       # 5000x50000 and 10000x100000, then 10000x1000000
  python benchmarks/bench_metrics.py --sizes 5000x50000 --engines lookalike,faiss --large none
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

ENGINES = ("lookalike", "lookalike-topk", "faiss", "pml", "oml")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_data(n_q: int, n_g: int, dim: int, n_classes: int, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, dim), dtype=np.float32)
    out = []
    for n in (n_q, n_g):
        labels = rng.integers(0, n_classes, size=n)
        x = rng.standard_normal((n, dim), dtype=np.float32)
        for s in range(0, n, 65536):  # in place, chunk by chunk: no big temporaries
            x[s : s + 65536] *= 2.0
            x[s : s + 65536] += centres[labels[s : s + 65536]]
            x[s : s + 65536] /= np.linalg.norm(x[s : s + 65536], axis=1, keepdims=True)
        out += [x, labels]
    return out


def child(engine: str, n_q: int, n_g: int, args: argparse.Namespace) -> dict:
    ks = tuple(int(k) for k in args.ks.split(","))
    k_max = max(ks)
    if engine in ("lookalike", "lookalike-topk"):
        from lookalike.knn import topk
        from lookalike.metrics import retrieval_metrics
    elif engine == "faiss":
        import faiss
    elif engine == "pml":
        from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    elif engine == "oml":
        import torch
        from oml.functional.knn import batched_knn_qg
        from oml.functional.metrics import calc_retrieval_metrics
    import numpy  # noqa: F401
    import torch  # every engine imports torch: count it in the baseline

    base = rss_mb()
    q, ql, g, gl = make_data(n_q, n_g, args.dim, args.classes, args.seed)
    loaded = rss_mb()
    result: dict = {}
    t0 = time.perf_counter()
    if engine == "lookalike":
        report = retrieval_metrics(q, ql, g, gl, ks=ks)
        m = report.metrics
        result = {"hit_rate@1": m["hit_rate@1"], "r_precision": m["r_precision"], "map@r": m["map@r"]}
    elif engine == "lookalike-topk":
        topk(q, g, k_max)
    elif engine == "faiss":
        index = faiss.IndexFlatL2(q.shape[1])
        index.add(g)
        index.search(q, min(k_max, n_g))
    elif engine == "pml":
        calc = AccuracyCalculator(include=("precision_at_1", "r_precision", "mean_average_precision_at_r"))
        m = calc.get_accuracy(q, ql, g, gl, ref_includes_query=False)
        result = {
            "hit_rate@1": m["precision_at_1"],
            "r_precision": m["r_precision"],
            "map@r": m["mean_average_precision_at_r"],
        }
    elif engine == "oml":
        tq, tg = torch.from_numpy(q), torch.from_numpy(g)
        _, retrieved, gt = batched_knn_qg(
            tq, tg, top_n=k_max, labels_query=torch.from_numpy(ql), labels_gallery=torch.from_numpy(gl)
        )
        m = calc_retrieval_metrics(
            retrieved, gt, cmc_top_k=ks, precision_top_k=ks, map_top_k=ks, verbose=False
        )
        result = {"hit_rate@1": float(m["cmc"][1])} if 1 in ks else {}
    elapsed = time.perf_counter() - t0
    return {
        "engine": engine,
        "time_s": elapsed,
        "base_mb": base,
        "loaded_mb": loaded,
        "peak_mb": peak_mb(),
        "growth_mb": peak_mb() - loaded,
        "metrics": result,
    }


def run_child(engine: str, n_q: int, n_g: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", engine, "--sizes", f"{n_q}x{n_g}"]
    cmd += ["--dim", str(args.dim), "--classes", str(args.classes), "--seed", str(args.seed), "--ks", args.ks]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or "").strip().splitlines()[-1:] or [""]
        if proc.returncode in (-9, 137):
            why = "killed (out of memory?)"
        elif "ModuleNotFoundError" in tail[0] or "ImportError" in tail[0]:
            why = f"not installed: {tail[0]}"
        else:
            why = f"failed (exit {proc.returncode}): {tail[0]}"
        return {"engine": engine, "error": why}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def print_table(size: str, rows: list[dict]) -> None:
    ref = next((r for r in rows if r["engine"] == "lookalike" and "error" not in r), None)
    ref_topk = next((r for r in rows if r["engine"] == "lookalike-topk" and "error" not in r), None)
    print(f"\n## {size}")
    print(
        f"{'engine':16} {'time s':>8} {'peak RSS MB':>12} {'after data MB':>14} {'growth MB':>10} "
        f"{'time ratio':>12}  metrics"
    )
    for r in rows:
        if "error" in r:
            print(f"{r['engine']:16} {r['error']}")
            continue
        base = ref_topk if r["engine"] in ("faiss", "lookalike-topk") else ref
        ratio = f"{r['time_s'] / base['time_s']:.2f}x" if base else "-"
        metrics = " ".join(f"{k}={v:.4f}" for k, v in r["metrics"].items())
        print(
            f"{r['engine']:16} {r['time_s']:8.2f} {r['peak_mb']:12.0f} {r['loaded_mb']:14.0f} "
            f"{r['growth_mb']:10.0f} {ratio:>12}  {metrics}"
        )
    print("(time ratio: vs lookalike for the metric engines, vs lookalike-topk for the top-k engines)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", default=["5000x50000", "10000x100000"], help="QUERIESxGALLERY")
    p.add_argument("--large", default="10000x1000000", help="size for lookalike alone ('none' to skip)")
    p.add_argument("--engines", default=",".join(ENGINES), help=f"comma-separated, from {', '.join(ENGINES)}")
    p.add_argument("--pml-max-gallery", type=int, default=50000, help="skip PML above this gallery size")
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ks", default="1,10,50,1000")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.child:
        n_q, n_g = (int(x) for x in args.sizes[0].split("x"))
        print(json.dumps(child(args.child, n_q, n_g, args)))
        return
    engines = [e for e in args.engines.split(",") if e]
    unknown = sorted(set(engines) - set(ENGINES))
    if unknown:
        p.error(f"unknown engines {unknown}; valid: {', '.join(ENGINES)}")
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; "
        f"D={args.dim}, {args.classes} classes, ks={args.ks}"
    )
    for size in args.sizes:
        n_q, n_g = (int(x) for x in size.split("x"))
        rows = []
        for engine in engines:
            if engine == "pml" and n_g > args.pml_max_gallery:
                rows.append(
                    {
                        "engine": "pml",
                        "error": f"skipped (gallery > --pml-max-gallery={args.pml_max_gallery}; "
                        "it needs more memory than this machine has)",
                    }
                )
                continue
            rows.append(run_child(engine, n_q, n_g, args))
            print(f"  {size} {engine}: done", file=sys.stderr, flush=True)
        print_table(size, rows)
    if args.large.lower() != "none":
        n_q, n_g = (int(x) for x in args.large.split("x"))
        print_table(args.large, [run_child("lookalike", n_q, n_g, args)])


if __name__ == "__main__":
    main()
