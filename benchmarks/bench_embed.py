"""Embedding throughput of `lookalike embed` against a bare forward loop of the same model.

- bare: the same embedder's forward (no_grad, eval mode) over the same images, decoded and
  transformed once beforehand and held in memory as batches: what the network alone costs.
- lookalike embed: the command's path from a manifest to the Parquet file (reading and decoding
  the files, the eval transform, the DataLoader, the forward pass, gathering, writing the file),
  timed from a loaded model to the written file; the whole command (model loading included) is
  printed too.

Each is run ``--repeats`` times alternately after one warm-up run of each; the medians are compared.
The pipeline overhead is 1 - pipeline images/s / bare images/s (target: < 10% at 224 px), in wall
time and in CPU time (this process and its loader workers: user + system seconds). On a machine
shared with other jobs the wall time swings with their load; the CPU time is what this work cost.

    .venv/bin/python benchmarks/bench_embed.py                     # CUB images, MobileNetV2 @ 224
    .venv/bin/python benchmarks/bench_embed.py --workers 2 --images 512
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch

from lookalike.data import ManifestDataset, manifest_from_folder
from lookalike.embed import embed_frame, embeddings_frame, eval_transform, write_embeddings
from lookalike.models.inference import load_inference_model

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "cub100" / "images"
WEIGHTS = REPO.parent / "shared" / "weights" / "mobilenetv2_100.imagenet.safetensors"


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its finished children (loader workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@torch.no_grad()
def bare_loop(model, batches: list[torch.Tensor], device: torch.device) -> tuple[float, float]:
    """(wall, CPU) seconds of the forward pass over ``batches`` (already decoded and transformed)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start, cpu = time.perf_counter(), _cpu_seconds()
    for batch in batches:
        model.embedder(batch.to(device, non_blocking=True)).float().cpu()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, _cpu_seconds() - cpu


def pipeline(
    model, frame, out: Path, *, batch_size: int, workers: int, device: torch.device
) -> tuple[float, float]:
    """(wall, CPU) seconds from the loaded model to the written Parquet file, as `lookalike embed`
    does it (loader workers, when any, have exited by the end, so their CPU time is counted)."""
    start, cpu = time.perf_counter(), _cpu_seconds()
    emb = embed_frame(model.embedder, frame, batch_size=batch_size, device=device, num_workers=workers)
    write_embeddings(embeddings_frame(frame, emb), out, metadata={"model_fingerprint": model.fingerprint})
    return time.perf_counter() - start, _cpu_seconds() - cpu


def whole_command(args, manifest: Path, out: Path) -> float:
    from lookalike.cli import app

    argv = [
        "embed",
        "--backbone",
        args.backbone,
        "--weights",
        str(args.weights),
        "--image-size",
        str(args.size),
    ]
    argv += ["--manifest", str(manifest), "--out", str(out), "--device", args.device]
    argv += ["--batch-size", str(args.batch_size), "--num-workers", str(args.workers)]
    start = time.perf_counter()
    app(argv, standalone_mode=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DATA, help="an image folder (a folder per class)")
    parser.add_argument("--backbone", default="mobilenetv2_100")
    parser.add_argument("--weights", type=Path, default=WEIGHTS)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes of the pipeline")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.data.is_dir():
        raise SystemExit(f"data not found: {args.data} (the benchmark reads ../shared/data)")
    device = torch.device(args.device)
    frame = manifest_from_folder(args.data).iloc[: args.images]
    n = len(frame)
    model = load_inference_model(
        backbone=args.backbone, weights=args.weights, image_size=args.size, device=device
    )
    dataset = ManifestDataset(frame, transform=eval_transform(model.preprocessing))
    images = torch.stack([dataset[i][0] for i in range(n)])
    batches = list(images.split(args.batch_size))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "emb.parquet"
        manifest = Path(tmp) / "manifest.csv"
        frame.to_csv(manifest, index=False)
        bare_loop(model, batches, device)  # warm-up
        pipeline(model, frame, out, batch_size=args.batch_size, workers=args.workers, device=device)
        bare_s, pipe_s = [], []
        for _ in range(args.repeats):
            bare_s.append(bare_loop(model, batches, device))
            pipe_s.append(
                pipeline(model, frame, out, batch_size=args.batch_size, workers=args.workers, device=device)
            )
        command_s = whole_command(args, manifest, out)
    bare = n / statistics.median(w for w, _ in bare_s)
    pipe = n / statistics.median(w for w, _ in pipe_s)
    bare_cpu = n / statistics.median(c for _, c in bare_s)
    pipe_cpu = n / statistics.median(c for _, c in pipe_s)
    print(
        f"\n{args.backbone} @ {args.size}px on {device}, {n} images of {args.data.name}, "
        f"batch {args.batch_size}, {torch.get_num_threads()} threads, {args.workers} loader workers, "
        f"median of {args.repeats}"
    )
    print(f"{'engine':<46}{'images/s':>10}{'images/CPU-s':>14}")
    print(f"{'bare forward loop (images in memory)':<46}{bare:>10.2f}{bare_cpu:>14.2f}")
    print(f"{'lookalike embed (files -> Parquet)':<46}{pipe:>10.2f}{pipe_cpu:>14.2f}")
    print(f"{'lookalike embed, whole command (+ model load)':<46}{n / command_s:>10.2f}")
    print(
        f"pipeline overhead: {100 * (1 - pipe / bare):.1f}% wall, {100 * (1 - pipe_cpu / bare_cpu):.1f}% CPU "
        "(target < 10%)"
    )
    runs = [f"{w:.1f}/{c:.1f}" for w, c in bare_s], [f"{w:.1f}/{c:.1f}" for w, c in pipe_s]
    print(f"runs (wall/CPU s): bare {', '.join(runs[0])}; pipeline {', '.join(runs[1])}")


if __name__ == "__main__":
    main()
