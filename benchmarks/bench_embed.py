"""Embedding throughput of `lookalike embed` against a bare forward loop of the same model.

- bare: the same embedder's forward (no_grad, eval mode) over the same images, decoded and
  transformed once beforehand and held in memory as batches: what the network alone costs.
- lookalike embed: the command's path from a manifest to the Parquet file (reading and decoding
  the files, the eval transform, the DataLoader, the forward pass, gathering, writing the file),
  timed from a loaded model to the written file; the whole command (model loading included) is
  printed too.

With ``--runtime torch onnx onnx-int8`` (any of them; default torch) each runtime embeds the same
images: ``onnx`` is the model exported by ``lookalike export`` and run by onnxruntime, ``onnx-int8``
the same export quantised to int8 (static, calibrated on ``--calibration-images`` images that come
after the benchmarked ones in the folder). The speed-up of each runtime over eager PyTorch is printed,
in wall time and in CPU time.

Each is run ``--repeats`` times alternately after one warm-up run of each; the medians are compared.
The pipeline overhead is 1 - pipeline images/s / bare images/s (target: < 10% at 224 px), in wall
time and in CPU time (this process and its loader workers: user + system seconds). On a machine
shared with other jobs the wall time swings with their load; the CPU time is what this work cost.

    .venv/bin/python benchmarks/bench_embed.py                     # CUB images, MobileNetV2 @ 224
    .venv/bin/python benchmarks/bench_embed.py --workers 2 --images 512
    .venv/bin/python benchmarks/bench_embed.py --runtime torch onnx onnx-int8 --threads 2
    .venv/bin/python benchmarks/bench_embed.py --runtime torch onnx onnx-int8 \
        --data ../shared/data/omniglot-small --checkpoint runs/omniglot/checkpoints/best.pt
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


def load_runtimes(args, frame, tmp: Path) -> dict:
    """runtime name -> InferenceModel: the PyTorch model, and its ONNX exports when asked for."""
    from lookalike.data import manifest_from_folder

    if args.checkpoint is not None:
        model = load_inference_model(checkpoint=args.checkpoint)
    else:
        model = load_inference_model(backbone=args.backbone, weights=args.weights, image_size=args.size)
    models = {"torch": model}
    onnx_runtimes = [r for r in args.runtime if r != "torch"]
    if not onnx_runtimes:
        return models
    from lookalike.export import export_onnx
    from lookalike.models import load_onnx_model

    calibration = None
    if "onnx-int8" in onnx_runtimes:
        rest = manifest_from_folder(args.data).iloc[len(frame) :: 7].iloc[: args.calibration_images]
        dataset = ManifestDataset(rest, transform=eval_transform(model.preprocessing))
        calibration = torch.stack([dataset[i][0] for i in range(len(dataset))])
    for name in onnx_runtimes:
        path = export_onnx(
            model,
            tmp / f"{name}.onnx",
            quantize="int8" if name == "onnx-int8" else None,
            calibration=calibration,
        ).path
        models[name] = load_onnx_model(path, threads=args.threads)
    return {name: models[name] for name in args.runtime}


def whole_command(args, manifest: Path, out: Path) -> float:
    from lookalike.cli import app

    if args.checkpoint is not None:
        argv = ["embed", "--checkpoint", str(args.checkpoint)]
    else:
        argv = ["embed", "--backbone", args.backbone, "--weights", str(args.weights)]
        argv += ["--image-size", str(args.size)]
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
    parser.add_argument("--threads", type=int, default=None, help="PyTorch and onnxruntime intra-op threads")
    parser.add_argument("--checkpoint", type=Path, default=None, help="a checkpoint instead of --backbone")
    parser.add_argument(
        "--runtime",
        nargs="+",
        default=["torch"],
        choices=["torch", "onnx", "onnx-int8"],
        help="runtimes to compare",
    )
    parser.add_argument("--calibration-images", type=int, default=128, help="int8 calibration images")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.data.is_dir():
        raise SystemExit(f"data not found: {args.data} (the benchmark reads ../shared/data)")
    device = torch.device(args.device)
    frame = manifest_from_folder(args.data).iloc[: args.images]
    n = len(frame)
    with tempfile.TemporaryDirectory() as tmp:
        models = load_runtimes(args, frame, Path(tmp))
        model = models["torch"] if "torch" in models else next(iter(models.values()))
        dataset = ManifestDataset(frame, transform=eval_transform(model.preprocessing))
        images = torch.stack([dataset[i][0] for i in range(n)])
        batches = list(images.split(args.batch_size))
        out = Path(tmp) / "emb.parquet"
        manifest = Path(tmp) / "manifest.csv"
        frame.to_csv(manifest, index=False)
        timings = {name: ([], []) for name in models}
        for repeat in range(args.repeats + 1):  # the first round warms up and is not counted
            for name, m in models.items():
                bare = bare_loop(m, batches, device)
                pipe = pipeline(
                    m, frame, out, batch_size=args.batch_size, workers=args.workers, device=device
                )
                if repeat:
                    timings[name][0].append(bare)
                    timings[name][1].append(pipe)
        command_s = whole_command(args, manifest, out) if "torch" in models else None
    _report(args, device, n, timings, command_s)


def _report(args, device, n: int, timings: dict, command_s: float | None) -> None:
    name = args.checkpoint.name if args.checkpoint is not None else args.backbone
    threads = args.threads or torch.get_num_threads()
    print(
        f"\n{name} @ {args.size if args.checkpoint is None else 'its'} px on {device}, {n} images of "
        f"{args.data.name}, batch {args.batch_size}, {threads} threads, {args.workers} loader workers, "
        f"median of {args.repeats}"
    )
    print(f"{'runtime':<12}{'engine':<40}{'images/s':>10}{'images/CPU-s':>14}{'x torch (wall/CPU)':>20}")
    rates = {}
    for runtime, (bare_s, pipe_s) in timings.items():
        for engine, runs in (
            ("bare forward loop (images in memory)", bare_s),
            ("lookalike embed (files -> Parquet)", pipe_s),
        ):
            wall = n / statistics.median(w for w, _ in runs)
            cpu = n / statistics.median(c for _, c in runs)
            rates[runtime, engine] = wall, cpu
            base = rates.get(("torch", engine))
            ratio = f"{wall / base[0]:.2f} / {cpu / base[1]:.2f}" if base else "-"
            print(f"{runtime:<12}{engine:<40}{wall:>10.2f}{cpu:>14.2f}{ratio:>20}")
        runs = [f"{w:.1f}/{c:.1f}" for w, c in bare_s], [f"{w:.1f}/{c:.1f}" for w, c in pipe_s]
        print(f"{'':<12}runs (wall/CPU s): bare {', '.join(runs[0])}; pipeline {', '.join(runs[1])}")
    if command_s is not None:
        print(f"{'torch':<12}{'lookalike embed, whole command (+ load)':<40}{n / command_s:>10.2f}")
    if "torch" in timings:
        bare, pipe = (
            rates["torch", "bare forward loop (images in memory)"],
            rates["torch", "lookalike embed (files -> Parquet)"],
        )
        print(
            f"torch pipeline overhead: {100 * (1 - pipe[0] / bare[0]):.1f}% wall, "
            f"{100 * (1 - pipe[1] / bare[1]):.1f}% CPU (target < 10%)"
        )


if __name__ == "__main__":
    main()
