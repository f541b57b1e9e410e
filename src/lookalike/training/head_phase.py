"""The head-first phase ("linear probe, then fine-tune", Kumar et al. 2022).

For the first ``head_steps`` optimizer steps the backbone is frozen (``requires_grad`` False, so no
backbone gradient is computed at all, and its BatchNorms in eval mode) and only the head and the
loss's own parameters train; from then on the backbone's trainable set is what ``model.freeze`` says.
The phase is a pure function of the run's ``global_step``: a resumed run (mid-epoch included) lands
in the right phase without any extra state. The backbone's learning rate is kept at 0 during the
phase and then warms up on its own (:func:`~lookalike.training.schedule.warmup_cosine`'s
``group_starts``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from lookalike.models.freezing import apply_freeze

if TYPE_CHECKING:
    from lookalike.models import Embedder
    from lookalike.training.components import Learner

__all__ = ["HeadFirst"]


@dataclass(frozen=True)
class HeadFirst:
    """Freezes ``embedder``'s backbone before step ``head_steps`` and restores its trainable set
    (its ``config.freeze`` / ``last_n_blocks``) from then on."""

    embedder: Embedder
    head_steps: int

    def backbone_trains(self, global_step: int) -> bool:
        return global_step >= self.head_steps

    def apply(self, global_step: int, learner: Learner) -> bool:
        """Put the backbone in its phase for the optimizer step after ``global_step`` steps; returns
        True when that changed the trainable set (then BatchNorm modes and DDP follow)."""
        trains = self.backbone_trains(global_step)
        if self.embedder.backbone_trainable == trains:
            return False
        backbone, config = self.embedder.backbone, self.embedder.config
        if trains:
            apply_freeze(backbone, config.freeze, last_n_blocks=config.last_n_blocks)
        else:
            backbone.requires_grad_(False)
        self.embedder.train(self.embedder.training)  # frozen backbone / BatchNorms to eval mode, or back
        learner.rewrap()
        return True
