"""`lookalike train` and `lookalike evaluate` through the CLI."""

import json
from pathlib import Path

import numpy as np
import yaml
from PIL import Image
from typer.testing import CliRunner

from lookalike.cli import app

runner = CliRunner()


def _images(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for c in range(8):
        for i in range(5):
            (root / f"c{c}").mkdir(parents=True, exist_ok=True)
            arr = np.full((20, 20, 3), c * 30, dtype=np.uint8) + rng.integers(
                0, 20, (20, 20, 3), dtype=np.uint8
            )
            Image.fromarray(arr).save(root / f"c{c}" / f"{i}.png")
    return root


def _config(tmp_path: Path) -> Path:
    cfg = {
        "data": {"root": str(_images(tmp_path / "imgs")), "val": 0.25, "test": 0.25},
        "model": {"backbone": "convnet4", "embed_dim": 8, "image_size": 20},
        "sampler": {"p": 2, "k": 2},
        "train": {"epochs": 1, "steps_per_epoch": 2},
        "eval": {"ks": [1, 5]},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_train_then_evaluate_checkpoint(tmp_path):
    cfg = _config(tmp_path)
    run = tmp_path / "run"
    res = runner.invoke(app, ["train", "--config", str(cfg), "--out", str(run), "--set", "optim.lr=1e-3"])
    assert res.exit_code == 0, res.output
    assert "baseline (before training)" in res.output
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["optim"]["lr"] == 1e-3
    out = tmp_path / "test_metrics.json"
    res = runner.invoke(
        app,
        [
            "evaluate",
            "--checkpoint",
            str(run / "checkpoints" / "best.pt"),
            "--manifest",
            str(run / "split.csv"),
            "--split",
            "test",
            "--ks",
            "1,5",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    written = json.loads(out.read_text())
    metrics = written.get("metrics", written)
    # the CLI's numbers are the ones the training run logged for the same weights and split
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    final_test = [r for r in logged if r["split"] == "test"][-1]
    for key in ("hit_rate@1", "recall@5", "map@r"):
        assert abs(metrics[key] - final_test[key]) < 1e-6, key


def test_train_rejects_unknown_config_key_listing_valid_ones(tmp_path):
    cfg = _config(tmp_path)
    res = runner.invoke(
        app, ["train", "--config", str(cfg), "--out", str(tmp_path / "r"), "--set", "train.epoch=3"]
    )
    assert res.exit_code == 2
    assert "train.epoch: unknown key" in res.output and "epochs" in res.output
    assert not (tmp_path / "r").exists()


def test_evaluate_unknown_split_is_a_clear_error(tmp_path):
    cfg = _config(tmp_path)
    run = tmp_path / "run"
    assert runner.invoke(app, ["train", "--config", str(cfg), "--out", str(run)]).exit_code == 0
    res = runner.invoke(
        app,
        [
            "evaluate",
            "--checkpoint",
            str(run / "checkpoints" / "last.pt"),
            "--manifest",
            str(run / "split.csv"),
            "--split",
            "holdout",
        ],
    )
    assert res.exit_code == 1 and "holdout" in res.output and "splits present" in res.output


def test_train_says_target_far_is_an_alias_and_succeeds_when_val_cannot_calibrate(tmp_path):
    cfg = _config(tmp_path)  # 2 val classes: too few to calibrate the match decision
    run = tmp_path / "run"
    args = ["train", "--config", str(cfg), "--out", str(run), "--set", "eval.target_far=0.3"]
    res = runner.invoke(app, [*args, "--set", "train.epochs=0"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "warning: eval.target_far is a deprecated alias of eval.target_fpir" in text
    assert "match decision not calibrated: split 'val' has 2 classes; calibration needs at least 4" in text
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["eval"]["target_fpir"] == 0.3 and "target_far" not in saved["eval"]
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    (calibration,) = [r for r in logged if r["split"] == "calibration"]
    assert calibration["target_fpir"] == 0.3 and "at least 4 classes" in calibration["skipped"]
    assert (run / "checkpoints" / "best.pt").exists()
