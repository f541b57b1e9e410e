"""The fit loop, in plain sight.

PK batches -> one backbone for every sample -> (gather across ranks) -> miner -> loss (through the
cross-batch memory if configured) -> AdamW with warm-up + cosine, AMP, clipping, accumulation.
Evaluation on the val query/gallery split before training (the baseline) and every N epochs;
best/last checkpoints; early stopping; exact resume.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch.utils.data import DataLoader

from lookalike.config import TrainingConfig, config_to_dict, save_config, validate_config
from lookalike.data import ManifestDataset, PKSampler, train_transform
from lookalike.distances import create_distance
from lookalike.embed import embed_frame
from lookalike.losses import create_loss, loss_class
from lookalike.miners import CrossBatchMemory, create_miner
from lookalike.models import Embedder, create_embedder, load_checkpoint, save_checkpoint
from lookalike.training.data import SeededBatches, SeededItems, resolve_split
from lookalike.training.distributed import DistInfo, all_gather_embeddings, barrier, cleanup, init_distributed
from lookalike.training.evaluation import evaluate_split, split_frames
from lookalike.training.history import RunHistory
from lookalike.training.rng import get_rng_state, seed_everything, set_rng_state
from lookalike.training.schedule import warmup_cosine

__all__ = ["FitResult", "fit", "resolve_device"]


@dataclass
class FitResult:
    """What a finished (or early-stopped) run reports."""

    run_dir: Path
    epochs_done: int
    best_epoch: int | None
    best_value: float | None
    baseline: dict[str, float] = field(default_factory=dict)
    val: dict[str, float] = field(default_factory=dict)
    test_baseline: dict[str, float] | None = None
    test: dict[str, float] | None = None
    images_per_second: float = 0.0
    train_seconds: float = 0.0


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"train.device={name!r} but CUDA is not available here; use 'cpu' or 'auto'")
    return device


def _amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "fp16":
        return torch.float16
    return torch.bfloat16


class _HeadOnly(torch.nn.Module):
    """The trainable part when backbone features are cached (for DDP wrapping)."""

    def __init__(self, embedder: Embedder) -> None:
        super().__init__()
        self.embedder = embedder

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.embedder.embed_features(features)


def _build_criterion(
    config: TrainingConfig, embedder: Embedder, num_classes: int, miner: Any | None
) -> torch.nn.Module:
    # proxy losses need the data's class count and the embedding size: filled in unless given
    inferred = {"num_classes": num_classes, "embedding_size": embedder.embed_dim}
    params = inspect.signature(loss_class(config.loss.name)).parameters
    loss_kwargs = {k: v for k, v in inferred.items() if k in params} | config.loss.kwargs()
    loss = create_loss(config.loss.name, **loss_kwargs)
    if config.memory.size > 0:
        return CrossBatchMemory(
            loss,
            embedding_size=embedder.embed_dim,
            memory_size=config.memory.size,
            miner=miner,
            warmup_steps=config.memory.warmup_steps,
        )
    return loss


def fit(
    config: TrainingConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    console: Console | None = None,
    on_step: Callable[[int], None] | None = None,
) -> FitResult:
    """Train as ``config`` says, writing the run folder ``run_dir``.

    ``resume=True`` continues from ``run_dir/checkpoints/last.pt`` exactly where it stopped
    (mid-epoch included). ``on_step(global_step)`` is called after every optimizer step (tests use
    it to interrupt a run).
    """
    run_dir = Path(run_dir)
    device = resolve_device(config.train.device)
    dist_info = init_distributed(device)
    if dist_info.enabled and device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
        torch.cuda.set_device(device)
    console = console or Console(quiet=not dist_info.is_main)
    try:
        return _fit(config, run_dir, resume, device, dist_info, console, on_step)
    finally:
        cleanup(dist_info)


def _fit(
    config: TrainingConfig,
    run_dir: Path,
    resume: bool,
    device: torch.device,
    dist_info: DistInfo,
    console: Console,
    on_step: Callable[[int], None] | None,
) -> FitResult:
    is_main = dist_info.is_main
    ckpt_dir = run_dir / "checkpoints"
    last_path = ckpt_dir / "last.pt"
    state: dict[str, Any] | None = None
    if resume:
        if not last_path.exists():
            raise FileNotFoundError(
                f"cannot resume: {last_path} does not exist (no checkpoint was written yet)"
            )
        checkpoint = load_checkpoint(last_path, map_location="cpu")
        state = checkpoint.extra
    elif is_main and (run_dir / "metrics.jsonl").exists():
        raise FileExistsError(
            f"run folder {run_dir} already holds a run (metrics.jsonl); use --resume {run_dir} or a new --out"
        )

    seed_everything(config.train.seed + dist_info.rank)
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / "config.yaml")
        frame = resolve_split(config.data, run_dir)
    barrier(dist_info)
    if not is_main:
        frame = resolve_split(config.data, run_dir, write=False)

    # ---- model, data, sampling, loss ---------------------------------------------------------
    # a resumed run rebuilds the model from its checkpoint: no download, no weights file needed
    embedder = (checkpoint.embedder if state is not None else create_embedder(config.model)).to(device)
    prep = embedder.preprocessing
    train_frame = frame[frame["split"] == "train"].reset_index(drop=True)
    train_dataset = ManifestDataset(
        train_frame,
        transform=train_transform(prep, **config.augment.model_dump()),
    )
    num_classes = len(train_dataset.classes)
    sampler = PKSampler(
        train_dataset.labels,
        p=config.sampler.p,
        k=config.sampler.k,
        seed=config.train.seed,
        rank=dist_info.rank,
        world_size=dist_info.world_size,
    )
    batches = SeededBatches(sampler, seed=config.train.seed + 7919 * dist_info.rank)
    batches_per_epoch = (
        len(sampler)
        if config.train.steps_per_epoch is None
        else min(len(sampler), config.train.steps_per_epoch * config.optim.accumulate)
    )
    steps_per_epoch = math.ceil(batches_per_epoch / config.optim.accumulate)

    cache = config.model.freeze == "frozen" and config.train.cache_features
    cached_features: torch.Tensor | None = None
    miner = create_miner(config.miner.name, **config.miner.kwargs()) if config.miner.name else None
    criterion = _build_criterion(config, embedder, num_classes, miner).to(device)
    uses_memory = isinstance(criterion, CrossBatchMemory)

    groups = embedder.param_groups(
        lr=config.optim.lr, backbone_lr=config.optim.backbone_lr, weight_decay=config.optim.weight_decay
    )
    loss_params = [p for p in criterion.parameters() if p.requires_grad]
    if loss_params:
        groups.append({"params": loss_params, "lr": config.optim.lr, "weight_decay": 0.0})
    if not groups:
        if config.train.epochs > 0:
            raise ValueError(
                f"nothing to train: model.freeze={config.model.freeze!r} with "
                f"model.head={config.model.head!r} and loss {config.loss.name!r} leaves no trainable "
                "parameter; use head: linear or mlp, "
                "another freeze, or train.epochs: 0 to only evaluate"
            )
        # evaluation only: an optimizer over a placeholder keeps the code below uniform
        groups = [{"params": [torch.nn.Parameter(torch.zeros(1))]}]
    optimizer = torch.optim.AdamW(groups, lr=config.optim.lr, weight_decay=config.optim.weight_decay)

    train_module: torch.nn.Module = _HeadOnly(embedder) if cache else embedder
    model = train_module
    if dist_info.enabled and config.train.epochs > 0:
        model = torch.nn.parallel.DistributedDataParallel(
            train_module, device_ids=[device.index] if device.type == "cuda" else None
        )
    total_steps = steps_per_epoch * config.train.epochs
    scheduler = warmup_cosine(
        optimizer,
        total_steps=total_steps,
        warmup_steps=round(config.optim.warmup_epochs * steps_per_epoch),
        min_lr_ratio=config.optim.min_lr_ratio,
    )
    amp_dtype = _amp_dtype(config.train.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    history = RunHistory(run_dir)
    distance = create_distance(config.eval.distance)
    val_q, val_g = split_frames(frame, "val")
    test_q, test_g = split_frames(frame, "test")

    def evaluate(split: str, model_to_eval: Embedder | None = None) -> dict[str, float]:
        q, g = (val_q, val_g) if split == "val" else (test_q, test_g)
        report = evaluate_split(
            model_to_eval or embedder,
            q,
            g,
            ks=config.eval.ks,
            distance=distance,
            device=device,
            batch_size=config.data.eval_batch_size,
            num_workers=config.data.num_workers,
        )
        return report.metrics

    # ---- start or resume ---------------------------------------------------------------------
    epoch, next_batch, global_step = 0, 0, 0
    best_value: float | None = None
    best_epoch: int | None = None
    stale_evals = 0
    epoch_loss_sum, epoch_loss_n = 0.0, 0
    baseline: dict[str, float] = {}
    test_baseline: dict[str, float] | None = None
    train_images, train_seconds = 0, 0.0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        criterion.load_state_dict(state["criterion"])
        if miner is not None and hasattr(miner, "load_state_dict") and state.get("miner") is not None:
            miner.load_state_dict(state["miner"])
        set_rng_state(state["rng"])
        epoch, next_batch, global_step = state["epoch"], state["next_batch"], state["global_step"]
        best_value, best_epoch, stale_evals = state["best_value"], state["best_epoch"], state["stale_evals"]
        epoch_loss_sum, epoch_loss_n = state["epoch_loss_sum"], state["epoch_loss_n"]
        baseline, test_baseline = state["baseline"], state["test_baseline"]
        train_images, train_seconds = state["train_images"], state["train_seconds"]
        if is_main:
            history.truncate_after(epoch)
        console.print(f"resumed from {last_path}: epoch {epoch + 1}, batch {next_batch}, step {global_step}")

    def checkpoint_state() -> dict[str, Any]:
        return {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "criterion": criterion.state_dict(),
            "miner": miner.state_dict() if miner is not None and hasattr(miner, "state_dict") else None,
            "rng": get_rng_state(),
            "epoch": epoch,
            "next_batch": next_batch,
            "global_step": global_step,
            "best_value": best_value,
            "best_epoch": best_epoch,
            "stale_evals": stale_evals,
            "epoch_loss_sum": epoch_loss_sum,
            "epoch_loss_n": epoch_loss_n,
            "baseline": baseline,
            "test_baseline": test_baseline,
            "train_images": train_images,
            "train_seconds": train_seconds,
        }

    def save_last() -> None:
        if is_main:
            save_checkpoint(last_path, embedder, config=config_to_dict(config), extra=checkpoint_state())

    def record_eval(at_epoch: int) -> tuple[dict[str, float], bool]:
        """Evaluate val, log, keep best. Returns the metrics (empty off rank 0) and whether early
        stopping says stop (agreed by every rank)."""
        nonlocal best_value, best_epoch, stale_evals
        stop = False
        metrics: dict[str, float] = {}
        if is_main:
            metrics = evaluate("val")
            history.log_eval({"epoch": at_epoch, "split": "val", "step": global_step, **metrics})
            value = metrics[config.eval.metric]
            if best_value is None or value > best_value:
                best_value, best_epoch, stale_evals = value, at_epoch, 0
                save_checkpoint(
                    ckpt_dir / "best.pt",
                    embedder,
                    config=config_to_dict(config),
                    extra={"epoch": at_epoch, "metric": config.eval.metric, "value": value},
                )
            else:
                stale_evals += 1
            history.plot()
            if at_epoch == 0:
                console.print(f"baseline (before training): val {config.eval.metric} = {value:.4f}")
            else:
                console.print(
                    f"epoch {at_epoch}: val {config.eval.metric} = {value:.4f} "
                    f"(best {best_value:.4f} at epoch {best_epoch})"
                )
            stop = config.eval.patience is not None and stale_evals >= config.eval.patience
        return metrics, _broadcast_flag(stop, dist_info)

    if state is None:
        baseline, _ = record_eval(0)
        if is_main and len(test_q):
            test_baseline = evaluate("test")
            history.log_eval({"epoch": 0, "split": "test", "step": 0, **test_baseline})
        barrier(dist_info)

    # ---- the loop ----------------------------------------------------------------------------
    if cache and epoch < config.train.epochs:  # after any resume: features of the weights in use
        console.print(
            f"caching frozen backbone features of {len(train_frame)} training images (eval transform)"
        )
        cached_features = embed_frame(
            embedder,
            train_frame,
            batch_size=config.data.eval_batch_size,
            device=device,
            features_only=True,
            num_workers=config.data.num_workers,
        )
    # One loader for the whole run: workers persist across epochs; the batch sampler runs in this
    # process, so set_epoch() below takes effect at every iter(loader).
    loader = None
    if not cache:
        loader = DataLoader(
            SeededItems(train_dataset),
            batch_sampler=batches,
            num_workers=config.data.num_workers,
            pin_memory=device.type == "cuda",
            persistent_workers=config.data.num_workers > 0,
            worker_init_fn=_lower_priority,
        )
    stopped_early = False
    with Progress(
        TextColumn("[bold]epoch {task.fields[epoch]}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TextColumn("{task.fields[rate]:.1f} img/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not is_main,
        refresh_per_second=2,
        transient=False,
    ) as progress:
        while epoch < config.train.epochs and not stopped_early:
            task = progress.add_task(
                "train",
                total=batches_per_epoch,
                completed=next_batch,
                epoch=epoch + 1,
                loss=float("nan"),
                rate=0.0,
            )
            batches.set_epoch(epoch, start_batch=next_batch)
            embedder.train()
            iterator = iter(batches) if loader is None else iter(loader)
            t_epoch = t_last = time.perf_counter()
            images_epoch = 0
            while next_batch < batches_per_epoch:
                batch = next(iterator, None)
                if batch is None:
                    break
                if cache:
                    idx = torch.tensor([i for i, _ in batch])
                    inputs, labels = cached_features[idx], train_dataset.labels[idx]
                else:
                    inputs, labels, _ = batch
                inputs, labels = inputs.to(device, non_blocking=True), labels.to(device, non_blocking=True)
                with torch.autocast(
                    device_type=device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
                ):
                    embeddings = model(inputs)
                embeddings = embeddings.float()
                all_emb, all_labels = all_gather_embeddings(embeddings, labels, dist_info)
                if uses_memory:
                    loss = criterion(all_emb, all_labels)
                else:
                    tuples = miner(all_emb, all_labels) if miner is not None else None
                    loss = criterion(all_emb, all_labels, tuples)
                scaler.scale(loss * dist_info.world_size / config.optim.accumulate).backward()
                epoch_loss_sum += float(loss.detach())
                epoch_loss_n += 1
                images_epoch += len(labels) * dist_info.world_size
                train_images += len(labels) * dist_info.world_size
                now = time.perf_counter()
                train_seconds += now - t_last
                t_last = now
                next_batch += 1
                if next_batch % config.optim.accumulate == 0 or next_batch == batches_per_epoch:
                    if config.optim.grad_clip is not None:
                        scaler.unscale_(optimizer)
                        torch.nn.utils.clip_grad_norm_(
                            [p for g in optimizer.param_groups for p in g["params"]], config.optim.grad_clip
                        )
                    scaler.step(optimizer)
                    scaler.update()
                    optimizer.zero_grad(set_to_none=True)
                    scheduler.step()
                    global_step += 1
                    if config.train.checkpoint_every and global_step % config.train.checkpoint_every == 0:
                        save_last()
                    if on_step is not None:
                        on_step(global_step)
                if next_batch % config.train.log_every == 0 or next_batch == batches_per_epoch:
                    elapsed = time.perf_counter() - t_epoch
                    progress.update(
                        task,
                        completed=next_batch,
                        loss=epoch_loss_sum / max(1, epoch_loss_n),
                        rate=images_epoch / max(elapsed, 1e-9),
                    )
            progress.update(task, completed=batches_per_epoch)
            progress.remove_task(task)
            epoch += 1
            mean_loss = epoch_loss_sum / max(1, epoch_loss_n)
            if is_main:
                history.log_epoch(
                    {
                        "epoch": epoch,
                        "loss": mean_loss,
                        "lr": optimizer.param_groups[0]["lr"],
                        "step": global_step,
                        "images_per_second": train_images / max(train_seconds, 1e-9),
                        "epoch_images": images_epoch,
                        "epoch_seconds": time.perf_counter() - t_epoch,
                    }
                )
            next_batch, epoch_loss_sum, epoch_loss_n = 0, 0.0, 0
            if epoch % config.eval.every == 0 or epoch == config.train.epochs:
                _, stopped_early = record_eval(epoch)
                if stopped_early:
                    console.print(f"early stopping: no improvement in {config.eval.patience} evaluations")
            save_last()
            barrier(dist_info)

    # ---- final: test split with the best weights -----------------------------------------------
    val_records = [r for r in history.evals() if r["split"] == "val"] if is_main else []
    val_final = val_records[-1] if val_records else {}
    test_metrics = None
    if is_main and len(test_q):
        if best_epoch == 0 and test_baseline is not None:
            test_metrics = test_baseline  # the best weights are the initial ones, already evaluated
        else:
            best = load_checkpoint(ckpt_dir / "best.pt", map_location="cpu").embedder.to(device)
            test_metrics = evaluate("test", best)
        history.log_eval(
            {"epoch": best_epoch, "split": "test", "step": global_step, "weights": "best", **test_metrics}
        )
    result = FitResult(
        run_dir=run_dir,
        epochs_done=epoch,
        best_epoch=best_epoch,
        best_value=best_value,
        baseline=baseline,
        val={k: v for k, v in val_final.items() if isinstance(v, float)},
        test_baseline=test_baseline,
        test=test_metrics,
        images_per_second=train_images / max(train_seconds, 1e-9),
        train_seconds=train_seconds,
    )
    if is_main:
        _final_table(console, config, result)
    return result


def _lower_priority(_worker_id: int) -> None:
    """Loader workers yield the CPU to the training step: decoding fills the gaps, it does not
    preempt the forward/backward (matters on machines with few cores)."""
    import os

    with contextlib.suppress(OSError):
        os.nice(5)


def _broadcast_flag(flag: bool, info: DistInfo) -> bool:
    if not info.enabled:
        return flag
    import torch.distributed as dist

    t = torch.tensor([int(flag)])
    dist.broadcast(t, src=0)
    return bool(t.item())


def _final_table(console: Console, config: TrainingConfig, result: FitResult) -> None:
    from rich.table import Table

    table = Table(title=f"run {result.run_dir} — best {config.eval.metric} at epoch {result.best_epoch}")
    table.add_column("metric")
    columns = [("val before", result.baseline), ("val last", result.val)]
    if result.test is not None:
        columns += [("test before", result.test_baseline or {}), ("test best", result.test)]
    for name, _ in columns:
        table.add_column(name, justify="right")
    keys = [k for k in result.baseline if "@" in k or k == "r_precision"]
    for key in keys:
        table.add_row(key, *(f"{col.get(key, float('nan')):.4f}" for _, col in columns))
    console.print(table)
    console.print(
        f"trained {result.epochs_done} epochs in {result.train_seconds:.1f} s "
        f"({result.images_per_second:.1f} images/s)"
    )


def load_run_config(run_dir: str | Path, overrides: list[str] | None = None) -> TrainingConfig:
    """The config a run was started with (``run_dir/config.yaml``), with optional overrides."""
    import yaml

    from lookalike.config import apply_overrides

    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} is not a run folder: {path} is missing")
    raw = yaml.safe_load(path.read_text())
    return validate_config(apply_overrides(raw, overrides or []), source=str(path))
