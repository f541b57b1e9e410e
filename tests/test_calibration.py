"""Checkpoints calibrated by an older lookalike (one threshold for a false accept rate, stored as the
FAR procedure wrote it) still open, in a new process, with that threshold as a ``fixed`` record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from lookalike.calibration import read_calibration
from lookalike.models import create_embedder_from, load_checkpoint, save_checkpoint

SRC = Path(__file__).resolve().parents[1] / "src"

#: ``extra["calibration"]`` exactly as the FAR calibration wrote it (threshold for FAR <= 0.01 on val).
FAR_ERA_CALIBRATION = {
    "threshold": {
        "value": 0.31, "far": 0.0073, "tar": 0.161, "frr": 0.839, "precision": 0.93, "f1": 0.27,
        "higher_is_closer": False, "method": "far", "target_far": 0.01,
    },
    "roc_auc": 0.822, "eer": 0.25, "tar_at_far": 0.161, "far": 0.0073, "tar": 0.161, "target_far": 0.01,
    "n_genuine": 180, "n_impostor": 137, "n_open_set": 96, "n_queries": 317, "n_classes": 24,
    "n_held_out_classes": 12, "open_set_share": 0.5, "seed": 0, "distance": "euclidean", "split": "val",
    "queries": "all", "warnings": [],
}  # fmt: skip

_REOPEN = """
import json, sys
from lookalike.calibration import read_calibration
from lookalike.models.inference import load_inference_model
model = load_inference_model(checkpoint=sys.argv[1])
record = read_calibration(model.calibration)
print(json.dumps({
    "threshold": model.threshold.value, "threshold_method": model.threshold.method,
    "threshold_target_far": model.threshold.target_far, "calibration": model.calibration,
    "method": record.method, "target": record.target_fpir, "thresholds": record.thresholds,
    "size_range": record.size_range, "for_sizes": [record.threshold_for(n) for n in (1, 24, 10000)],
    "written_back": record.to_dict(),
}))
"""


def test_a_far_era_checkpoint_opens_in_a_new_process_with_its_one_threshold(tmp_path):
    torch.manual_seed(0)
    emb = create_embedder_from("convnet4", image_size=16, embed_dim=8, backbone_kwargs={"width": 8})
    path = save_checkpoint(tmp_path / "old.pt", emb, extra={"epoch": 3, "calibration": FAR_ERA_CALIBRATION})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-c", _REOPEN, str(path)], capture_output=True, text=True, env=env, check=False
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert (seen["threshold"], seen["threshold_method"], seen["threshold_target_far"]) == (0.31, "far", 0.01)
    assert seen["calibration"] == FAR_ERA_CALIBRATION
    assert seen["method"] == "fixed" and seen["thresholds"] == [[1, 0.31]] and seen["size_range"] is None
    assert seen["target"] == 0.01 and seen["for_sizes"] == [0.31, 0.31, 0.31]  # one threshold for every size
    assert seen["written_back"] == FAR_ERA_CALIBRATION  # kept in the shape older lookalikes read
    assert load_checkpoint(path).extra["epoch"] == 3


def test_older_records_without_a_threshold_read_as_none():
    assert read_calibration(None) is None
    assert read_calibration({"roc_auc": 0.9, "target_far": 0.01}) is None  # figures, no threshold
    record = read_calibration({"roc_auc": 0.9}, threshold=0.4)  # a gallery header's threshold stands in
    assert record.method == "fixed" and record.threshold_for(7) == 0.4 and record.target_fpir is None
