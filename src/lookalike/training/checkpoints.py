"""The run's checkpoints: ``last.pt`` (everything needed to resume exactly) and ``best.pt``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lookalike.config import config_to_dict
from lookalike.models import Checkpoint, save_checkpoint
from lookalike.training.rng import get_rng_state, set_rng_state

if TYPE_CHECKING:
    from lookalike.training.components import Components
    from lookalike.training.state import TrainState

__all__ = ["restore_last", "save_best", "save_last"]


def save_last(c: Components, state: TrainState) -> None:
    """``checkpoints/last.pt``: the weights, the run's state, the optimizer's, schedule's, scaler's,
    loss's and miner's states, the EMA's weights (optim.ema) and every random state (written by
    rank 0)."""
    if c.dist.is_main:
        extra = state.state_dict() | c.learner.state_dict() | {"rng": get_rng_state()}
        if c.ema is not None:
            extra["ema"] = c.ema.state_dict()
        save_checkpoint(
            c.run_dir / "checkpoints" / "last.pt", c.embedder, config=config_to_dict(c.config), extra=extra
        )


def restore_last(c: Components, state: TrainState, checkpoint: Checkpoint) -> None:
    """Continue from ``last.pt`` (its embedder was already used to build ``c``); the run's records
    past the checkpoint are dropped, to be written again."""
    extra = checkpoint.extra
    state.load_state_dict(extra)
    c.learner.load_state_dict(extra)
    set_rng_state(extra["rng"])
    if c.ema is not None:
        if "ema" not in extra:
            raise ValueError(
                f"cannot resume {c.run_dir} with optim.ema={c.config.optim.ema}: its last.pt holds no EMA "
                "weights (the run was started without optim.ema); resume with the run's own config"
            )
        c.ema.load_state_dict(extra["ema"])
    if c.dist.is_main:
        c.history.truncate_after(state.epoch)


def save_best(c: Components, *, epoch: int, value: float) -> None:
    """``checkpoints/best.pt``: the evaluated weights (the EMA's when optim.ema is on)."""
    save_checkpoint(
        c.run_dir / "checkpoints" / "best.pt",
        c.eval_embedder,
        config=config_to_dict(c.config),
        extra={"epoch": epoch, "metric": c.config.eval.metric, "value": value},
    )
