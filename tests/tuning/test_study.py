"""The study's trial mechanics without training: pruning through fit's on_eval hook, invalid configs
as failed trials with their reason, and the hook in the real fit loop."""

import json

import optuna
import pytest

from lookalike.config import validate_config
from lookalike.training import FitResult, fit
from lookalike.tuning import parse_space, prepare_tune, run_study


def _fake_fit(values, calls):
    """A stand-in for fit(): reports ``values[role]`` after every evaluation (the baseline and each
    epoch) through on_eval, as fit does, and records how far it got."""

    def fit_fn(config, run_dir, *, console, on_eval):
        role = "frozen" if config.train.epochs == 0 else ("base" if len(calls) == 1 else "sampled")
        reached = []
        calls.append(reached)
        for epoch in range(config.train.epochs + 1):
            on_eval(epoch, {config.eval.metric: values[role]})
            reached.append(epoch)
        return FitResult(
            run_dir=run_dir, epochs_done=config.train.epochs, best_epoch=0, best_value=values[role]
        )

    return fit_fn


def test_a_bad_trial_is_pruned_after_its_first_evaluations(base_config, tmp_path):
    plan = prepare_tune(base_config, tmp_path / "out", trials=4, epochs=3, metric="map@r")
    calls = []
    study = run_study(plan, fit_fn=_fake_fit({"frozen": 0.5, "base": 0.9, "sampled": 0.1}, calls))
    states = [t.state for t in study.trials]
    # 3 startup trials (0, 1 and the first drawn one) finish; trial 3 is as bad as trial 2 and is
    # below the median of trials 1 and 2 at epoch 1
    assert states == [optuna.trial.TrialState.COMPLETE] * 3 + [optuna.trial.TrialState.PRUNED]
    # n_warmup_steps=1: the baseline (epoch 0) never prunes; epoch 1 does, so the pruned trial
    # stopped there, before epochs 2 and 3
    assert calls[2] == [0, 1, 2, 3] and calls[3] == [0]
    pruned = study.trials[3]
    assert max(pruned.intermediate_values) == 1 and "below the median" in pruned.user_attrs["fail_reason"]
    assert study.best_trial.number == 1


def test_a_trial_is_scored_by_its_trained_weights_not_the_baseline_it_kept(base_config, tmp_path):
    # training makes every trained trial worse than the untrained model: fit keeps the epoch-0
    # weights (best_value = the baseline), but the trial's value is what training reached, so the
    # untrained trial 0 wins and best.yaml says not to train
    def fit_fn(config, run_dir, *, console, on_eval):
        on_eval(0, {config.eval.metric: 0.5})
        for epoch in range(1, config.train.epochs + 1):
            on_eval(epoch, {config.eval.metric: 0.3 + 0.01 * epoch})
        return FitResult(run_dir=run_dir, epochs_done=config.train.epochs, best_epoch=0, best_value=0.5)

    plan = prepare_tune(base_config, tmp_path / "out", trials=2, epochs=3, metric="map@r")
    study = run_study(plan, fit_fn=fit_fn)
    assert [t.value for t in study.trials] == [pytest.approx(0.5), pytest.approx(0.33)]
    assert study.best_trial.number == 0


def test_an_invalid_sampled_config_is_a_failed_trial_with_its_reason(base_config, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(json.dumps({"params": {"sampler.k": {"type": "categorical", "choices": [1]}}}))
    plan = prepare_tune(base_config, tmp_path / "out", trials=3, space_path=space)
    calls = []
    study = run_study(plan, fit_fn=_fake_fit({"frozen": 0.5, "base": 0.6, "sampled": 0.9}, calls))
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE", "FAIL"]
    reason = study.trials[2].user_attrs["fail_reason"]
    assert "invalid config" in reason and "sampler.k" in reason
    assert len(calls) == 2  # the invalid trial never trained


def test_fit_on_eval_hook_stops_the_run_cleanly(tmp_path):
    from tune_helpers import make_tune_data

    config = validate_config(
        {
            "data": {"root": str(make_tune_data(tmp_path / "imgs", classes=8)), "val": 0.25, "test": 0.0},
            "model": {"backbone": "convnet4", "embed_dim": 8, "image_size": 20},
            "sampler": {"p": 2, "k": 2},
            "train": {"epochs": 3, "steps_per_epoch": 1},
            "eval": {"ks": [1], "target_fpir": None},
        }
    )
    seen = []

    def on_eval(epoch, metrics):
        seen.append((epoch, metrics["hit_rate@1"]))
        if epoch == 1:
            raise optuna.TrialPruned("stop")

    with pytest.raises(optuna.TrialPruned):
        fit(config, tmp_path / "run", on_eval=on_eval)
    assert [e for e, _ in seen] == [0, 1]
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["hit_rate@1"]) for r in records if r["split"] == "val"] == seen


def test_space_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"unknown key 'optim\.learning_rate'; valid keys of optim: lr"):
        parse_space({"params": {"optim.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2}}})
    with pytest.raises(ValueError, match=r"loss 'triplet' has no option 'margn'"):
        parse_space({"losses": {"triplet": {"options": {"margn": 0.2}}}})
    with pytest.raises(ValueError, match=r"unknown miner 'semi_hard'"):
        parse_space({"losses": {"triplet": {"miners": {"semi_hard": {}}}}})
    with pytest.raises(ValueError, match=r"ties to loss option 'margin'"):
        parse_space({"losses": {"triplet": {"miners": {"semihard": {"margin": "loss.margin"}}}}})
    with pytest.raises(ValueError, match=r"low must be < high"):
        parse_space({"params": {"optim.lr": {"type": "float", "low": 1e-2, "high": 1e-4}}})
    with pytest.raises(ValueError, match=r"searched under `losses:`"):
        parse_space({"params": {"loss.margin": {"type": "float", "low": 0.1, "high": 0.5}}})


def test_budget_minutes_stops_starting_trials_and_outputs_are_still_written(base_config, tmp_path):
    from rich.console import Console

    from lookalike.tuning import finish_tune

    plan = prepare_tune(base_config, tmp_path / "out", trials=5, budget_minutes=1e-6)
    calls = []
    study = run_study(plan, fit_fn=_fake_fit({"frozen": 0.5, "base": 0.6, "sampled": 0.9}, calls))
    assert len(study.trials) == 2 and study.trials[1].state.name == "WAITING"  # trial 1 stays queued
    assert len(calls) == 1  # the time was up after trial 0
    console = Console(record=True, width=200)
    summary = finish_tune(plan, study, console=console)
    assert summary.best_number == 0 and (plan.out / "best.yaml").is_file()
    assert "untrained model was best" in (plan.out / "best.yaml").read_text()
    assert "param_importances.png skipped" in console.export_text()
