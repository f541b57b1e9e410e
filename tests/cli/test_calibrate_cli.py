"""`lookalike calibrate` and `lookalike evaluate --backbone` through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from lookalike.cli import app
from lookalike.models import create_embedder_from, save_checkpoint
from lookalike.models.inference import load_inference_model

runner = CliRunner()
SHARED = Path(__file__).resolve().parents[3] / "shared"
OMNIGLOT = SHARED / "data" / "omniglot-small"


@pytest.fixture
def mobilenet_weights() -> Path:
    path = SHARED / "weights" / "mobilenetv2_100.imagenet.safetensors"
    if not path.is_file():
        pytest.skip(f"shared weights not found at {path} (a fresh clone has no ../shared)")
    return path


def _manifest(root: Path, n_val_classes: int = 6) -> Path:
    rng = np.random.default_rng(1)
    rows = []
    for c in range(n_val_classes + 2):
        for i in range(4):
            path = root / f"c{c}_{i}.png"
            arr = np.full((16, 16, 3), c * 30, dtype=np.uint8) + rng.integers(
                0, 40, (16, 16, 3), dtype=np.uint8
            )
            Image.fromarray(arr).save(path)
            split = "train" if c < 2 else "val"
            role = "train" if c < 2 else ("query" if i == 0 else "gallery")
            rows.append({"path": path.name, "label": f"c{c}", "split": split, "role": role})
    out = root / "split.csv"
    pd.DataFrame(rows).to_csv(out, index=False)
    return out


def _checkpoint(root: Path) -> Path:
    torch.manual_seed(0)
    emb = create_embedder_from("convnet4", image_size=16, embed_dim=8, backbone_kwargs={"width": 8})
    return save_checkpoint(root / "m.pt", emb)


def test_calibrate_writes_a_new_checkpoint_that_loads_with_the_record(tmp_path):
    from lookalike.calibration import read_calibration
    from lookalike.calibration.open_set import calibrate_model
    from lookalike.data import read_manifest

    manifest, ckpt = _manifest(tmp_path), _checkpoint(tmp_path)
    original = ckpt.read_bytes()
    res = runner.invoke(
        app, ["calibrate", "--checkpoint", str(ckpt), "--manifest", str(manifest), "--target-fpir", "0.2"]
    )
    assert res.exit_code == 0, res.output
    assert "decision score" in res.output and "FNIR at the target, ratio" in res.output
    assert "alias" not in res.output
    out = tmp_path / "m.calibrated.pt"
    assert ckpt.read_bytes() == original  # not --in-place: the checkpoint is untouched
    model = load_inference_model(checkpoint=out)
    record = read_calibration(model.calibration)
    expected = calibrate_model(
        load_inference_model(checkpoint=ckpt), read_manifest(manifest), target_fpir=0.2
    )
    np.testing.assert_allclose(np.asarray(record.thresholds), np.asarray(expected.thresholds), rtol=1e-5)
    assert record.score == expected.score
    assert record.target_fpir == 0.2 and record.figures["split"] == "val"
    assert record.figures["calibration_objects"] == 6 and record.size_range == (1, 12)
    assert model.threshold.value == pytest.approx(record.threshold_for(6))
    assert f"{record.threshold_for(100):.6g}" in res.output


def test_target_far_is_an_alias_that_says_so(tmp_path):
    manifest, ckpt = _manifest(tmp_path), _checkpoint(tmp_path)
    args = ["calibrate", "--checkpoint", str(ckpt), "--manifest", str(manifest), "--json", "--in-place"]
    res = runner.invoke(app, [*args, "--target-far", "0.25"])
    assert res.exit_code == 0, res.output
    assert "--target-far is an alias of --target-fpir" in res.stderr
    assert json.loads(res.stdout)["target_fpir"] == 0.25
    res = runner.invoke(app, [*args, "--target-far", "0.25", "--target-fpir", "0.1"])
    assert res.exit_code == 1 and "not both" in res.stderr


def test_json_output_and_in_place(tmp_path):
    manifest, ckpt = _manifest(tmp_path), _checkpoint(tmp_path)
    args = ["calibrate", "--checkpoint", str(ckpt), "--manifest", str(manifest), "--json", "--seed", "4"]
    res = runner.invoke(app, [*args, "--in-place", "--target-fpir", "0.25", "--score", "ratio"])
    assert res.exit_code == 0, res.output
    figures = json.loads(res.stdout)
    assert figures["written"] == str(ckpt) and figures["seed"] == 4 and figures["score"] == "ratio"
    for key in ("target_fpir", "method", "thresholds", "size_range", "fnir_at_target", "split", "depth"):
        assert key in figures
    model = load_inference_model(checkpoint=ckpt)
    assert model.calibration["thresholds"] == figures["thresholds"]


def test_backbone_mode_writes_json(tmp_path):
    manifest = _manifest(tmp_path)
    out = tmp_path / "cal.json"
    args = ["calibrate", "--backbone", "convnet4", "--image-size", "16", "--manifest", str(manifest)]
    res = runner.invoke(app, [*args, "--out", str(out), "--target-fpir", "0.3"])
    assert res.exit_code == 0, res.output
    saved = json.loads(out.read_text())
    assert saved["model"] == "backbone:convnet4" and saved["target_fpir"] == 0.3
    assert len(saved["model_fingerprint"]) == 64
    res = runner.invoke(app, args)
    assert res.exit_code == 1 and "give --out FILE.json" in res.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--in-place", "--out", "x.pt"], "give --out NEW.pt or --in-place, not both"),
        (["--out", "CKPT"], "is the checkpoint itself; say --in-place"),
        (["--split", "test"], "no rows of split 'test'; splits present: ['train', 'val']"),
        (["--target-fpir", "0"], "target_fpir must be a rate in (0, 1)"),
        (["--open-set-share", "1"], "open_set_share must be in (0, 1)"),
        (["--score", "closest"], "unknown decision score 'closest'"),
    ],
)
def test_errors_leave_the_checkpoint_alone(tmp_path, extra, message):
    manifest, ckpt = _manifest(tmp_path), _checkpoint(tmp_path)
    original = ckpt.read_bytes()
    extra = [str(ckpt) if a == "CKPT" else a for a in extra]
    res = runner.invoke(app, ["calibrate", "--checkpoint", str(ckpt), "--manifest", str(manifest), *extra])
    assert res.exit_code == 1, res.output
    assert message in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert ckpt.read_bytes() == original
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["m.pt"]


def test_a_val_split_of_one_class_is_refused(tmp_path):
    manifest, ckpt = _manifest(tmp_path, n_val_classes=1), _checkpoint(tmp_path)
    res = runner.invoke(app, ["calibrate", "--checkpoint", str(ckpt), "--manifest", str(manifest)])
    assert res.exit_code == 1 and "at least 4 classes" in res.output


def test_evaluate_with_a_frozen_backbone(tmp_path, mobilenet_weights):
    manifest = _manifest(tmp_path)
    out = tmp_path / "m.json"
    args = [
        "evaluate",
        "--backbone",
        "mobilenetv2_100",
        "--weights",
        str(mobilenet_weights),
        "--image-size",
        "32",
    ]
    res = runner.invoke(
        app, [*args, "--manifest", str(manifest), "--split", "val", "--ks", "1,3", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    payload = json.loads(out.read_text())
    assert payload["model"] == "backbone:mobilenetv2_100" and payload["n_queries"] == 6
    assert 0.0 <= payload["metrics"]["hit_rate@1"] <= payload["metrics"]["hit_rate@3"] <= 1.0
    res = runner.invoke(app, ["evaluate", "--manifest", str(manifest)])
    assert res.exit_code == 1 and "choose a model" in res.output


@pytest.mark.skipif(
    not OMNIGLOT.is_dir(), reason=f"real data not found at {OMNIGLOT} (a fresh clone has no ../shared)"
)
def test_calibrate_on_omniglot_val(tmp_path):
    from lookalike.data import manifest_from_folder, split_manifest, write_manifest

    split = split_manifest(manifest_from_folder(OMNIGLOT), val=0.1, test=0.2, seed=0)
    manifest = write_manifest(split.frame, tmp_path / "split.parquet")
    ckpt = _checkpoint(tmp_path)
    res = runner.invoke(
        app,
        [
            "calibrate",
            "--checkpoint",
            str(ckpt),
            "--manifest",
            str(manifest),
            "--json",
            "--target-fpir",
            "0.05",
        ],
    )
    assert res.exit_code == 0, res.output
    figures = json.loads(res.stdout)
    assert figures["calibration_objects"] == 24 and figures["calibration_images"] == 480
    assert figures["size_range"] == [1, 48] and figures["score"] in ("nearest", "ratio", "znorm")
    sizes = [n for n, _ in figures["thresholds"]]
    assert sizes == sorted(sizes) and sizes[0] == 1 and sizes[-1] >= 1 << 20
