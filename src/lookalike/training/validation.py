"""Evaluation during a run: the val split before training and every few epochs (keeping the best
weights and deciding early stopping), and the test split at the start and with the best weights."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.console import Console

from lookalike.distributed import barrier, on_main
from lookalike.evaluation import evaluate_split
from lookalike.models import load_checkpoint
from lookalike.training.checkpoints import save_best

if TYPE_CHECKING:
    from lookalike.models import Embedder
    from lookalike.training.components import Components
    from lookalike.training.state import TrainState

__all__ = ["evaluate", "evaluate_baseline", "test_best", "validate", "worse_than_baseline_warning"]


def evaluate(c: Components, split: str, embedder: Embedder | None = None) -> dict[str, float]:
    """Retrieval metrics of ``embedder`` (default: the one training, or its EMA with optim.ema) on
    ``split``'s queries/gallery."""
    queries, gallery = c.val if split == "val" else c.test
    report = evaluate_split(
        embedder or c.eval_embedder,
        queries,
        gallery,
        ks=c.config.eval.ks,
        distance=c.distance,
        device=c.device,
        batch_size=c.config.data.eval_batch_size,
        num_workers=c.config.data.num_workers,
    )
    return report.metrics


def validate(
    c: Components,
    state: TrainState,
    *,
    epoch: int,
    console: Console,
    on_eval: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, float]:
    """Evaluate val (on rank 0), log it, keep ``best.pt``, and decide early stopping; then call
    ``on_eval(epoch, metrics)`` on rank 0 (its exceptions propagate).

    Every rank leaves with the same best-so-far fields and ``state.stopped_early``. Returns the
    metrics.
    """
    metric, patience = c.config.eval.metric, c.config.eval.patience

    def on_rank0() -> tuple[dict[str, float], float | None, int | None, int, bool]:
        metrics = evaluate(c, "val")
        c.history.log_eval({"epoch": epoch, "split": "val", "step": state.global_step, **metrics})
        value = metrics[metric]
        best_value, best_epoch, stale = state.best_value, state.best_epoch, state.stale_evals
        if best_value is None or value > best_value:
            best_value, best_epoch, stale = value, epoch, 0
            save_best(c, epoch=epoch, value=value)
        else:
            stale += 1
        c.history.plot()
        if epoch == 0:
            console.print(f"baseline (before training): val {metric} = {value:.4f}")
        else:
            console.print(
                f"epoch {epoch}: val {metric} = {value:.4f} (best {best_value:.4f} at epoch {best_epoch})"
            )
        stop = patience is not None and stale >= patience
        if stop:
            console.print(f"early stopping: no improvement in {patience} evaluations")
        return metrics, best_value, best_epoch, stale, stop

    metrics, state.best_value, state.best_epoch, state.stale_evals, state.stopped_early = on_main(
        on_rank0, c.dist
    )
    if on_eval is not None and c.dist.is_main:
        on_eval(epoch, metrics)
    return metrics


def evaluate_baseline(
    c: Components,
    state: TrainState,
    *,
    console: Console,
    on_eval: Callable[[int, dict[str, float]], None] | None = None,
) -> None:
    """Before training: val (which also writes the first ``best.pt``) and, if the split has one, test."""
    state.baseline = validate(c, state, epoch=0, console=console, on_eval=on_eval)

    def test_on_rank0() -> dict[str, float] | None:
        if not len(c.test[0]):
            return None
        metrics = evaluate(c, "test")
        c.history.log_eval({"epoch": 0, "split": "test", "step": 0, **metrics})
        return metrics

    state.test_baseline = on_main(test_on_rank0, c.dist)
    barrier(c.dist)


def test_best(c: Components, state: TrainState) -> dict[str, float] | None:
    """The test split with the best weights (``best.pt``); None when the split has no test classes."""

    def on_rank0() -> dict[str, float] | None:
        if not len(c.test[0]):
            return None
        if state.best_epoch == 0 and state.test_baseline is not None:
            metrics = state.test_baseline  # the best weights are the initial ones, already evaluated
        else:
            best = load_checkpoint(c.run_dir / "checkpoints" / "best.pt", map_location="cpu")
            metrics = evaluate(c, "test", best.embedder.to(c.device))
        c.history.log_eval(
            {
                "epoch": state.best_epoch,
                "split": "test",
                "step": state.global_step,
                "weights": "best",
                **metrics,
            }
        )
        return metrics

    return on_main(on_rank0, c.dist)


def worse_than_baseline_warning(
    *,
    metric: str,
    baseline: float,
    last: float,
    best_epoch: int | None,
    best_value: float | None,
    config_path: str,
) -> str | None:
    """The warning for a run whose last val evaluation (``last``) of ``metric`` is below the epoch-0
    baseline (the untrained or frozen model), naming the kept ``best.pt``; None when it is not below."""
    if not last < baseline:
        return None
    if best_epoch in (None, 0):
        kept = "Kept checkpoints/best.pt from epoch 0 (the untrained weights)."
    else:
        kept = (
            f"Kept checkpoints/best.pt from epoch {best_epoch} ({metric} {best_value:.3f}), but the last "
            "evaluation fell below the baseline."
        )
    return (
        f"warning: val {metric} after training ({last:.3f}) is below the epoch-0 baseline ({baseline:.3f}): "
        f"training made the model worse on val. {kept} Try `lookalike tune --config {config_path} "
        "--trials 20 --out DIR` to search learning rates, frozen blocks, head phase and loss on this "
        "split, or lower optim.backbone_lr / set optim.head_epochs / optim.layer_decay."
    )
