"""The end-of-training calibration step: best.pt gets a threshold, metrics.jsonl the figures, and a
val split that cannot calibrate is skipped with its reason."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch
from PIL import Image
from rich.console import Console

from lookalike.config import validate_config
from lookalike.models import create_embedder_from, save_checkpoint
from lookalike.models.inference import load_inference_model
from lookalike.training.history import RunHistory
from lookalike.training.threshold import calibrate_checkpoint_on_val


def _val(tmp_path, n_classes=5, per_class=4):
    rng = np.random.default_rng(0)
    rows = []
    for c in range(n_classes):
        for i in range(per_class):
            path = tmp_path / f"c{c}_{i}.png"
            arr = np.full((16, 16, 3), c * 45, dtype=np.uint8) + rng.integers(
                0, 30, (16, 16, 3), dtype=np.uint8
            )
            Image.fromarray(arr).save(path)
            rows.append(
                {
                    "path": str(path),
                    "label": f"c{c}",
                    "split": "val",
                    "role": "query" if i == 0 else "gallery",
                }
            )
    frame = pd.DataFrame(rows)
    return frame[frame["role"] == "query"], frame[frame["role"] == "gallery"]


def _setup(tmp_path, target_far):
    torch.manual_seed(0)
    emb = create_embedder_from("convnet4", image_size=16, embed_dim=8, backbone_kwargs={"width": 8})
    ckpt = save_checkpoint(
        tmp_path / "best.pt", emb, extra={"epoch": 2, "metric": "hit_rate@1", "value": 0.5}
    )
    config = validate_config({"data": {"root": str(tmp_path)}, "eval": {"target_far": target_far}})
    return ckpt, config, RunHistory(tmp_path / "run")


def _records(tmp_path):
    path = tmp_path / "run" / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_best_checkpoint_gets_the_threshold_and_metrics_the_figures(tmp_path):
    ckpt, config, history = _setup(tmp_path, 0.2)
    result = calibrate_checkpoint_on_val(
        ckpt,
        _val(tmp_path),
        config,
        history=history,
        console=Console(quiet=True),
        device="cpu",
        epoch=2,
        step=9,
    )
    assert result is not None and result.far <= 0.2 and result.split == "val"
    model = load_inference_model(checkpoint=ckpt)
    assert model.threshold == result.threshold
    (record,) = _records(tmp_path)
    assert record["split"] == "calibration" and record["calibrated_on"] == "val"
    assert (record["epoch"], record["step"]) == (2, 9)
    assert record["threshold"] == result.threshold.value and record["roc_auc"] == result.roc_auc
    assert record["n_genuine"] + record["n_impostor"] == 20


def test_off_when_target_far_is_null(tmp_path):
    ckpt, config, history = _setup(tmp_path, None)
    before = ckpt.read_bytes()
    out = calibrate_checkpoint_on_val(
        ckpt,
        _val(tmp_path),
        config,
        history=history,
        console=Console(quiet=True),
        device="cpu",
        epoch=1,
        step=1,
    )
    assert out is None and ckpt.read_bytes() == before and _records(tmp_path) == []


def test_a_val_split_that_cannot_calibrate_is_skipped_with_its_reason(tmp_path):
    ckpt, config, history = _setup(tmp_path, 0.01)
    before = ckpt.read_bytes()
    console = Console(record=True, width=200)
    out = calibrate_checkpoint_on_val(
        ckpt,
        _val(tmp_path, n_classes=1),
        config,
        history=history,
        console=console,
        device="cpu",
        epoch=1,
        step=1,
    )
    assert out is None and ckpt.read_bytes() == before
    assert (
        "match threshold not calibrated: calibration needs queries of at least 2 classes"
        in console.export_text()
    )
    (record,) = _records(tmp_path)
    assert record["split"] == "calibration" and "at least 2 classes" in record["skipped"]


def test_fit_leaves_a_calibrated_best_checkpoint(image_folder, tmp_path):
    from lookalike.training import fit

    config = validate_config(
        {
            "data": {"root": str(image_folder), "val": 0.3, "test": 0.2, "seed": 1},
            "model": {"backbone": "convnet4", "embed_dim": 8, "image_size": 24},
            "sampler": {"p": 3, "k": 2},
            "train": {"epochs": 1, "steps_per_epoch": 2, "device": "cpu"},
            "eval": {"ks": [1, 2], "target_far": 0.25},
        }
    )
    result = fit(config, tmp_path / "run", console=Console(quiet=True))
    model = load_inference_model(checkpoint=tmp_path / "run" / "checkpoints" / "best.pt")
    records = [r for r in _records(tmp_path) if r["split"] == "calibration"]
    assert len(records) == 1 and "skipped" not in records[0]
    assert model.threshold is not None and model.threshold.value == records[0]["threshold"]
    assert model.threshold.far <= 0.25 and model.calibration["split"] == "val"
    assert result.calibration == {k: v for k, v in records[0].items() if k in result.calibration}
    assert records[0]["epoch"] == result.best_epoch
