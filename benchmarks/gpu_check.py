"""End-to-end check of lookalike's GPU paths, one line per check (PASS / FAIL / SKIP), in a few minutes.

Checks, on a small generated image set (no download, no shared data):

1. ``vit-bf16-fit``: ``fit`` of a ViT-S/14 (the DINOv2-S architecture, random init) at 56 px with
   bf16 autocast: the loss is finite, the Linear layers really ran in bf16, the run folder is whole.
2. ``torchrun``: ``torchrun -m lookalike train`` on every GPU (NCCL; one GPU is enough: the process
   group runs with one rank, through the same collectives as many), or 2 gloo processes with
   ``--device cpu``.
3. ``topk-vs-faiss``: ``lookalike.knn.topk`` on the device against FAISS ``IndexFlatL2`` on the
   same embeddings (ids and distances), with both timings.
4. ``evaluation``: ``evaluate_split`` of the trained checkpoint on the device equals it on the CPU.

``--device cpu`` runs the same checks on the CPU (gloo for torchrun, smaller top-k), and ``--quick``
with smaller sizes, so that CI keeps the script working on machines without a GPU. Exit status 1
when any check fails.

    benchmarks/gpu_check.sh                                    # on a GPU machine
    python benchmarks/gpu_check.py --device cpu --quick        # the dry run CI runs (tests/training)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image

SRC = Path(__file__).resolve().parents[1] / "src"
if str(SRC) not in sys.path:  # runnable from a checkout without installing
    sys.path.insert(0, str(SRC))

from lookalike.config import validate_config  # noqa: E402
from lookalike.data import read_manifest  # noqa: E402
from lookalike.evaluation import evaluate_split, split_frames  # noqa: E402
from lookalike.knn import topk  # noqa: E402
from lookalike.models import load_checkpoint  # noqa: E402
from lookalike.training import fit  # noqa: E402


def make_images(root: Path, *, classes: int = 12, per_class: int = 8, size: int = 56) -> Path:
    """A folder per class: each class a colour and stripe pattern, plus noise."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        folder = root / f"class{c:02d}"
        folder.mkdir(parents=True)
        base = rng.integers(0, 255, size=3).astype(np.uint8)
        for i in range(per_class):
            img = np.zeros((size, size, 3), dtype=np.uint8) + base
            img[:: (c % 4) + 2] = 255 - base
            img = np.clip(img + rng.normal(0, 20, img.shape), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(folder / f"{i}.png")
    return root


def vit_config(images: Path, device: str, *, epochs: int, steps: int, quick: bool = False) -> dict:
    model = {"backbone": "dinov2_vits14", "pretrained": False, "image_size": 56, "embed_dim": 64}
    if quick:  # the dry run: the same architecture with 2 blocks, 2 x 2 patches
        model |= {"backbone_kwargs": {"depth": 2}, "image_size": 28}
    return {
        "data": {"root": str(images), "val": 0.25, "test": 0.25, "seed": 0},
        "model": model,
        "sampler": {"p": 4, "k": 4},
        "miner": {"name": "semihard"},
        "loss": {"name": "triplet", "margin": 0.2},
        "optim": {"lr": 1e-4, "warmup_epochs": 0},
        "train": {"epochs": epochs, "steps_per_epoch": steps, "device": device, "amp": "bf16", "seed": 0},
        "eval": {"ks": [1, 5]},
    }


def check_vit_bf16_fit(work: Path, device: str, quick: bool) -> str:
    run = work / "vit"
    raw = vit_config(work / "images", device, epochs=2, steps=2 if quick else 8, quick=quick)
    cfg = validate_config(raw)
    result = fit(cfg, run)
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log]
    assert len(log) == 2 and all(math.isfinite(x) for x in losses), f"epoch losses {losses}"
    assert {p.name for p in (run / "checkpoints").iterdir()} == {"best.pt", "last.pt"}
    assert result.test is not None
    # the autocast the training step uses puts the ViT's Linear layers in bf16 on this device
    embedder = load_checkpoint(run / "checkpoints" / "last.pt").embedder.to(device)
    seen = []
    hook = embedder.backbone.blocks[0].mlp.fc1.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
        size = embedder.preprocessing.image_size
        embedder(torch.randn(2, 3, size, size, device=device))
    hook.remove()
    assert seen == [torch.bfloat16], f"fc1 ran in {seen}, expected bfloat16 under autocast"
    blocks = len(embedder.backbone.blocks)
    return (
        f"ViT-S/14 ({blocks} blocks) random init @ {cfg.model.image_size} px, batch 16, 2 epochs: "
        f"loss {losses[0]:.4f} -> {losses[-1]:.4f}, {result.images_per_second:.1f} img/s, fc1 in {seen[0]}, "
        f"test hit_rate@1 {result.test['hit_rate@1']:.3f}"
    )


def check_torchrun(work: Path, device: str, quick: bool) -> str:
    nproc = torch.cuda.device_count() if device == "cuda" else 1 if quick else 2
    cfg_path = work / "torchrun.yaml"
    raw = vit_config(work / "images", device, epochs=1, steps=2 if quick else 4)
    if device == "cpu":  # two CPU processes: the small CNN keeps the dry run short
        raw["model"] = {"backbone": "convnet4", "image_size": 32, "embed_dim": 32}
        raw["sampler"] = {"p": 2, "k": 4}
    cfg_path.write_text(yaml.safe_dump(raw))
    run = work / "torchrun"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    cmd += ["-m", "lookalike", "train", "--config", str(cfg_path), "--out", str(run)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    seconds = time.perf_counter() - t0
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"exit {proc.returncode}:\n{out[-3000:]}"
    backend = "nccl" if device == "cuda" else "gloo"
    assert f"{nproc} process(es), {backend}" in out, (
        f"no {backend} process group in the output:\n{out[-2000:]}"
    )
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in evals if r["split"] == "val"] == [0, 1], evals
    return (
        f"{nproc} process(es) on {backend}: 1 epoch trained and evaluated in {seconds:.1f} s (with start-up)"
    )


def check_topk_vs_faiss(work: Path, device: str, quick: bool) -> str:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return "SKIP: faiss is not installed here (pip install faiss-cpu, or carry its wheel)"
    n_q, n_g, dim, k = (500, 20_000, 64, 10) if quick or device == "cpu" else (10_000, 1_000_000, 128, 10)
    g = torch.Generator().manual_seed(0)
    queries = torch.nn.functional.normalize(torch.randn(n_q, dim, generator=g), dim=1)
    gallery = torch.nn.functional.normalize(torch.randn(n_g, dim, generator=g), dim=1)
    t0 = time.perf_counter()
    ref_d, ref_i = topk(queries, gallery, k, backend="faiss")
    faiss_s = time.perf_counter() - t0
    q_dev, g_dev = queries.to(device), gallery.to(device)
    topk(q_dev[:8], g_dev, k)  # warm-up (kernels, allocator)
    _sync(device)
    t0 = time.perf_counter()
    dist, ids = topk(q_dev, g_dev, k)
    _sync(device)
    ours_s = time.perf_counter() - t0
    same = (ids.cpu() == ref_i).float().mean().item()
    max_diff = (dist.cpu() - ref_d).abs().max().item()
    assert same >= 0.999, f"only {same:.4%} of the ids agree with FAISS"
    assert max_diff < 1e-3, f"distances differ from FAISS by up to {max_diff:.2e}"
    return (
        f"{n_q} x {n_g} x {dim}, k={k}: ids agree {same:.2%}, max |d - d_faiss| {max_diff:.1e}; "
        f"{device} {ours_s * 1e3:.1f} ms, FAISS IndexFlatL2 (CPU) {faiss_s * 1e3:.1f} ms"
    )


def check_evaluation(work: Path, device: str, quick: bool) -> str:
    run = work / "vit"
    if not (run / "checkpoints" / "best.pt").exists():
        raise AssertionError("no checkpoint: the vit-bf16-fit check did not finish")
    frame = read_manifest(run / "split.csv")
    queries, gallery = split_frames(frame, "test")
    embedder = load_checkpoint(run / "checkpoints" / "best.pt").embedder
    t0 = time.perf_counter()
    on_device = evaluate_split(embedder.to(device), queries, gallery, ks=(1, 5), device=device).metrics
    seconds = time.perf_counter() - t0
    on_cpu = evaluate_split(embedder.to("cpu"), queries, gallery, ks=(1, 5), device="cpu").metrics
    step = 1.0 / len(queries)  # one query ranked differently (float rounding at a near tie)
    worst = max(abs(on_device[key] - on_cpu[key]) for key in on_cpu)
    assert on_device.keys() == on_cpu.keys() and worst <= step + 1e-9, (on_device, on_cpu)
    return (
        f"{len(queries)} queries x {len(gallery)} gallery on {device} in {seconds:.2f} s: "
        f"hit_rate@1 {on_device['hit_rate@1']:.3f}, map@r {on_device['map@r']:.3f}; "
        f"largest difference from the CPU {worst:.4f}"
    )


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


CHECKS: dict[str, Callable[[Path, str, bool], str]] = {
    "vit-bf16-fit": check_vit_bf16_fit,
    "torchrun": check_torchrun,
    "topk-vs-faiss": check_topk_vs_faiss,
    "evaluation": check_evaluation,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (the dry run)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the dry-run sizes: a 2-block ViT, fewer steps, one torchrun process on CPU, a smaller top-k",
    )
    parser.add_argument("--only", nargs="*", choices=sorted(CHECKS), help="run only these checks")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("FAIL setup: --device cuda but torch sees no GPU here; use --device cpu for the dry run")
        return 1
    print(
        f"torch {torch.__version__}, device {args.device}"
        + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else "")
    )
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        make_images(work / "images")
        for name, check in CHECKS.items():
            if args.only and name not in args.only:
                continue
            t0 = time.perf_counter()
            try:
                line = check(work, args.device, args.quick)
                status = "SKIP" if line.startswith("SKIP") else "PASS"
                line = line.removeprefix("SKIP: ")
            except Exception as err:  # one failed check does not stop the others
                status, line, failed = "FAIL", f"{type(err).__name__}: {err}", True
                traceback.print_exc(file=sys.stderr)
            print(f"{status} {name} ({time.perf_counter() - t0:.1f} s): {line}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
