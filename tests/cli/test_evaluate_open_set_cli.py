"""The open-set options of `lookalike evaluate-embeddings` and `lookalike evaluate`: FNIR at FPIR,
the DET plot, --gallery-sizes, --distractors, and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from lookalike.cli import app
from lookalike.evaluation import EvalSet, evaluate_open_set, load_embeddings

runner = CliRunner()
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture()
def toy(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 20, 400)
    centres = rng.standard_normal((20, 8)) * 1.5
    emb = (centres[labels] + rng.standard_normal((400, 8))).astype(np.float32)
    roles = np.where(np.arange(400) < 100, "query", "gallery")
    path = tmp_path / "toy.npz"
    np.savez(path, embeddings=emb, labels=labels.astype(str), roles=roles)
    np.save(tmp_path / "distractors.npy", (rng.standard_normal((30, 8)) * 2).astype(np.float32))
    return path


def test_gallery_sizes_json_and_plots(toy: Path) -> None:
    out = toy.with_name("m.json")
    res = runner.invoke(
        app, ["evaluate-embeddings", str(toy), "--gallery-sizes", "4,8,16", "--draws", "2", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    rows = doc["open_set"]["fnir_at_fpir"]
    assert {(r["score"], r["fpir"]) for r in rows} >= {("nearest", t) for t in (0.1, 0.05, 0.01, 0.001)}
    assert all(set(r) >= {"fnir", "fnir_ci95", "n_mated", "n_non_mated", "threshold"} for r in rows)
    sizes = doc["gallery_sizes"]
    assert sizes["unit"] == "enrolled classes"
    assert [p["size_classes"] for p in sizes["points"]] == [4, 8, 16]
    assert all(p["draws"] == 2 and {"hit_rate@1", "map@r"} <= set(p) for p in sizes["points"])
    # the same numbers as the Python API on the same table and seed
    expected = evaluate_open_set(EvalSet.from_table(load_embeddings(toy)), gallery_sizes=[4, 8, 16], draws=2)
    for got, want in zip(sizes["points"], expected.sizes, strict=True):
        assert got["hit_rate@1"] == pytest.approx(want.hit_rate_at_1)
        assert got["fnir_at_fpir"][1]["fnir"] == pytest.approx(want.fnir_at_fpir[1].fnir)
    assert rows[1]["fnir"] == pytest.approx(expected.report.fnir_at_fpir[1].fnir)
    assert doc["metrics"]["hit_rate@1"] is not None  # the retrieval metrics are still there
    for name in ("m.det.png", "m.sizes.png"):
        assert (toy.parent / name).read_bytes().startswith(PNG)
    assert "by gallery size (enrolled classes)" in res.output and "FNIR at FPIR" in res.output


def test_distractors_grow_the_gallery_by_images(toy: Path) -> None:
    out = toy.with_name("d.json")
    det = toy.with_name("plots") / "det.png"
    res = runner.invoke(
        app,
        [
            "evaluate-embeddings",
            str(toy),
            "--distractors",
            str(toy.with_name("distractors.npy")),
            "--out",
            str(out),
            "--det-plot",
            str(det),
        ],
    )
    assert res.exit_code == 0, res.output
    points = json.loads(out.read_text())["gallery_sizes"]
    assert points["unit"] == "distractor images"
    assert [p["n_distractors"] for p in points["points"]] == [0, 10, 30]
    images = [p["size_images"] for p in points["points"]]
    assert images[1] - images[0] == 10 and images[2] - images[0] == 30
    assert len({p["size_classes"] for p in points["points"]}) == 1  # the enrolled classes stay
    assert det.read_bytes().startswith(PNG)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--gallery-sizes", "4", "--distractors", "x.npy"], "not both"),
        (["--gallery-sizes", "0,4"], "positive integers"),
        (["--gallery-sizes", "99"], "enrolled classes in [1, 20]"),
        (["--non-mated-share", "1.5"], "--non-mated-share must be in (0, 1)"),
        (["--distance", "dot", "--gallery-sizes", "4"], "need a gallery distance"),
    ],
)
def test_bad_open_set_options_are_one_line_errors(toy: Path, args: list[str], message: str) -> None:
    out = toy.with_name("bad.json")
    res = runner.invoke(app, ["evaluate-embeddings", str(toy), "--out", str(out), *args])
    assert res.exit_code == 2
    assert message in res.output.replace("\n", " ")
    assert not out.exists()


def test_a_distance_no_gallery_uses_skips_the_open_set_part(toy: Path) -> None:
    out = toy.with_name("dot.json")
    res = runner.invoke(app, ["evaluate-embeddings", str(toy), "--distance", "dot", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "open_set" not in json.loads(out.read_text()) and "no open-set figures" in res.output


def _split_manifest(root: Path) -> Path:
    from lookalike.data import manifest_from_folder, split_manifest, write_manifest

    rng = np.random.default_rng(1)
    for c in range(12):
        (root / "imgs" / f"c{c}").mkdir(parents=True)
        for i in range(4):
            arr = np.full((16, 16, 3), c * 20, np.uint8) + rng.integers(0, 12, (16, 16, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / "imgs" / f"c{c}" / f"{i}.png")
    (root / "distr").mkdir()
    for i in range(12):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(root / "distr" / f"{i}.png")
    split = split_manifest(manifest_from_folder(root / "imgs"), val=0.0, test=0.84, seed=0).frame
    return write_manifest(split, root / "split.csv")


def test_evaluate_a_backbone_with_sizes_and_a_distractor_folder(tmp_path: Path) -> None:
    manifest = _split_manifest(tmp_path)
    assert pd.read_csv(manifest).query("split == 'test'")["label"].nunique() == 10
    base = [
        "evaluate",
        "--backbone",
        "convnet4",
        "--image-size",
        "16",
        "--manifest",
        str(manifest),
        "--device",
        "cpu",
        "--ks",
        "1",
    ]
    out = tmp_path / "sizes.json"
    res = runner.invoke(app, [*base, "--gallery-sizes", "3,6", "--out", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert [p["size_classes"] for p in doc["gallery_sizes"]["points"]] == [3, 6]
    assert doc["open_set"]["n_classes"] == 10 and doc["open_set"]["n_enrolled_classes"] == 8
    out = tmp_path / "distr.json"
    res = runner.invoke(app, [*base, "--distractors", str(tmp_path / "distr"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    points = json.loads(out.read_text())["gallery_sizes"]["points"]
    assert [p["n_distractors"] for p in points] == [0, 10, 12]
    res = runner.invoke(app, [*base, "--distractors", str(tmp_path / "nope")])
    assert res.exit_code == 1 and "no such distractors folder or manifest" in res.output


def test_a_calibration_record_sets_the_threshold_for_each_gallery_size(toy: Path) -> None:
    from rich.console import Console

    from lookalike.calibration import CalibrationRecord
    from lookalike.cli._open_set import OpenSetOptions, run_open_set

    record = CalibrationRecord(
        method="object-profiles", target_fpir=0.05, thresholds=((1, 1.2), (100, 0.2)), score="ratio"
    )
    data = EvalSet.from_table(load_embeddings(toy))
    payload = run_open_set(
        data,
        OpenSetOptions(gallery_sizes="4,10"),
        distance="euclidean",
        distractors=None,
        calibration=record,
        json_path=None,
        console=Console(quiet=True),
    )
    base = payload["open_set"]["at_threshold"]
    assert base["score"] == "ratio" and base["threshold"] == pytest.approx(record.threshold_for(15))  # 20 - 5
    points = payload["gallery_sizes"]["points"]
    assert [p["at_threshold"]["threshold"] for p in points] == pytest.approx(
        [record.threshold_for(4), record.threshold_for(10)]
    )
    assert points[0]["at_threshold"]["threshold"] > points[1]["at_threshold"]["threshold"]
