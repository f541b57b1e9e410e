"""`lookalike index` with a calibration for a target FPIR: the threshold set for the gallery's size on
build, and set again on add and remove (folder and Milvus Lite); the alias; the size-range warning;
a frozen backbone end to end; the record reopened in a new process."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from cli_gallery_helpers import image_folder, tiny_checkpoint
from typer.testing import CliRunner

from lookalike.calibration import read_calibration
from lookalike.calibration.adaptive import fit_arrays
from lookalike.cli import app
from lookalike.data import manifest_from_folder, split_manifest, write_manifest
from lookalike.gallery import open_gallery

runner = CliRunner()
SHARED = Path(__file__).resolve().parents[3] / "shared"
WEIGHTS = SHARED / "weights" / "mobilenetv2_100.imagenet.safetensors"


def _milvus_missing() -> str | None:
    try:
        import milvus_lite  # noqa: F401
        import pymilvus  # noqa: F401
    except Exception as e:
        return f"Milvus Lite is not importable here ({e})"
    return None


BACKENDS = [
    "folder",
    pytest.param(
        "milvus-lite", marks=pytest.mark.skipif(_milvus_missing() is not None, reason="no Milvus Lite")
    ),
]


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A tiny checkpoint, and a split manifest of 20 classes (val: 6 to calibrate on), plus the test
    rows cut in two manifests by label: the first gallery, and what `index add` brings."""
    root = tmp_path_factory.mktemp("index_cal")
    ckpt = tiny_checkpoint(root / "model.pt")
    images = image_folder(root / "images", classes=20, per_class=4)
    frame = split_manifest(manifest_from_folder(images), val=0.3, test=0.5, seed=1).frame
    manifest = write_manifest(frame, root / "split.csv")
    test = frame[frame["split"] == "test"]
    labels = sorted(test["label"].unique())
    first = write_manifest(test[test["label"].isin(labels[:3])], root / "first.csv")
    more = write_manifest(test[test["label"].isin(labels[3:])], root / "more.csv")
    return {
        "ckpt": ckpt,
        "manifest": manifest,
        "first": first,
        "more": more,
        "labels": labels,
        "images": images,
    }


def _location(backend: str, tmp_path: Path) -> tuple[str, str]:
    if backend == "folder":
        return "--out", str(tmp_path / "g")
    return "--store", f"milvus-lite:{tmp_path / 'g.db'}"


def _header(location: str):
    with open_gallery(location) as store:
        return store.header, int(store.items()["label"].nunique())


def _own_threshold(location: str, record) -> float:
    """The threshold the gallery as it is should have: the record pooled with its own images' searches
    (lookalike.calibration.adaptive), searched exactly on the stored vectors."""
    with open_gallery(location) as store:
        return fit_arrays(record, store.vectors(), store.items()["label"].astype(str).to_numpy()).threshold


@pytest.mark.parametrize("backend", BACKENDS)
def test_threshold_set_for_the_size_on_build_add_and_remove(data, tmp_path, backend):
    flag, location = _location(backend, tmp_path)
    calibrate = ["--target-fpir", 0.1, "--calibrate-on", data["manifest"], "--calibrate-split", "val"]
    r = invoke(
        "index",
        "build",
        "--checkpoint",
        data["ckpt"],
        "--manifest",
        data["first"],
        flag,
        location,
        *calibrate,
    )
    assert r.exit_code == 0, r.output
    header, n = _header(location)
    record = read_calibration(header.calibration, threshold=header.threshold)
    assert n == 3 and record.method == "object-profiles" and record.target_fpir == 0.1
    assert record.figures["split"] == "val" and record.figures["gallery_objects"] == 3
    assert header.threshold == pytest.approx(_own_threshold(location, record), abs=1e-5)
    assert f"match threshold set to {header.threshold:.4f} for 3 objects" in r.stderr

    r = invoke("index", "add", location, "--manifest", data["more"])
    assert r.exit_code == 0, r.output
    header, n = _header(location)
    assert n == len(data["labels"]) and read_calibration(header.calibration).figures["gallery_objects"] == n
    assert header.threshold == pytest.approx(_own_threshold(location, record), abs=1e-5)
    with open_gallery(location) as store:
        assert read_calibration(header.calibration).figures["gallery_probes"] == len(store)
    assert f"re-derived to {header.threshold:.4f} for {n} objects" in r.stderr

    r = invoke("index", "remove", location, "--label", data["labels"][0], "--label", data["labels"][1])
    assert r.exit_code == 0, r.output
    header, n2 = _header(location)
    assert n2 == n - 2 and header.threshold == pytest.approx(_own_threshold(location, record), abs=1e-5)
    assert f"for {n - 2} objects" in r.stderr

    info = invoke("index", "info", location)
    assert info.exit_code == 0, info.output
    lo, hi = record.size_range
    assert "target FPIR" in info.stdout and f"{lo}-{hi}" in info.stdout
    assert f"{n - 2} objects" in info.stdout and record.score in info.stdout
    assert "pooled with" in info.stdout and "searched as non-mated" in info.stdout


def test_target_far_on_index_build_is_an_alias_that_says_so(data, tmp_path):
    r = invoke("index", "build", "--checkpoint", data["ckpt"], "--manifest", data["first"], "--out",
               tmp_path / "g", "--target-far", 0.1, "--calibrate-on", data["manifest"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "--target-far is an alias of --target-fpir" in r.stderr
    header, _ = _header(str(tmp_path / "g"))
    assert read_calibration(header.calibration).target_fpir == 0.1
    both = ["--threshold", 0.3, "--target-fpir", 0.1, "--calibrate-on", data["manifest"]]
    r = invoke(
        "index",
        "build",
        "--checkpoint",
        data["ckpt"],
        "--manifest",
        data["first"],
        "--out",
        tmp_path / "g2",
        *both,
    )
    assert r.exit_code == 1 and "either --threshold or --target-fpir" in r.stderr
    assert not (tmp_path / "g2").exists()


def test_a_gallery_outside_the_calibrated_range_warns(data, tmp_path):
    from lookalike.gallery.matcher import CalibrationRangeWarning, Matcher

    g = tmp_path / "g"
    r = invoke("index", "build", "--checkpoint", data["ckpt"], "--manifest", data["more"], "--out", g,
               "--target-fpir", 0.1, "--calibrate-on", data["manifest"])  # fmt: skip
    assert r.exit_code == 0, r.output
    with open_gallery(g, writable=True) as store:  # a calibration that covers 1-2 objects only
        stored = dict(store.header.calibration, size_range=[1, 2])
        store.set_threshold(store.header.threshold, stored)
        n = int(store.items()["label"].nunique())
    query = next(Path(data["images"]).rglob("*.png"))
    r = invoke("search", "--gallery", g, query, "--json")
    assert r.exit_code == 0, r.output
    assert (
        f"warning: the gallery holds {n} objects, outside the 1-2 objects its calibration covers" in r.stderr
    )
    assert "warning" in invoke("index", "info", g).stdout
    with pytest.warns(CalibrationRangeWarning, match=f"holds {n} objects"):
        Matcher.open(g).close()
    with warnings.catch_warnings():  # within the range: silent
        warnings.simplefilter("error", CalibrationRangeWarning)
        with open_gallery(g, writable=True) as store:
            store.set_threshold(store.header.threshold, dict(stored, size_range=[1, 1000]))
        Matcher.open(g).close()


@pytest.mark.skipif(not WEIGHTS.is_file(), reason=f"shared weights not found at {WEIGHTS}")
def test_frozen_backbone_build_add_search(data, tmp_path):
    g = tmp_path / "g"
    model = ["--backbone", "mobilenetv2_100", "--weights", WEIGHTS]
    calibrate = ["--target-fpir", 0.05, "--calibrate-on", data["manifest"], "--calibrate-split", "val"]
    r = invoke(
        "index", "build", *model, "--image-size", 32, "--manifest", data["first"], "--out", g, *calibrate
    )
    assert r.exit_code == 0, r.output
    r = invoke("index", "add", g, *model, "--manifest", data["more"])
    assert r.exit_code == 0, r.output
    assert "re-derived" in r.stderr
    header, _ = _header(str(g))
    record = read_calibration(header.calibration)
    queries = sorted(Path(data["images"]).rglob("*.png"))[:3]
    r = invoke("search", "--gallery", g, *model, "--json", *queries)
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(lines) == 3
    for line in lines:
        assert line["decision"] in ("match", "no match") and line["score_name"] == record.score
        assert line["threshold"] == pytest.approx(_own_threshold(str(g), record), abs=1e-5)
        assert (line["decision"] == "match") == (line["score"] <= line["threshold"])
        assert all("label" in nb for nb in line["neighbours"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_record_reopens_in_a_new_process(data, tmp_path, backend):
    """Written by one process (the CLI), read by another: the gallery's record and threshold, and a
    calibrated checkpoint's record."""
    flag, location = _location(backend, tmp_path)
    build = [sys.executable, "-m", "lookalike", "index", "build", "--checkpoint", str(data["ckpt"])]
    build += ["--manifest", str(data["first"]), flag, location]
    build += ["--target-fpir", "0.1", "--calibrate-on", str(data["manifest"])]
    done = subprocess.run(build, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    ckpt = tmp_path / "cal.pt"
    r = invoke("calibrate", "--checkpoint", data["ckpt"], "--manifest", data["manifest"], "--out", ckpt)
    assert r.exit_code == 0, r.output
    code = (
        "import json, sys\n"
        "from lookalike.calibration import read_calibration\n"
        "from lookalike.gallery import open_gallery\n"
        "from lookalike.models.inference import load_inference_model\n"
        "with open_gallery(sys.argv[1]) as s:\n"
        "    g, t = read_calibration(s.header.calibration), s.header.threshold\n"
        "m = read_calibration(load_inference_model(checkpoint=sys.argv[2]).calibration)\n"
        "print(json.dumps([g.to_dict(), t, m.to_dict()]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, location, str(ckpt)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    stored, threshold, model_record = json.loads(out.stdout.splitlines()[-1])
    record = read_calibration(stored)
    assert record.method == "object-profiles" and record.target_fpir == 0.1
    assert record.figures["gallery_objects"] == 3 and record.non_mated  # its non-mated scores, for adds
    assert threshold == pytest.approx(_own_threshold(location, record), abs=1e-5)
    assert f"match threshold set to {threshold:.4f} for 3 objects" in done.stderr
    again = read_calibration(model_record)
    assert again.target_fpir == 0.05 and again.to_dict() == model_record
    assert len(again.thresholds) == len(record.thresholds)
