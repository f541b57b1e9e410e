"""Training: one readable fit loop (:func:`fit`) and its parts.

- ``loop.py``: :func:`fit`, from a config to a run folder (or a resumed one), epoch by epoch;
- ``components.py``: everything a run is built from its config (model, batches, miner, loss,
  optimizer; :func:`build_components`) and one optimisation step (:class:`Learner`);
- ``state.py`` (what a run has done), ``epoch.py`` (one epoch), ``validation.py`` (evaluating on
  val, keeping the best), ``checkpoints.py`` (``last.pt`` / ``best.pt``), ``head_phase.py``
  (``optim.head_epochs``), ``data.py`` (the seeded training batches), ``schedule.py``, ``rng.py``;
- ``history.py``: the run's ``metrics.jsonl`` / ``train_log.jsonl`` and its plots;
- ``threshold.py``: calibrating the match decision of ``best.pt`` for ``eval.target_fpir`` at the end.

Multi-process runs go through :mod:`lookalike.distributed`, evaluation through
:mod:`lookalike.evaluation`, both below this package.
"""

from lookalike.training.components import Components, Learner, build_components
from lookalike.training.epoch import train_epoch
from lookalike.training.loop import FitResult, fit, load_run_config
from lookalike.training.state import TrainState
from lookalike.training.validation import validate

__all__ = [
    "Components",
    "FitResult",
    "Learner",
    "TrainState",
    "build_components",
    "fit",
    "load_run_config",
    "train_epoch",
    "validate",
]
