"""What a tune leaves behind: ``best.yaml``, ``trials.csv``, the Optuna plots and the terminal table."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import yaml
from rich.console import Console
from rich.table import Table

from lookalike._io import atomic_path, atomic_write_text
from lookalike.config import config_to_dict, validate_config
from lookalike.tuning.study import DONE_STATES, ROLE_BASE, ROLE_FROZEN, ROLE_SAMPLED, TunePlan, trial_role

__all__ = [
    "TuneSummary",
    "print_summary",
    "summarize",
    "write_best_config",
    "write_plots",
    "write_trials_csv",
]

_COMPLETE = optuna.trial.TrialState.COMPLETE


@dataclass
class TuneSummary:
    """The outcome of a study: the best trial and the two references it is measured against."""

    best_number: int | None
    best_value: float | None
    best_role: str | None
    frozen_value: float | None  # trial 0: the base model, untrained
    base_value: float | None  # trial 1: the base config as given
    n_trials: int
    best_yaml: Path | None = None
    plots: tuple[Path, ...] = ()
    plot_notes: tuple[str, ...] = ()


def _value(study: optuna.Study, number: int) -> float | None:
    trials = [t for t in study.get_trials(deepcopy=False) if t.number == number]
    return trials[0].value if trials and trials[0].state == _COMPLETE else None


def summarize(study: optuna.Study) -> TuneSummary:
    complete = study.get_trials(deepcopy=False, states=(_COMPLETE,))
    best = study.best_trial if complete else None
    return TuneSummary(
        best_number=best.number if best else None,
        best_value=best.value if best else None,
        best_role=trial_role(best) if best else None,
        frozen_value=_value(study, 0),
        base_value=_value(study, 1),
        n_trials=len(study.get_trials(deepcopy=False, states=DONE_STATES)),
    )


def _params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, role, state, value, last reported value, duration, reason, params."""
    rows = []
    for t in study.trials:
        last = t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None
        rows.append(
            {
                "number": t.number,
                "role": trial_role(t),
                "state": t.state.name,
                "value": t.value if t.state == _COMPLETE else None,
                "last_reported": last,
                "best_epoch": t.user_attrs.get("best_epoch"),
                "duration_s": t.duration.total_seconds() if t.duration is not None else None,
                "reason": (t.user_attrs.get("fail_reason") or "").splitlines()[0:1][0]
                if t.user_attrs.get("fail_reason")
                else "",
                **{f"params.{k}": v for k, v in t.params.items()},
            }
        )
    return pd.DataFrame(rows).convert_dtypes()


def write_trials_csv(study: optuna.Study, path: Path) -> Path:
    with atomic_path(path, suffix=".csv") as tmp:
        trials_frame(study).to_csv(tmp, index=False)
    return path


def write_best_config(plan: TunePlan, study: optuna.Study, summary: TuneSummary) -> Path | None:
    """``DIR/best.yaml``: the best trial's config, validated, with the user's data section (its root
    made absolute) and the base config's ``train.epochs``/``steps_per_epoch`` and ``eval.target_fpir``;
    when trial 0 won, the base config with ``train.epochs: 0``. None when no trial completed."""
    if summary.best_number is None:
        return None
    base = config_to_dict(plan.base)
    data = dict(base["data"])
    data["root"] = str(Path(data["root"]).resolve())
    trial_train = plan.trial_base["train"]
    budget = f"{trial_train['epochs']} epoch(s) x {trial_train['steps_per_epoch'] or 'all'} steps"
    head = [
        f"# lookalike tune: the best of {summary.n_trials} trial(s) on val "
        f"({plan.metric} = {summary.best_value:.4f}, trial {summary.best_number}, {summary.best_role})",
        f"# references on val: trial 0 (untrained) {_fmt(summary.frozen_value)}, "
        f"trial 1 (the base config) {_fmt(summary.base_value)}; trials trained {budget}",
    ]
    if summary.best_role == ROLE_FROZEN:
        raw = base
        raw["train"]["epochs"] = 0
        raw["eval"]["metric"] = plan.metric
        head.append(
            "# the untrained model was best: training as tried did not beat it on val (train.epochs: 0)"
        )
    else:
        raw = yaml.safe_load((plan.trial_dir(summary.best_number) / "config.yaml").read_text())
        raw["train"]["epochs"] = base["train"]["epochs"]
        raw["train"]["steps_per_epoch"] = base["train"]["steps_per_epoch"]
        raw["eval"]["target_fpir"] = base["eval"]["target_fpir"]
        head.append("# train.epochs, train.steps_per_epoch and eval.target_fpir are the base config's")
        best_epoch = study.trials[summary.best_number].user_attrs.get("best_epoch")
        if best_epoch == 0:
            head.append("# note: this trial's best val came before training (epoch 0)")
    raw["data"] = data
    config = validate_config(raw, source="best.yaml")
    text = "\n".join(head) + "\n" + yaml.safe_dump(config_to_dict(config), sort_keys=False)
    path = plan.out / "best.yaml"
    atomic_write_text(path, text)
    return path


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _save(ax: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig = ax.figure if not hasattr(ax, "__len__") else ax.flat[0].figure
    fig.set_size_inches(8, 5)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


def _importance_params(study: optuna.Study) -> list[str]:
    """Params drawn in every completed sampled trial and varying across them (conditional ones left out)."""
    trials = [
        t for t in study.get_trials(deepcopy=False, states=(_COMPLETE,)) if trial_role(t) == ROLE_SAMPLED
    ]
    if len(trials) < 2:
        return []
    common = set(trials[0].params).intersection(*(t.params for t in trials[1:]))
    return sorted(p for p in common if len({repr(t.params[p]) for t in trials}) > 1)


def write_plots(study: optuna.Study, folder: Path) -> tuple[list[Path], list[str]]:
    """The optimisation history and, when >= 2 completed sampled trials vary a param, the param
    importances, as PNG (matplotlib). Returns (paths written, notes on plots skipped)."""
    import matplotlib

    matplotlib.use("Agg")
    from optuna.visualization import matplotlib as ovm

    paths, notes = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if study.get_trials(deepcopy=False, states=(_COMPLETE,)):
            paths.append(_save(ovm.plot_optimization_history(study), folder / "optimization_history.png"))
        else:
            notes.append("optimization_history.png skipped: no trial completed")
        params = _importance_params(study)
        if params:
            evaluator = optuna.importance.PedAnovaImportanceEvaluator()
            try:
                import sklearn  # noqa: F401

                evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
            except ImportError:
                pass
            try:
                ax = ovm.plot_param_importances(study, params=params, evaluator=evaluator)
                paths.append(_save(ax, folder / "param_importances.png"))
            except (ValueError, RuntimeError, ZeroDivisionError) as err:
                notes.append(f"param_importances.png skipped: {err}")
        else:
            notes.append(
                "param_importances.png skipped: it needs >= 2 completed sampled trials (trial 2 on) "
                "that vary a parameter"
            )
    return paths, notes


def print_summary(console: Console, plan: TunePlan, study: optuna.Study, summary: TuneSummary) -> None:
    """The trials (best first), then the best value against trial 0 and trial 1, and what to run next."""
    frame = trials_frame(study)
    frame["_order"] = frame["state"].map({"COMPLETE": 0, "PRUNED": 1, "FAIL": 2}).fillna(3)
    frame = frame.sort_values(
        ["_order", "value", "number"], ascending=[True, False, True], na_position="last"
    )
    table = Table(title=f"{plan.out}: {len(frame)} trial(s), val {plan.metric} (higher is better)")
    for column in ("trial", "role", "state", plan.metric, "time", "params / reason"):
        table.add_column(column, justify="right" if column in (plan.metric, "time", "trial") else "left")
    params_by_number = {t.number: t.params for t in study.trials}
    for row in frame.itertuples():
        value = _num(row.value) if _num(row.value) is not None else _num(row.last_reported)
        shown = "-" if value is None else f"{value:.4f}"
        if row.state != "COMPLETE" and shown != "-":
            shown = f"({shown})"
        detail = (
            _params_text(params_by_number[row.number]) if row.role == ROLE_SAMPLED else _ROLE_TEXT[row.role]
        )
        if row.reason and row.state != "COMPLETE":
            detail = f"{detail}; {row.reason}" if detail else row.reason
        duration = "-" if _num(row.duration_s) is None else f"{row.duration_s:.0f} s"
        table.add_row(str(row.number), row.role, row.state.lower(), shown, duration, detail)
    console.print(table)
    if summary.best_number is None:
        console.print("[red]no trial completed[/red]: see the reasons above and DIR/trials/NNNN/log.txt")
        return
    console.print(
        f"best: trial {summary.best_number} ({summary.best_role}) val {plan.metric} = "
        f"{summary.best_value:.4f}  |  trial 0 (untrained) {_fmt(summary.frozen_value)}  |  "
        f"trial 1 (base config) {_fmt(summary.base_value)}"
    )
    for note in summary.plot_notes:
        console.print(f"note: {note}")
    if summary.best_yaml is not None:
        console.print(f"train it: lookalike train --config {summary.best_yaml} --out RUN_DIR")


_ROLE_TEXT = {ROLE_FROZEN: "the base model, untrained", ROLE_BASE: "the base config as given"}


def _num(value: Any) -> float | None:
    """A float, or None for a missing value (None, NaN, pd.NA)."""
    return None if value is None or pd.isna(value) else float(value)
