"""One training epoch: batches -> forward/backward -> optimizer steps, with checkpoints and progress."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from lookalike.training.checkpoints import save_last

if TYPE_CHECKING:
    from rich.progress import Progress

    from lookalike.training.components import Components
    from lookalike.training.state import TrainState

__all__ = ["train_epoch"]


def train_epoch(
    c: Components,
    state: TrainState,
    *,
    progress: Progress | None = None,
    on_step: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Train epoch ``state.epoch`` from batch ``state.next_batch`` to its end; ``state`` is advanced
    as it goes (a mid-epoch ``last.pt`` every ``train.checkpoint_every`` steps) and then moved to
    the start of the next epoch. Returns the epoch's record for ``train_log.jsonl``.

    The loss is summed on the device and read by the host only every ``train.log_every`` batches
    (and before a checkpoint), so logging forces no device sync per step.
    """
    config, learner = c.config, c.learner
    n_batches = len(c.data)
    world = c.dist.world_size
    task = None
    if progress is not None:
        task = progress.add_task(
            "train",
            total=n_batches,
            completed=state.next_batch,
            epoch=state.epoch + 1,
            loss=float("nan"),
            rate=0.0,
        )
    pending = _PendingLoss(state, c.device)
    c.embedder.train()
    images = 0
    t_start = t_last = time.perf_counter()
    for inputs, labels in c.data.epoch(state.epoch, start_batch=state.next_batch):
        state.next_batch += 1
        steps_now = state.next_batch % config.optim.accumulate == 0 or state.next_batch == n_batches
        if c.head_first is not None:  # the backbone frozen or training, as global_step says
            c.head_first.apply(state.global_step, learner)
        pending.add(learner.forward_backward(inputs, labels, sync=steps_now))
        images += len(labels) * world
        state.train_images += len(labels) * world
        now = time.perf_counter()
        state.train_seconds += now - t_last
        t_last = now
        if steps_now:
            _optimizer_step(c, state, pending, on_step)
        if state.next_batch % config.train.log_every == 0 or state.next_batch == n_batches:
            pending.read()
            if task is not None:
                rate = images / max(time.perf_counter() - t_start, 1e-9)
                progress.update(task, completed=state.next_batch, loss=state.epoch_loss, rate=rate)
    pending.read()
    if task is not None:
        progress.remove_task(task)
    record = {
        "epoch": state.epoch + 1,
        "loss": state.epoch_loss,
        **_learning_rates(learner.optimizer),
        "step": state.global_step,
        "images_per_second": state.images_per_second,
        "epoch_images": images,  # of this call: a resumed epoch counts from where it resumed
        "epoch_seconds": time.perf_counter() - t_start,
    }
    state.epoch, state.next_batch = state.epoch + 1, 0
    state.epoch_loss_sum, state.epoch_loss_n = 0.0, 0
    return record


class _PendingLoss:
    """The batches' losses summed on the device, added to ``state``'s epoch loss only when read
    (so that logging forces no device sync per step)."""

    def __init__(self, state: TrainState, device: torch.device) -> None:
        self.state = state
        self.total = torch.zeros((), dtype=torch.float64, device=device)
        self.n = 0

    def add(self, loss: torch.Tensor) -> None:
        self.total += loss
        self.n += 1

    def read(self) -> None:
        if self.n:
            self.state.epoch_loss_sum += float(self.total)
            self.state.epoch_loss_n += self.n
            self.total.zero_()
            self.n = 0


def _optimizer_step(
    c: Components, state: TrainState, pending: _PendingLoss, on_step: Callable[[int], None] | None
) -> None:
    """One optimizer step, then the EMA update, a mid-epoch ``last.pt`` every
    ``train.checkpoint_every`` steps (with the loss read first) and ``on_step``."""
    c.learner.step()
    state.global_step += 1
    if c.ema is not None:
        c.ema.update(c.embedder, step=state.global_step)
    every = c.config.train.checkpoint_every
    if every and state.global_step % every == 0:
        pending.read()
        save_last(c, state)
    if on_step is not None:
        on_step(state.global_step)


def _learning_rates(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """The epoch-end learning rates for the log: ``lr``, the largest of the head's and the loss's
    groups (what ``optim.lr`` drives; all groups' when the backbone is all there is), and
    ``backbone_lr``, the largest of the backbone's groups (the top block's under layer decay, 0
    during a head-first phase) when the backbone trains at all."""
    backbone = [g["lr"] for g in optimizer.param_groups if str(g.get("name", "")).startswith("backbone")]
    others = [g["lr"] for g in optimizer.param_groups if not str(g.get("name", "")).startswith("backbone")]
    rates = {"lr": max(others or backbone)}
    if backbone:
        rates["backbone_lr"] = max(backbone)
    return rates
