"""Training throughput of the full lookalike pipeline against a bare loop of the same backbone.

The pipeline is `lookalike.training.fit`: images decoded and augmented by the DataLoader, PK
batches, the embedder, a miner, a loss, AdamW, clipping, progress bars. The bare loop is the same
embedder's forward + the same miner and loss + backward + AdamW step on one real PK batch of the
same size, decoded and augmented once and held in memory: what the network and the optimisation
cost with no data pipeline and no framework around them.

Both are measured in steady state: the bare loop after 3 warm-up steps, the pipeline over its
epochs after the first (the first epoch pays one-off allocations and worker start-up; its figure
is printed too). The pipeline overhead is 1 - pipeline images/s / bare images/s (target: < 10%).
The same ratio is also printed in CPU time of this process (images per CPU second, from the end of
the first step to the end of the last step of every epoch after the first; loader workers' CPU is
not counted, so use it with ``--workers 0``): on a machine shared with other jobs the wall-clock
figures swing with the load, CPU time much less, most of all with ``--threads 1``.

    .venv/bin/python benchmarks/bench_train.py                    # CUB subset, MobileNetV2 @ 224
    .venv/bin/python benchmarks/bench_train.py --preset omniglot  # Conv-4 @ 32
    .venv/bin/python benchmarks/bench_train.py --preset demo --steps 20 --repeats 5  # the demo network
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from lookalike.config import validate_config
from lookalike.data import ManifestDataset, PKSampler, manifest_from_folder, train_transform
from lookalike.demo import DEMO_CONFIG
from lookalike.losses import create_loss
from lookalike.miners import create_miner
from lookalike.models import create_embedder
from lookalike.training import fit

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
WEIGHTS = REPO.parent / "shared" / "weights" / "mobilenetv2_100.imagenet.safetensors"

PRESETS = {
    "cub": {
        "data": {"root": str(DATA / "cub100" / "images"), "val": 0.05, "test": 0.05, "num_workers": 2},
        "model": {
            "backbone": "mobilenetv2_100",
            "weights": str(WEIGHTS),
            "embed_dim": 128,
            "image_size": 224,
        },
        "sampler": {"p": 8, "k": 4},
    },
    "demo": {  # the demo's network and augmentation (DEMO_CONFIG: grayscale Conv-4 @ 32 px, no flips,
        # crops of 60-100%) on the built-in glyphs (made on first use under runs/, no download)
        "data": {"root": str(REPO / "runs" / "bench-glyphs"), "val": 0.05, "test": 0.05, "num_workers": 0},
        "model": DEMO_CONFIG["model"],
        "augment": DEMO_CONFIG["augment"],
        "sampler": DEMO_CONFIG["sampler"],
    },
    "omniglot": {
        "data": {"root": str(DATA / "omniglot-small"), "val": 0.05, "test": 0.05, "num_workers": 2},
        "model": {"backbone": "convnet4", "embed_dim": 64, "image_size": 32},
        "sampler": {"p": 32, "k": 4},
    },
}


def bare_loop(cfg, steps: int) -> tuple[float, float]:
    """(images/s, images per CPU second) of forward + backward + step of the same embedder on one
    real PK batch held in memory (decoded and augmented once), with the same miner and loss as the
    pipeline."""
    torch.manual_seed(0)
    model = create_embedder(cfg.model)
    model.train()
    prep = model.preprocessing
    frame = manifest_from_folder(cfg.data.root)
    dataset = ManifestDataset(frame, transform=train_transform(prep, **cfg.augment.model_dump()))
    batch_ids = next(iter(PKSampler(dataset.labels, p=cfg.sampler.p, k=cfg.sampler.k, seed=0)))
    images = torch.stack([dataset[i][0] for i in batch_ids])
    labels = dataset.labels[batch_ids]
    miner = create_miner(cfg.miner.name, **cfg.miner.kwargs())
    loss_fn = create_loss(cfg.loss.name, **cfg.loss.kwargs())
    opt = torch.optim.AdamW(model.param_groups(lr=1e-4, backbone_lr=None, weight_decay=1e-4))
    for step in range(steps + 3):
        if step == 3:
            start, cpu = time.perf_counter(), time.process_time()
        emb = model(images)
        loss_fn(emb, labels, miner(emb, labels)).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    images = steps * len(batch_ids)
    return images / (time.perf_counter() - start), images / (time.process_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cub")
    parser.add_argument(
        "--steps",
        type=int,
        default=12,
        help="steps per epoch of the pipeline (3 epochs, the last 2 timed); the bare loop times 2x as many",
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="fit + bare pairs, one after the other; the median overhead is the figure",
    )
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: preset)")
    parser.add_argument("--no-cache", action="store_true", help="data.cache_images off: decode every epoch")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    raw = {
        **PRESETS[args.preset],
        "miner": {"name": "semihard"},
        "loss": {"name": "triplet"},
        "train": {"epochs": 3, "steps_per_epoch": args.steps, "seed": 0},
        "eval": {"every": 100, "ks": [1]},
    }
    workers = raw["data"].get("num_workers", 2) if args.workers is None else args.workers
    raw["data"] = {**raw["data"], "num_workers": workers, "cache_images": not args.no_cache}
    if args.preset == "demo":
        from lookalike.data.builtin import GlyphsSpec, make_glyphs

        make_glyphs(raw["data"]["root"], GlyphsSpec())
    cfg = validate_config(raw)
    if not Path(cfg.data.root).exists():
        raise SystemExit(f"data not found: {cfg.data.root} (the benchmark reads ../shared/data)")
    runs = [measure(cfg, args.steps) for _ in range(args.repeats)]
    batch = cfg.sampler.p * cfg.sampler.k
    print(
        f"\npreset {args.preset}: backbone {cfg.model.backbone} @ {cfg.model.image_size}px, batch {batch}, "
        f"{torch.get_num_threads()} threads, {cfg.data.num_workers} loader workers"
        + (" (+ their CPU, not counted in CPU time)" if cfg.data.num_workers else "")
    )
    header = [
        "run",
        "bare img/s",
        "fit img/s",
        "fit 1st epoch",
        "overhead",
        "bare img/CPU-s",
        "fit img/CPU-s",
        "overhead (CPU)",
    ]
    print("".join(f"{h:>15}" for h in header))
    for i, r in enumerate(runs, start=1):
        cells = [
            str(i),
            f"{r['bare']:.1f}",
            f"{r['pipe']:.1f}",
            f"{r['first']:.1f}",
            f"{r['overhead']:.1f}%",
            f"{r['bare_cpu']:.1f}",
            f"{r['pipe_cpu']:.1f}",
            f"{r['overhead_cpu']:.1f}%",
        ]
        print("".join(f"{c:>15}" for c in cells))
    wall = statistics.median(r["overhead"] for r in runs)
    cpu = statistics.median(r["overhead_cpu"] for r in runs)
    print(f"pipeline overhead: {wall:.1f}% (median of {len(runs)}; target < 10%), in CPU time {cpu:.1f}%")


def measure(cfg, steps: int) -> dict[str, float]:
    """One fit of 3 epochs, then the bare loop in the same process: images/s of both, wall and CPU."""
    cpu_at: dict[int, float] = {}  # optimizer step -> CPU time of this process after it
    with tempfile.TemporaryDirectory() as tmp:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            fit(cfg, Path(tmp) / "run", on_step=lambda step: cpu_at.__setitem__(step, time.process_time()))
        log = [json.loads(line) for line in (Path(tmp) / "run" / "train_log.jsonl").read_text().splitlines()]
    # the bare loop runs second, in the same process, so it too finds allocators and kernels warm
    bare, bare_cpu = bare_loop(cfg, 2 * steps)  # as many steps as the fit epochs timed
    first = log[0]["epoch_images"] / log[0]["epoch_seconds"]
    pipe = sum(r["epoch_images"] for r in log[1:]) / sum(r["epoch_seconds"] for r in log[1:])
    batch = cfg.sampler.p * cfg.sampler.k
    # CPU of steps 2.. of each later epoch (from the end of its first step to the end of its last)
    ends = [r["step"] for r in log]
    cpu_steps = [(cpu_at[b] - cpu_at[a + 1], b - a - 1) for a, b in itertools.pairwise(ends)]
    pipe_cpu = sum(n for _, n in cpu_steps) * batch / sum(t for t, _ in cpu_steps)
    return {
        "bare": bare,
        "bare_cpu": bare_cpu,
        "first": first,
        "pipe": pipe,
        "pipe_cpu": pipe_cpu,
        "overhead": 100 * (1 - pipe / bare),
        "overhead_cpu": 100 * (1 - pipe_cpu / bare_cpu),
    }


if __name__ == "__main__":
    main()
