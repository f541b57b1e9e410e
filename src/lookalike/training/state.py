"""Where a run stands: the counters, best-so-far and running sums that a checkpoint must restore."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["TrainState"]


@dataclass
class TrainState:
    """The progress of a run, as plain Python values (saved into ``checkpoints/last.pt``).

    ``epoch`` counts finished epochs; ``next_batch`` the batches of the current one already
    trained (a checkpoint taken mid-epoch resumes there). The best-so-far fields are kept on rank 0
    and shared with every rank after each evaluation.
    """

    epoch: int = 0
    next_batch: int = 0
    global_step: int = 0
    best_value: float | None = None
    best_epoch: int | None = None
    stale_evals: int = 0
    stopped_early: bool = False
    epoch_loss_sum: float = 0.0
    epoch_loss_n: int = 0
    baseline: dict[str, float] = field(default_factory=dict)
    test_baseline: dict[str, float] | None = None
    train_images: int = 0
    train_seconds: float = 0.0

    @property
    def epoch_loss(self) -> float:
        """Mean training loss over the batches of the current epoch so far (nan before any)."""
        return self.epoch_loss_sum / self.epoch_loss_n if self.epoch_loss_n else float("nan")

    @property
    def images_per_second(self) -> float:
        return self.train_images / max(self.train_seconds, 1e-9)

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`. Other keys are ignored (a checkpoint's ``extra`` holds
        the optimizer's and others' states beside these); a field missing from a checkpoint
        written before it existed keeps its default."""
        for f in fields(self):
            if f.name in state:
                setattr(self, f.name, copy.deepcopy(state[f.name]))
