"""The end-of-training calibration step: best.pt gets the open-set calibration record (target FPIR,
decision score, a threshold per gallery size), metrics.jsonl its figures in FRVT names, and a val
split that cannot calibrate is skipped with its reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from rich.console import Console

from lookalike.calibration import calibrate_open_set
from lookalike.config import validate_config
from lookalike.embed import embed_frame
from lookalike.metrics.identification import SCORES
from lookalike.models import create_embedder_from, load_checkpoint, save_checkpoint
from lookalike.training.history import RunHistory
from lookalike.training.threshold import calibrate_checkpoint_on_val

SRC = Path(__file__).resolve().parents[2] / "src"

#: Reopens a checkpoint in a new process and prints what a user of it reads: the calibration record
#: (read_calibration) and the threshold load_inference_model gives.
_REOPEN = """
import json, sys
from lookalike.calibration import read_calibration
from lookalike.models.inference import load_inference_model
model = load_inference_model(checkpoint=sys.argv[1])
record = read_calibration(model.calibration)
print(json.dumps({
    "record": None if record is None else record.to_dict(),
    "model_threshold": None if model.threshold is None else model.threshold.value,
}))
"""


def _reopen(checkpoint: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-c", _REOPEN, str(checkpoint)], capture_output=True, text=True, env=env, check=False
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def _val(tmp_path, n_classes=6, per_class=4):
    rng = np.random.default_rng(0)
    rows = []
    for c in range(n_classes):
        for i in range(per_class):
            path = tmp_path / f"c{c}_{i}.png"
            arr = np.full((16, 16, 3), c * 40, dtype=np.uint8) + rng.integers(
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


def _setup(tmp_path, eval_section):
    torch.manual_seed(0)
    emb = create_embedder_from("convnet4", image_size=16, embed_dim=8, backbone_kwargs={"width": 8})
    ckpt = save_checkpoint(
        tmp_path / "best.pt", emb, extra={"epoch": 2, "metric": "hit_rate@1", "value": 0.5}
    )
    config = validate_config({"data": {"root": str(tmp_path), "seed": 3}, "eval": eval_section})
    return ckpt, config, RunHistory(tmp_path / "run")


def _records(run: Path):
    path = run / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _independent(checkpoint: Path, queries: pd.DataFrame, gallery: pd.DataFrame, *, target: float, seed: int):
    """calibrate_open_set on the val images embedded here (each image once, queries first)."""
    rows = pd.concat([queries, gallery[~gallery.index.isin(queries.index)]])
    embedder = load_checkpoint(checkpoint).embedder.eval()
    emb = embed_frame(embedder, rows, batch_size=7).numpy()
    return calibrate_open_set(emb, rows["label"].astype(str).to_numpy(), target_fpir=target, seed=seed)


def _check_against(stored: dict, expected, n_objects: int) -> None:
    assert stored["method"] == "object-profiles" and stored["score"] in SCORES
    assert stored["score"] == expected.score and stored["size_range"] == [1, 2 * n_objects]
    got = np.array(stored["thresholds"], dtype=float)
    np.testing.assert_allclose(got, np.array(expected.thresholds, dtype=float), rtol=1e-5, atol=1e-6)
    assert stored["calibration_objects"] == n_objects and stored["split"] == "val"


def test_best_checkpoint_gets_the_open_set_record_and_metrics_the_figures(tmp_path):
    ckpt, config, history = _setup(tmp_path, {"target_fpir": 0.1})
    queries, gallery = _val(tmp_path)
    console = Console(record=True, width=400)
    record = calibrate_checkpoint_on_val(
        ckpt, (queries, gallery), config, history=history, console=console, device="cpu", epoch=2, step=9
    )
    assert record is not None
    reopened = _reopen(ckpt)
    stored = reopened["record"]
    assert stored["target_fpir"] == 0.1 and stored["seed"] == 3 and stored["calibration_images"] == 24
    expected = _independent(ckpt, queries, gallery, target=0.1, seed=3)
    _check_against(stored, expected, n_objects=6)
    assert reopened["model_threshold"] == pytest.approx(expected.threshold_for(6), rel=1e-5)
    assert load_checkpoint(ckpt).extra["epoch"] == 2  # the rest of best.pt is kept

    (logged,) = _records(tmp_path / "run")
    assert {k: logged[k] for k in ("split", "calibrated_on", "epoch", "step")} == {
        "split": "calibration", "calibrated_on": "val", "epoch": 2, "step": 9,
    }  # fmt: skip
    assert logged["target_fpir"] == 0.1 and logged["score"] == stored["score"]
    assert logged["threshold"] == pytest.approx(record.threshold_for(6)) == reopened["model_threshold"]
    assert logged["size_range"] == [1, 12] and logged["method"] == "object-profiles"
    assert (logged["calibration_objects"], logged["calibration_images"]) == (6, 24)
    assert logged["fnir_at_target"] == stored["fnir_at_target"] and set(logged["fnir_at_target"]) == set(
        SCORES
    )
    assert not any("far" in key or key in ("tar", "roc_auc", "eer") for key in logged)  # FRVT names only
    text = console.export_text()
    assert (
        f"match decision calibrated on val for FPIR 0.1, stored in best.pt: decision score {logged['score']}"
        in text
    )
    assert f"threshold {logged['threshold']:.4f} for a gallery of 6 objects (the val split's)" in text
    assert "galleries of 1-12 objects covered; FNIR at the target FPIR: nearest " in text
    assert "(6 objects / 24 images)" in text


def test_off_when_target_fpir_is_null(tmp_path):
    ckpt, config, history = _setup(tmp_path, {"target_fpir": None})
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
    assert out is None and ckpt.read_bytes() == before and _records(tmp_path / "run") == []


def test_a_val_split_with_fewer_than_4_classes_is_skipped_with_its_reason(tmp_path):
    ckpt, config, history = _setup(tmp_path, {"target_fpir": 0.05})
    before = ckpt.read_bytes()
    console = Console(record=True, width=300)
    out = calibrate_checkpoint_on_val(
        ckpt,
        _val(tmp_path, n_classes=3),
        config,
        history=history,
        console=console,
        device="cpu",
        epoch=1,
        step=4,
    )
    assert out is None and ckpt.read_bytes() == before
    reason = "split 'val' has 3 classes; calibration needs at least 4 classes"
    assert f"match decision not calibrated: {reason}" in console.export_text()
    (logged,) = _records(tmp_path / "run")
    assert logged["split"] == "calibration" and reason in logged["skipped"]
    assert (logged["target_fpir"], logged["epoch"], logged["step"]) == (
        0.05,
        1,
        4,
    ) and "threshold" not in logged
    assert _reopen(ckpt) == {"record": None, "model_threshold": None}


def test_fit_leaves_best_checkpoint_calibrated_for_the_configs_target_fpir(image_folder, tmp_path):
    from lookalike.data import read_manifest
    from lookalike.evaluation import split_frames
    from lookalike.training import fit

    config = validate_config(
        {
            "data": {"root": str(image_folder), "val": 0.4, "test": 0.2, "seed": 1},
            "model": {"backbone": "convnet4", "embed_dim": 8, "image_size": 24},
            "sampler": {"p": 3, "k": 2},
            "train": {"epochs": 1, "steps_per_epoch": 2, "device": "cpu"},
            "eval": {"ks": [1, 2], "target_fpir": 0.2},
        }
    )
    run = tmp_path / "run"
    result = fit(config, run, console=Console(quiet=True))
    best = run / "checkpoints" / "best.pt"
    reopened = _reopen(best)
    stored = reopened["record"]
    queries, gallery = split_frames(read_manifest(run / "split.csv"), "val")
    n_objects = pd.concat([queries, gallery])["label"].nunique()
    assert n_objects >= 4 and stored["target_fpir"] == 0.2 and stored["seed"] == 1
    _check_against(stored, _independent(best, queries, gallery, target=0.2, seed=1), n_objects)
    (logged,) = [r for r in _records(run) if r["split"] == "calibration"]
    assert "skipped" not in logged and logged["epoch"] == result.best_epoch
    assert result.calibration == {k: logged[k] for k in result.calibration}
    assert logged["threshold"] == pytest.approx(reopened["model_threshold"])
