"""The demo end to end at a reduced size (few characters, one short epoch), and its CLI errors."""

from __future__ import annotations

import json
import re
import urllib.error
from pathlib import Path

import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from lookalike.cli import app
from lookalike.data.builtin import GlyphsSpec
from lookalike.demo import DEMO_CONFIG, demo_config, run_demo

REPO = Path(__file__).resolve().parents[1]
SMALL = GlyphsSpec(seed=0, classes=24, per_class=6)
FAST = ["train.epochs=1", "sampler.p=8", "sampler.k=3", "eval.every=1", "data.eval_batch_size=64"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run1"
    console = Console(record=True, width=120)
    result = run_demo(out, spec=SMALL, overrides=FAST, left_out=0.3, examples=4, console=console)
    return result, console.export_text()


def test_demo_writes_every_stage(demo) -> None:
    result, _ = demo
    run = result.run_dir
    for name in (
        "config.yaml",
        "split.csv",
        "metrics.jsonl",
        "checkpoints/best.pt",
        "checkpoints/calibrated.pt",
    ):
        assert (run / name).is_file(), name
    assert result.manifest.is_file() and (result.manifest.parent / "dataset.json").is_file()
    assert [name for name, _ in result.stages] == ["data", "train", "calibrate", "index", "search", "report"]
    # the metrics before and after are the run's own test records
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    tests = [r for r in records if r["split"] == "test"]
    assert tests[0]["hit_rate@1"] == result.before["hit_rate@1"]
    assert tests[-1]["hit_rate@1"] == result.after["hit_rate@1"]
    # the calibration record stored in the calibrated checkpoint: a decision score chosen on val and
    # a threshold per gallery size for the target FPIR
    from lookalike.calibration import read_calibration
    from lookalike.models.inference import load_inference_model

    stored = load_inference_model(checkpoint=run / "checkpoints" / "calibrated.pt").calibration
    record = read_calibration(stored)
    assert record is not None and record.to_dict() == result.calibration
    assert record.target_fpir == 0.05 and record.method == "object-profiles"
    assert record.score in ("nearest", "ratio", "znorm") and len(record.thresholds) > 1


def test_gallery_is_searchable_and_left_out_characters_are_rejected(demo) -> None:
    from lookalike.gallery import Matcher

    result, _ = demo
    split = result.run_dir / "split.csv"
    import pandas as pd

    frame = pd.read_csv(split)
    test = frame[frame["split"] == "test"]
    queries = test[test["role"] == "query"]
    with Matcher.open(result.gallery) as matcher:
        labels = set(matcher.gallery.items()["label"].astype(str))
        matcher_threshold = matcher.threshold
        # the gallery's threshold is the calibration pooled with its own images (as index build sets it)
        from lookalike.calibration import read_calibration
        from lookalike.calibration.adaptive import fit_arrays

        own = fit_arrays(
            read_calibration(result.calibration),
            matcher.gallery.vectors(),
            matcher.gallery.items()["label"].astype(str).to_numpy(),
        )
        assert own.probes > 0 and matcher_threshold == pytest.approx(own.threshold, abs=1e-5)
        answers = matcher.search([str(result.run_dir / p) for p in queries["path"]], k=5)
    assert all(a.decision in ("match", "no match") and len(a.neighbours) == 5 for a in answers)
    left_out = [a for a, label in zip(answers, queries["label"], strict=True) if label not in labels]
    assert len(left_out) == result.n_unknown >= 2
    assert len(labels) + result.n_unknown == test["label"].nunique()
    # queries of characters not in the gallery mostly come back "no match"
    rejected = sum(a.decision == "no match" for a in left_out) / len(left_out)
    assert rejected == pytest.approx(result.unknown_rejected)
    assert rejected >= 0.5
    # FPIR / FNIR / wrong-match rate of the test searches, recounted from these answers by hand
    known = [str(q) in labels for q in queries["label"]]
    matched = [a.decision == "match" for a in answers]
    right = [m and a.label == str(q) for a, m, q in zip(answers, matched, queries["label"], strict=True)]
    non_mated = [m for m, k in zip(matched, known, strict=True) if not k]
    mated = [(m, r) for m, r, k in zip(matched, right, known, strict=True) if k]
    assert result.fpir == pytest.approx(sum(non_mated) / len(non_mated))
    assert result.fnir == pytest.approx(sum(not r for _, r in mated) / len(mated))
    assert result.wrong_match_rate == pytest.approx(sum(m and not r for m, r in mated) / len(mated))
    assert matcher_threshold == pytest.approx(result.threshold)


def test_report_is_self_contained_and_shows_the_figures(demo) -> None:
    result, text = demo
    html = result.report.read_text(encoding="utf-8")
    for k in (1, 10, 50, 1000):
        assert f"<td>hit_rate@{k}</td>" in html and f"<td>recall@{k}</td>" in html
    assert "what DML papers call Recall@K" in html
    assert "gallery images found in the top k" in html
    before, after = f"{result.before['hit_rate@1']:.3f}", f"{result.after['hit_rate@1']:.3f}"
    assert re.search(
        rf"<td>hit_rate@1</td><td class=\"num\">{before}</td><td class=\"num\">{after}</td>", html
    )
    sources = re.findall(r'src="([^"]+)"', html)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)  # nothing external
    assert "training curves" in html
    # the recipe as words, not a Python repr: the demo trains the default loss with no miner
    assert "no miner (the loss weighs every pair) / multi_similarity" in html and "None /" not in html
    # the DET curve and FPIR against gallery size of the test split, or why there is no DET curve
    det = re.search(r'alt="DET curve"', html)
    note = re.search(r"No DET curve: (\d+) mated and (\d+) non-mated test searches", html)
    assert bool(det) != bool(note)
    assert 'alt="FPIR against gallery size"' in html or note
    # the three outcomes of known and unknown objects' searches, counted as the result counts them
    assert re.search(rf"<td>known objects \(mated searches\): {result.n_known}</td>", html)
    assert re.search(rf"<td>unknown objects \(non-mated\): {result.n_unknown}</td>", html)
    assert f"{result.fpir:.3f} of {result.n_unknown} non-mated" in html
    assert f"FPIR {result.fpir:.3f}" in text and "wrong-match rate" in text
    assert "impostor searches" not in text  # the demo speaks of FPIR / FNIR now, not FAR / TAR
    points = result.open_set.sizes
    assert [p.size_classes for p in points] == sorted(p.size_classes for p in points)
    assert all(
        p.at_threshold is not None and p.at_threshold.score == result.calibration["score"] for p in points
    )
    assert "no match" in html and "Characters left out of the gallery" in html
    assert f"lookalike serve --gallery {result.gallery}" in text
    assert str(result.report.resolve()) in text.replace("\n", "")


def test_a_second_demo_into_the_same_folder_is_refused(demo) -> None:
    result, _ = demo
    with pytest.raises(FileExistsError, match="already holds a demo run"):
        run_demo(result.out, spec=SMALL, overrides=FAST, console=Console(quiet=True))


def test_configs_demo_yaml_is_the_demo_config() -> None:
    shipped = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    expected = {**DEMO_CONFIG, "data": {**DEMO_CONFIG["data"], "root": shipped["data"]["root"]}}
    assert shipped == expected
    assert not shipped["data"]["root"].startswith("../shared")  # works from a clone alone
    assert demo_config("x", ["loss.name=multi_similarity", "miner.name=null"]).loss.name == "multi_similarity"


def test_cli_errors_are_one_line_and_change_nothing(tmp_path: Path, monkeypatch) -> None:
    runner = CliRunner()
    missing = tmp_path / "nope"
    res = runner.invoke(app, ["demo", "--out", str(tmp_path / "o"), "--data", str(missing)])
    assert res.exit_code == 1
    assert "does not exist" in res.output and str(missing) in res.output

    def offline(what: str, root: Path) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("lookalike.data.builtin._default_download", offline)
    res = runner.invoke(app, ["demo", "--out", str(tmp_path / "o2"), "--dataset", "omniglot"])
    assert res.exit_code == 1
    assert "cannot download omniglot" in res.output.replace("\n", "") or "cannot download" in res.output
    assert "--data" in res.output
    res = runner.invoke(app, ["demo", "--out", str(tmp_path / "o3"), "--set", "loss.name=nope"])
    assert res.exit_code == 1 and "loss.name 'nope' is not known" in res.output
    assert not (tmp_path / "o3" / "run").exists()
