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
    # calibration stored in the calibrated checkpoint, with the figures it was made with
    assert result.calibration["split"] == "val" and result.calibration["target_far"] == 0.05
    assert 0.0 <= result.calibration["far"] <= 0.05
    # the val classes playing unknown objects come in the share the test gallery leaves out (0.3
    # here), so the threshold is set on the impostor mix the test searches meet
    assert result.calibration["open_set_share"] == 0.3


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
        assert matcher.threshold == pytest.approx(result.calibration["threshold"]["value"])
        answers = matcher.search([str(result.run_dir / p) for p in queries["path"]], k=5)
    assert all(a.decision in ("match", "no match") and len(a.neighbours) == 5 for a in answers)
    left_out = [a for a, label in zip(answers, queries["label"], strict=True) if label not in labels]
    assert len(left_out) == result.n_unknown >= 2
    assert len(labels) + result.n_unknown == test["label"].nunique()
    # queries of characters not in the gallery mostly come back "no match"
    rejected = sum(a.decision == "no match" for a in left_out) / len(left_out)
    assert rejected == pytest.approx(result.unknown_rejected)
    assert rejected >= 0.5
    # the threshold's FAR / TAR on test, recounted from these searches: genuine = a known class
    # whose nearest item is its own; every other search (left-out, or nearest of another class) an impostor
    genuine = [a.neighbours[0].label == str(q) for a, q in zip(answers, queries["label"], strict=True)]
    accepted = [a.decision == "match" for a in answers]
    impostors = [acc for acc, g in zip(accepted, genuine, strict=True) if not g]
    genuines = [acc for acc, g in zip(accepted, genuine, strict=True) if g]
    if impostors:
        assert result.test_far == pytest.approx(sum(impostors) / len(impostors))
    if genuines:
        assert result.test_tar == pytest.approx(sum(genuines) / len(genuines))


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
    # the ROC curve of the test searches, or (a tiny model whose searches are all right or all wrong) why not
    roc = re.search(r'alt="ROC curve"', html)
    note = re.search(
        r"No ROC curve: of the (\d+) test searches, (\d+) found their class first and (\d+) did not", html
    )
    assert bool(roc) != bool(note)
    if note:
        searched, genuine, impostor = map(int, note.groups())
        assert searched == genuine + impostor and (genuine == 0 or impostor == 0)
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
