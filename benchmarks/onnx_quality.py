"""Retrieval quality and speed of a model in PyTorch, exported to ONNX, and quantised to int8, side by
side on the same test images in one run.

The test images of a split manifest (``--manifest`` from `lookalike train`'s run folder, its ``--split``
rows) or of an image folder (``--data``: its last ``--test-classes`` class folders, sorted by name;
the calibration images then come from the other classes). Each runtime embeds them once; reported:
hit_rate@1 and MAP@R (the split's query/gallery roles when it has them, and leave-one-out over every
test image), the least and mean cosine of its embeddings to PyTorch's, images per second and per CPU
second of the embedding pass. int8 is calibrated on ``--calibration-images`` images of the training
classes, never on the test classes.

    .venv/bin/python benchmarks/onnx_quality.py --checkpoint runs/omniglot/checkpoints/best.pt \\
        --manifest runs/omniglot/split.csv
    .venv/bin/python benchmarks/onnx_quality.py --backbone mobilenetv2_100 \\
        --weights ../shared/weights/mobilenetv2_100.imagenet.safetensors --data ../shared/data/cub100/images
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lookalike.data import ManifestDataset, eval_transform, manifest_from_folder, read_manifest
from lookalike.embed import embed_frame
from lookalike.export import export_onnx
from lookalike.metrics.retrieval import retrieval_metrics
from lookalike.models import load_inference_model, load_onnx_model


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


def test_and_calibration_rows(args) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(test rows, calibration rows): from a split manifest, or from a folder's class order."""
    if args.manifest is not None:
        frame = read_manifest(args.manifest)
        test = frame[frame["split"].astype(str) == args.split]
        train = frame[frame["split"].astype(str) == "train"]
    else:
        frame = manifest_from_folder(args.data)
        labels = sorted(frame["label"].unique())
        test_labels = set(labels[-args.test_classes :])
        test = frame[frame["label"].isin(test_labels)]
        train = frame[~frame["label"].isin(test_labels)]
    step = max(1, len(train) // args.calibration_images)
    return test, train.iloc[::step].iloc[: args.calibration_images]


def metrics(emb: torch.Tensor, test: pd.DataFrame) -> dict[str, float]:
    """hit_rate@1 and MAP@R with the split's roles (when present) and leave-one-out."""
    labels = test["label"].astype(str).to_numpy()
    ids = torch.arange(len(test))
    out = {}
    loo = retrieval_metrics(emb, labels, ks=(1,), leave_one_out=True).metrics
    out["loo hit_rate@1"], out["loo map@r"] = loo["hit_rate@1"], loo["map@r"]
    if "role" in test.columns:
        role = test["role"].astype(str).to_numpy()
        q = np.flatnonzero(np.isin(role, ["query", "query+gallery"]))
        g = np.flatnonzero(np.isin(role, ["gallery", "query+gallery"]))
        split = retrieval_metrics(
            emb[q], labels[q], emb[g], labels[g], ks=(1,), query_ids=ids[q], gallery_ids=ids[g]
        ).metrics
        out["roles hit_rate@1"], out["roles map@r"] = split["hit_rate@1"], split["map@r"]
    return {k: float(v) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--backbone")
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--manifest", type=Path, help="a split manifest (its --split rows are the test set)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--data", type=Path, help="or an image folder, a sub-folder per class")
    parser.add_argument("--test-classes", type=int, default=50)
    parser.add_argument("--calibration-images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="PyTorch and onnxruntime intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.checkpoint is not None:
        model = load_inference_model(checkpoint=args.checkpoint)
    else:
        model = load_inference_model(backbone=args.backbone, weights=args.weights, image_size=args.image_size)
    test, calibration_rows = test_and_calibration_rows(args)
    dataset = ManifestDataset(
        calibration_rows.assign(label=""), transform=eval_transform(model.preprocessing)
    )
    calibration = torch.stack([dataset[i][0] for i in range(len(dataset))])
    with tempfile.TemporaryDirectory() as tmp:
        models = {"torch": model}
        for name, quantize in (("onnx", None), ("onnx-int8", "int8")):
            path = export_onnx(
                model, Path(tmp) / f"{name}.onnx", quantize=quantize, calibration=calibration
            ).path
            models[name] = load_onnx_model(path, threads=args.threads)
        rows = {}
        for name, m in models.items():
            start, cpu = time.perf_counter(), _cpu()
            emb = embed_frame(m.embedder, test, batch_size=args.batch_size)
            rows[name] = (emb, len(test) / (time.perf_counter() - start), len(test) / (_cpu() - cpu))
    _report(args, model, test, len(calibration), rows)


def _report(args, model, test: pd.DataFrame, n_calibration: int, rows: dict) -> None:
    what = args.checkpoint if args.checkpoint is not None else f"{args.backbone} ({args.weights})"
    source = args.manifest if args.manifest is not None else args.data
    print(
        f"\n{what} @ {model.preprocessing.image_size} px: {len(test)} test images of "
        f"{test['label'].nunique()} classes ({source}), int8 calibrated on {n_calibration} training-class "
        f"images, {args.threads} threads"
    )
    reference = rows["torch"][0]
    header = None
    for name, (emb, rate, cpu_rate) in rows.items():
        figures = metrics(emb, test)
        cosine = torch.nn.functional.cosine_similarity(emb, reference, dim=1)
        if header is None:
            header = list(figures)
            print(
                f"{'runtime':<11}"
                + "".join(f"{k:>18}" for k in header)
                + f"{'cos min/mean':>16}{'img/s':>8}{'img/CPU-s':>11}"
            )
        print(
            f"{name:<11}"
            + "".join(f"{figures[k]:>18.4f}" for k in header)
            + f"{f'{cosine.min():.4f}/{cosine.mean():.4f}':>16}{rate:>8.1f}{cpu_rate:>11.1f}"
        )


if __name__ == "__main__":
    main()
