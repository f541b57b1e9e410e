"""Time miner + loss + backward per step, lookalike against pytorch-metric-learning (PML).

Both sides get the same random embeddings (B, D) with P x K labels (K = 4) and the same
number of threads; each combination is warmed up, then timed ``--repeats`` times, lookalike and
PML steps alternating so that both see the same load; ``--stat`` picks the median (default) or,
on a machine shared with other jobs, the minimum (the least disturbed step).

    .venv/bin/python benchmarks/bench_losses.py --sizes 128 512 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from lookalike import losses as ll
from lookalike import miners as lm


def pml_combos(dim: int) -> dict[str, tuple[Callable | None, Callable]]:
    from pytorch_metric_learning import losses as pl
    from pytorch_metric_learning import miners as pm

    return {
        "batch-all + triplet": (None, pl.TripletMarginLoss(margin=0.2)),
        "semi-hard + triplet": (
            pm.TripletMarginMiner(margin=0.2, type_of_triplets="semihard"),
            pl.TripletMarginLoss(margin=0.2),
        ),
        "distance-weighted + triplet": (pm.DistanceWeightedMiner(), pl.TripletMarginLoss(margin=0.2)),
        "distance-weighted + margin": (
            pm.DistanceWeightedMiner(),
            pl.MarginLoss(margin=0.2, learn_beta=True),
        ),
        "batch-hard + triplet": (pm.BatchHardMiner(), pl.TripletMarginLoss(margin=0.2)),
        "contrastive (all pairs)": (None, pl.ContrastiveLoss()),
        "multi-similarity (all pairs)": (None, pl.MultiSimilarityLoss()),
        "margin (all triplets)": (None, pl.MarginLoss(margin=0.2, learn_beta=True)),
        "cross-batch memory 1024, contrastive": (
            None,
            pl.CrossBatchMemory(pl.ContrastiveLoss(), embedding_size=dim, memory_size=1024),
        ),
        "cross-batch memory 1024, batch-hard + triplet": (
            None,
            pl.CrossBatchMemory(
                pl.TripletMarginLoss(margin=0.2),
                embedding_size=dim,
                memory_size=1024,
                miner=pm.BatchHardMiner(),
            ),
        ),
    }


def our_combos(dim: int) -> dict[str, tuple[Callable | None, Callable]]:
    return {
        "batch-all + triplet": (lm.BatchAllMiner(), ll.TripletLoss(margin=0.2)),
        "semi-hard + triplet": (lm.SemiHardMiner(margin=0.2), ll.TripletLoss(margin=0.2)),
        "distance-weighted + triplet": (lm.DistanceWeightedMiner(seed=0), ll.TripletLoss(margin=0.2)),
        "distance-weighted + margin": (lm.DistanceWeightedMiner(seed=0), ll.MarginLoss(margin=0.2)),
        "batch-hard + triplet": (lm.BatchHardMiner(), ll.TripletLoss(margin=0.2)),
        "contrastive (all pairs)": (None, ll.ContrastiveLoss()),
        "multi-similarity (all pairs)": (None, ll.MultiSimilarityLoss()),
        "margin (all triplets)": (None, ll.MarginLoss(margin=0.2)),
        "cross-batch memory 1024, contrastive": (
            None,
            lm.CrossBatchMemory(ll.ContrastiveLoss(), embedding_size=dim, memory_size=1024),
        ),
        "cross-batch memory 1024, batch-hard + triplet": (
            None,
            lm.CrossBatchMemory(
                ll.TripletLoss(margin=0.2), embedding_size=dim, memory_size=1024, miner=lm.BatchHardMiner()
            ),
        ),
    }


def one_step(miner, loss, emb: torch.Tensor, labels: torch.Tensor) -> float:
    """Seconds of one miner + loss + backward step."""
    x = emb.detach().clone().requires_grad_(True)
    t0 = time.perf_counter()
    idx = miner(x, labels) if miner is not None else None
    loss(x, labels, idx).backward()
    return time.perf_counter() - t0


def paired_times(ours, theirs, emb, labels, warmup: int, repeats: int) -> tuple[list[float], list[float]]:
    """Step times of both sides, alternating lookalike and PML steps after ``warmup`` of each."""
    for _ in range(warmup):
        one_step(*ours, emb, labels)
        one_step(*theirs, emb, labels)
    t_ours, t_pml = [], []
    for _ in range(repeats):
        t_ours.append(one_step(*ours, emb, labels))
        t_pml.append(one_step(*theirs, emb, labels))
    return t_ours, t_pml


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 512], help="batch sizes B")
    parser.add_argument("--dim", type=int, default=128, help="embedding size D")
    parser.add_argument("--k", type=int, default=4, help="images per class K (P = B / K)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads for both sides")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--stat", choices=["median", "min"], default="median", help="per-step statistic")
    parser.add_argument("--only", nargs="*", default=None, help="substrings of combination names to run")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    ours, theirs = our_combos(args.dim), pml_combos(args.dim)
    names = [n for n in ours if not args.only or any(s in n for s in args.only)]
    print(
        f"torch {torch.__version__}, threads={args.threads}, D={args.dim}, K={args.k}, "
        f"{args.stat} of {args.repeats} alternating steps after {args.warmup} warm-up steps"
    )
    header = f"{'combination':46s} {'B':>5s} {'lookalike ms':>13s} {'PML ms':>9s} {'PML/lookalike':>14s}"
    print(header)
    print("-" * len(header))
    for b in args.sizes:
        g = torch.Generator().manual_seed(0)
        emb = torch.randn(b, args.dim, generator=g)
        labels = torch.arange(b // args.k).repeat_interleave(args.k)
        labels = labels[torch.randperm(len(labels), generator=g)]
        emb = emb[: len(labels)]
        for name in names:
            times = paired_times(ours[name], theirs[name], emb, labels, args.warmup, args.repeats)
            stat = statistics.median if args.stat == "median" else min
            t_ours, t_pml = stat(times[0]), stat(times[1])
            ms_ours, ms_pml, ratio = 1e3 * t_ours, 1e3 * t_pml, t_pml / t_ours
            print(f"{name:46s} {len(labels):5d} {ms_ours:13.2f} {ms_pml:9.2f} {ratio:13.2f}x", flush=True)


if __name__ == "__main__":
    main()
