"""``lookalike tune``: an Optuna study over training configs, scored on the class-disjoint val split.

The out folder::

    DIR/study.db          the Optuna study (SQLite); the same command again resumes it
    DIR/split.csv         the base config's split, resolved once (test rows included, for the record)
    DIR/tune_split.csv    what trials train and validate on: split.csv without its test rows
    DIR/space.yaml        the search space used (the default one, or --space): a --space file to edit
    DIR/trials/NNNN/      one run folder per trial (log.txt: its output); only the best trial keeps
                          checkpoints/best.pt
    DIR/best.yaml, DIR/trials.csv, DIR/plots/*.png   the results (see :mod:`lookalike.tuning.report`)

Trial 0 is the base model evaluated without training (``train.epochs: 0``), trial 1 the base config
as given; later trials draw from the search space (TPE, seeded), are pruned by a median rule after
their first evaluations (below the median of the finished trials at the same epoch, from trial 3
on), and any config that does not validate is a failed trial with its reason.
The test split is never used: trials see no test rows and do not calibrate (``eval.target_fpir: null``).
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from rich.console import Console

from lookalike._io import atomic_write_text
from lookalike.config import ConfigError, TrainingConfig, config_to_dict, load_config, validate_config
from lookalike.data import resolve_split, write_manifest
from lookalike.evaluation import split_frames
from lookalike.tuning.space import (
    SearchSpace,
    SpaceContext,
    default_space,
    load_space,
    sample_config,
    space_context,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["STUDY_FILE", "TRIALS_SPLIT_FILE", "TunePlan", "make_objective", "prepare_tune", "run_study"]

STUDY_FILE = "study.db"
STUDY_NAME = "lookalike-tune"
TRIALS_SPLIT_FILE = "tune_split.csv"
FINGERPRINT_ATTR = "lookalike_tune"
ROLE_FROZEN, ROLE_BASE, ROLE_SAMPLED = "frozen", "base", "sampled"
DONE_STATES = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)


@dataclass
class TunePlan:
    """Everything a study needs, checked before anything is written (:func:`prepare_tune`)."""

    out: Path
    trials: int
    base: TrainingConfig  # the user's config, overrides applied
    trial_base: dict[str, Any]  # the base as trials run it: tune split, trial budget, no calibration
    space: SearchSpace
    context: SpaceContext
    metric: str
    fingerprint: dict[str, Any]
    split: pd.DataFrame | None = None  # the resolved split, written by open_study into a new folder
    budget_minutes: float | None = None
    keep_checkpoints: bool = False

    @property
    def study_path(self) -> Path:
        return self.out / STUDY_FILE

    def trial_dir(self, number: int) -> Path:
        return self.out / "trials" / f"{number:04d}"


def _refuse_foreign_folder(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder (new, or one a tune wrote)")
    if out.is_dir() and any(out.iterdir()) and not (out / STUDY_FILE).exists():
        raise ConfigError(
            f"--out {out} already holds files but no {STUDY_FILE}: it is not a tune folder; "
            "give a new folder (or the folder of the tune to resume)"
        )


def prepare_tune(
    config_path: str | Path,
    out: str | Path,
    *,
    trials: int,
    overrides: Sequence[str] = (),
    space_path: str | Path | None = None,
    epochs: int | None = None,
    steps_per_epoch: int | None = None,
    metric: str | None = None,
    budget_minutes: float | None = None,
    keep_checkpoints: bool = False,
) -> TunePlan:
    """Check every input and plan the study; writes nothing. Raises ConfigError (or
    FileNotFoundError / ValueError from the data) with one clear message."""
    if trials < 1:
        raise ConfigError(f"--trials must be >= 1 (trial 0 is the untrained baseline), got {trials}")
    if budget_minutes is not None and budget_minutes <= 0:
        raise ConfigError(f"--budget-minutes must be > 0, got {budget_minutes}")
    if epochs is not None and epochs < 1:
        raise ConfigError(f"--epochs must be >= 1 (epochs each trial trains), got {epochs}")
    out = Path(out)
    _refuse_foreign_folder(out)
    base = load_config(config_path, list(overrides))
    if epochs is None and base.train.epochs < 1:
        raise ConfigError(
            f"{config_path} trains 0 epochs (train.epochs: 0), so trials would not train; give --epochs N"
        )
    trial_base = config_to_dict(base)
    trial_base["data"]["root"] = str((out / TRIALS_SPLIT_FILE).resolve())
    trial_base["train"]["epochs"] = base.train.epochs if epochs is None else epochs
    if steps_per_epoch is not None:
        trial_base["train"]["steps_per_epoch"] = steps_per_epoch
    trial_base["eval"]["metric"] = metric or base.eval.metric
    trial_base["eval"]["target_fpir"] = None
    validate_config(trial_base, source=f"{config_path} with the trial budget")
    frame = resolve_split(base.data, out, write=False)
    queries, gallery = split_frames(frame, "val")
    if not len(queries) or not len(gallery):
        raise ConfigError(
            f"the split of {base.data.root} has no val queries and gallery: tune scores trials on val "
            "only; set data.val > 0 (classes with at least 2 images) or give a split manifest with val rows"
        )
    n_train = int(frame.loc[frame["split"] == "train", "label"].nunique())
    context = space_context(base, train_classes=n_train, epochs=trial_base["train"]["epochs"])
    space = load_space(space_path) if space_path is not None else default_space(base, context)
    user_base = config_to_dict(base)
    user_base["data"]["root"] = str(Path(base.data.root).resolve())  # the same data from any folder
    fingerprint = {
        "base": user_base,
        "epochs": trial_base["train"]["epochs"],
        "steps_per_epoch": trial_base["train"]["steps_per_epoch"],
        "metric": trial_base["eval"]["metric"],
        "space": space.to_dict(),
    }
    plan = TunePlan(
        out=out,
        trials=trials,
        base=base,
        trial_base=trial_base,
        space=space,
        context=context,
        metric=trial_base["eval"]["metric"],
        fingerprint=json.loads(json.dumps(fingerprint)),
        split=frame,
        budget_minutes=budget_minutes,
        keep_checkpoints=keep_checkpoints,
    )
    if plan.study_path.exists():
        _check_same_study(plan)
    return plan


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b))
        return [d for k in keys for d in _differences(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [prefix.rstrip(".")]


def _storage(path: Path) -> optuna.storages.RDBStorage:
    return optuna.storages.RDBStorage(f"sqlite:///{path.resolve()}")


def _check_same_study(plan: TunePlan) -> None:
    try:
        study = optuna.load_study(study_name=STUDY_NAME, storage=_storage(plan.study_path))
    except KeyError:
        raise ConfigError(
            f"{plan.study_path} holds no study named {STUDY_NAME!r}: not a tune folder"
        ) from None
    saved = study.user_attrs.get(FINGERPRINT_ATTR)
    if saved != plan.fingerprint:
        diff = _differences(saved or {}, plan.fingerprint)
        raise ConfigError(
            f"{plan.out} holds a tune of a different base config, trial budget or search space (differs at: "
            f"{', '.join(diff[:8])}{' ...' if len(diff) > 8 else ''}); resume it with the same --config, "
            "--set, --space, --epochs, --steps-per-epoch and --metric, or give a new --out"
        )


def open_study(plan: TunePlan) -> optuna.Study:
    """Create the study (writing the split files, enqueueing trials 0 and 1) or load it to resume;
    trials left running by an interrupted command are marked failed."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    plan.out.mkdir(parents=True, exist_ok=True)
    split = plan.split
    if split is not None and not (plan.out / TRIALS_SPLIT_FILE).exists():
        write_manifest(split, plan.out / "split.csv")
        write_manifest(split[split["split"] != "test"], plan.out / TRIALS_SPLIT_FILE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = optuna.create_study(
            study_name=STUDY_NAME,
            storage=_storage(plan.study_path),
            direction="maximize",
            load_if_exists=True,
            sampler=optuna.samplers.TPESampler(seed=0),  # replaced below, seeded per session
            # Trial 0 reports only its baseline (epoch 0), so 3 startup trials give the median two
            # trained references (trial 1, the base, and the first drawn one) before any pruning.
            pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
        )
    if FINGERPRINT_ATTR not in study.user_attrs:  # a new study
        atomic_write_text(plan.out / "space.yaml", plan.space.to_yaml())
        study.set_user_attr(FINGERPRINT_ATTR, plan.fingerprint)
        study.enqueue_trial({}, user_attrs={"role": ROLE_FROZEN})
        study.enqueue_trial({}, user_attrs={"role": ROLE_BASE})
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)  # left by an interrupted command
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # Seeded, and by the number of trials so far: a resumed study does not redraw the same points.
        study.sampler = optuna.samplers.TPESampler(
            seed=plan.base.train.seed + len(study.trials), multivariate=True, group=True
        )
    return study


def trial_role(trial: optuna.trial.BaseTrial | optuna.trial.FrozenTrial) -> str:
    return str(trial.user_attrs.get("role", ROLE_SAMPLED))


def trial_config(plan: TunePlan, trial: optuna.Trial) -> TrainingConfig:
    """The config trial ``trial`` trains: trial 0 the base untrained, trial 1 the base, others drawn."""
    role = trial_role(trial)
    if role == ROLE_SAMPLED:
        trial.set_user_attr("role", ROLE_SAMPLED)
        raw = sample_config(trial, plan.trial_base, plan.space, plan.context)
    else:
        raw = json.loads(json.dumps(plan.trial_base))
        if role == ROLE_FROZEN:
            raw["train"]["epochs"] = 0
    return validate_config(raw, source=f"trial {trial.number}")


def make_objective(
    plan: TunePlan, *, fit_fn: Callable[..., Any] | None = None
) -> Callable[[optuna.Trial], float]:
    """The objective: train trial's config into ``DIR/trials/NNNN`` and return its best val metric
    after training (epochs >= 1: the epoch-0 baseline is trial 0's value, and counting it would give
    every trial that only made the model worse the frozen value, hiding how bad it was from the
    sampler), reporting each val evaluation to the pruner. A failure records its reason as
    ``fail_reason``."""
    if fit_fn is None:
        from lookalike.training import fit as fit_fn

    def objective(trial: optuna.Trial) -> float:
        run_dir = plan.trial_dir(trial.number)
        try:
            config = trial_config(plan, trial)
        except ConfigError as err:
            trial.set_user_attr("fail_reason", f"invalid config: {err}")
            raise
        if run_dir.exists():  # left by an interrupted attempt of this very trial number
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)

        trained: list[float] = []  # val after training steps (not the epoch-0 baseline)

        def on_eval(epoch: int, metrics: dict[str, float]) -> None:
            if epoch >= 1:
                trained.append(metrics[plan.metric])
            trial.report(metrics[plan.metric], epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(
                    f"val {plan.metric} {metrics[plan.metric]:.4f} at epoch {epoch} is below the median "
                    "of earlier trials"
                )

        with (run_dir / "log.txt").open("w") as log:
            console = Console(file=log, width=120, force_terminal=False)
            try:
                result = fit_fn(config, run_dir, console=console, on_eval=on_eval)
            except optuna.TrialPruned as pruned:
                trial.set_user_attr("fail_reason", str(pruned))
                raise
            except Exception as err:
                trial.set_user_attr("fail_reason", f"{type(err).__name__}: {err}")
                raise
        trial.set_user_attr("best_epoch", result.best_epoch)
        if result.best_value is None:
            raise RuntimeError(f"trial {trial.number} finished without a val evaluation")
        if trained:  # a trial that trained is judged by its trained weights
            return max(trained)
        return float(result.best_value)

    return objective


def prune_checkpoints(plan: TunePlan, study: optuna.Study) -> None:
    """Keep only ``best.pt`` of the best trial so far (unless ``keep_checkpoints``)."""
    if plan.keep_checkpoints:
        return
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    best = study.best_trial.number if complete else None
    for folder in sorted((plan.out / "trials").glob("[0-9][0-9][0-9][0-9]")):
        checkpoints = folder / "checkpoints"
        if not checkpoints.is_dir():
            continue
        if int(folder.name) == best:
            (checkpoints / "last.pt").unlink(missing_ok=True)
        else:
            shutil.rmtree(checkpoints)


def run_study(
    plan: TunePlan,
    *,
    console: Console | None = None,
    fit_fn: Callable[..., Any] | None = None,
) -> optuna.Study:
    """Run (or resume) the study until ``plan.trials`` trials are done or the time budget is spent."""
    console = console or Console()
    study = open_study(plan)
    done = len(study.get_trials(deepcopy=False, states=DONE_STATES))
    remaining = plan.trials - done
    if remaining <= 0:
        console.print(f"{plan.out}: {done} trial(s) already done (--trials {plan.trials}); nothing to run")
        return study
    console.print(
        f"tuning {plan.metric} on val: {remaining} trial(s) to run ({done} done), trials of "
        f"{plan.trial_base['train']['epochs']} epoch(s) into {plan.out / 'trials'}"
    )
    every, epochs = plan.trial_base["eval"]["every"], plan.trial_base["train"]["epochs"]
    if epochs > 1 and every >= epochs:
        console.print(
            f"note: trials evaluate val only at their end (eval.every={every}, {epochs} epochs), so "
            "pruning cannot stop a bad one early; --set eval.every=1 lets it"
        )
    started = time.monotonic()

    def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        prune_checkpoints(plan, study)
        value = f"{trial.value:.4f}" if trial.value is not None else "-"
        best = (
            study.best_value
            if study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            else None
        )
        note = trial.user_attrs.get("fail_reason", "")
        console.print(
            f"trial {trial.number} ({trial_role(trial)}): {trial.state.name.lower()} {plan.metric} = {value}"
            + (f" (best {best:.4f})" if best is not None else "")
            + (f" [{time.monotonic() - started:.0f} s]")
            + (
                f"\n  {note.splitlines()[0]}"
                if note and trial.state != optuna.trial.TrialState.COMPLETE
                else ""
            )
        )

    try:
        study.optimize(
            make_objective(plan, fit_fn=fit_fn),
            n_trials=remaining,
            timeout=None if plan.budget_minutes is None else plan.budget_minutes * 60,
            catch=(Exception,),
            callbacks=[after_trial],
            gc_after_trial=True,
        )
    except KeyboardInterrupt:  # optuna has marked the running trial failed; the outputs still get written
        console.print("interrupted: the running trial counts as failed; rerun the same command to resume")
    return study
