"""`lookalike tune` end to end through the CLI on a tiny data set (random-init convnet4)."""

import shutil

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from lookalike.cli import app
from lookalike.config import validate_config
from lookalike.data import read_manifest
from lookalike.tuning import load_space

runner = CliRunner()


def _tune(base, out, *args):
    return runner.invoke(app, ["tune", "--config", str(base), "--out", str(out), "--metric", "map@r", *args])


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    from tune_helpers import write_base_config

    folder = tmp_path_factory.mktemp("tune")
    base = write_base_config(folder)
    out = folder / "tune"
    res = _tune(base, out, "--trials", "3")
    assert res.exit_code == 0, res.output
    return base, out, res.output


def test_three_trials_write_study_best_config_table_and_plots(tuned):
    base, out, output = tuned
    for name in ("study.db", "best.yaml", "trials.csv", "split.csv", "plots/optimization_history.png"):
        assert (out / name).is_file(), name
    space = load_space(out / "space.yaml")  # the space searched, written as a --space file
    assert space.params["optim.lr"].log and "triplet" in space.losses
    trials = pd.read_csv(out / "trials.csv")
    assert list(trials["number"]) == [0, 1, 2]
    assert list(trials["role"]) == ["frozen", "base", "sampled"]
    assert (trials["state"] == "COMPLETE").all(), trials
    frozen, base_value = trials.loc[0, "value"], trials.loc[1, "value"]
    # trial 0 trained nothing: its only evaluation is the baseline, whose value trial 1 starts from
    assert trials.loc[0, "best_epoch"] == 0
    assert base_value >= frozen
    sampled_params = [c for c in trials.columns if c.startswith("params.")]
    assert "params.optim.lr" in sampled_params and "params.loss" in sampled_params
    assert trials.loc[[0, 1], sampled_params].isna().all().all()  # trials 0 and 1 draw nothing

    text = (out / "best.yaml").read_text()
    best = validate_config(yaml.safe_load(text))
    best_value = trials["value"].max()
    assert f"map@r = {best_value:.4f}" in text and best_value >= frozen
    assert best.eval.metric == "map@r"
    # the user's data and budget, so that `lookalike train --config best.yaml` trains on the real set
    user = yaml.safe_load(base.read_text())
    assert best.data.root == user["data"]["root"] and best.data.val == user["data"]["val"]
    winner = int(trials.loc[trials["value"].idxmax(), "number"])
    if winner == 0:
        assert best.train.epochs == 0 and "untrained model was best" in text
    else:
        assert best.train.epochs == user["train"]["epochs"]
        trial_cfg = yaml.safe_load((out / "trials" / f"{winner:04d}" / "config.yaml").read_text())
        assert best.loss.name == trial_cfg["loss"]["name"] and best.optim.lr == trial_cfg["optim"]["lr"]
    # only the best trial keeps a checkpoint (its best.pt)
    kept = sorted(p.relative_to(out).as_posix() for p in (out / "trials").glob("*/checkpoints/*"))
    assert kept == [f"trials/{winner:04d}/checkpoints/best.pt"]
    # the terminal: best first, then the comparison and the next command
    flat = " ".join(output.split())  # rich wraps at the terminal's width
    assert "trial 0 (untrained)" in flat and "trial 1 (base config)" in flat
    assert f"lookalike train --config {out / 'best.yaml'}" in output.replace("\n", "")


def test_trials_never_see_the_test_split(tuned):
    _, out, _ = tuned
    full = read_manifest(out / "split.csv")
    test_labels = set(full.loc[full["split"] == "test", "label"])
    assert test_labels  # the base config has a test split ...
    for trial in sorted((out / "trials").iterdir()):
        seen = read_manifest(trial / "split.csv")
        assert set(seen["split"]) == {"train", "val"} and not test_labels & set(seen["label"]), trial
        cfg = yaml.safe_load((trial / "config.yaml").read_text())
        assert cfg["eval"]["target_fpir"] is None
        records = [yaml.safe_load(line) for line in (trial / "metrics.jsonl").read_text().splitlines()]
        assert {r["split"] for r in records} == {"val"}, trial


def test_rerun_resumes_the_same_study(tuned, tmp_path):
    base, out, _ = tuned
    copy = tmp_path / "tune"
    shutil.copytree(out, copy)
    before = pd.read_csv(copy / "trials.csv")
    res = _tune(base, copy, "--trials", "4")
    assert res.exit_code == 0, res.output
    assert "1 trial(s) to run (3 done)" in res.output
    after = pd.read_csv(copy / "trials.csv")
    assert list(after["number"]) == [0, 1, 2, 3] and after.loc[3, "role"] == "sampled"
    pd.testing.assert_frame_equal(after.loc[:2, before.columns], before, check_dtype=False)
    completed_sampled = ((after["role"] == "sampled") & (after["state"] == "COMPLETE")).sum()
    if completed_sampled >= 2:
        assert (copy / "plots" / "param_importances.png").is_file()
    else:
        assert "param_importances.png skipped" in res.output
    # enough trials already: nothing runs, the outputs are written again
    res = _tune(base, copy, "--trials", "2")
    assert res.exit_code == 0 and "nothing to run" in res.output
    assert len(pd.read_csv(copy / "trials.csv")) == 4


def test_a_different_base_config_on_a_tune_folder_is_refused(tuned):
    base, out, _ = tuned
    stamp = (out / "study.db").stat().st_mtime_ns
    res = _tune(base, out, "--trials", "5", "--set", "optim.lr=0.5")
    assert res.exit_code == 2
    assert "different base config" in res.output and "base.optim.lr" in res.output
    assert (out / "study.db").stat().st_mtime_ns == stamp


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--trials", "0"], "--trials must be >= 1"),
        (["--trials", "2", "--budget-minutes", "0"], "--budget-minutes must be > 0"),
        (["--trials", "2", "--epochs", "0"], "--epochs must be >= 1"),
        (["--trials", "2", "--metric", "hit_rate@7"], "eval.metric 'hit_rate@7' is not computed"),
    ],
)
def test_bad_arguments_fail_with_one_line_and_write_nothing(base_config, tmp_path, args, message):
    out = tmp_path / "out"
    res = _tune(base_config, out, *args)
    assert res.exit_code == 2 and message in res.output, res.output
    assert not out.exists()


def test_missing_config_and_foreign_folder_are_refused(base_config, tmp_path):
    res = _tune(tmp_path / "nope.yaml", tmp_path / "out", "--trials", "2")
    assert res.exit_code == 2 and "nope.yaml does not exist" in res.output
    assert not (tmp_path / "out").exists()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    res = _tune(base_config, foreign, "--trials", "2")
    assert res.exit_code == 2 and "not a tune folder" in res.output
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


def test_space_file_with_an_unknown_key_is_refused_naming_it(base_config, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(
        yaml.safe_dump({"params": {"optim.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2}}})
    )
    out = tmp_path / "out"
    res = _tune(base_config, out, "--trials", "2", "--space", str(space))
    assert res.exit_code == 2
    assert "'optim.learning_rate'" in res.output and "valid keys of optim: lr" in res.output
    assert not out.exists()
