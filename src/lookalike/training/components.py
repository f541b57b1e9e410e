"""Everything a run is built from its config: the model, the training batches, the miner and loss,
the optimizer and schedule (:func:`build_components`), and one optimisation step (:class:`Learner`)."""

from __future__ import annotations

import contextlib
import inspect
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from rich.console import Console
from timm.utils import ModelEmaV3

from lookalike.config import ConfigError, TrainingConfig
from lookalike.data import BatchTrainTransform, ManifestDataset, PKSampler, batchable, train_transform
from lookalike.distances import BaseDistance, create_distance
from lookalike.distributed import (
    DistInfo,
    all_gather_embeddings,
    average_gradients,
    broadcast_state,
    scale_grad,
    shared_seed,
)
from lookalike.embed import embed_frame
from lookalike.evaluation import split_frames
from lookalike.losses import create_loss, loss_class
from lookalike.miners import CrossBatchMemory, create_miner
from lookalike.models import Embedder, create_embedder
from lookalike.training.data import SeededBatches, TrainData
from lookalike.training.head_phase import HeadFirst
from lookalike.training.history import RunHistory
from lookalike.training.schedule import warmup_cosine

if TYPE_CHECKING:
    import pandas as pd

    from lookalike.models import Checkpoint

__all__ = [
    "Components",
    "Learner",
    "amp_dtype",
    "build_components",
    "build_criterion",
    "build_ema",
    "build_learner",
    "build_train_data",
]


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``train.amp`` on ``device`` (None: full precision)."""
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    return torch.float16 if amp == "fp16" else torch.bfloat16


@dataclass
class Learner:
    """One optimisation step: forward, gather across ranks, mine, loss, backward; then clip and step.

    ``model`` is the trainable module (DDP-wrapped when distributed); ``criterion`` the loss (or the
    cross-batch memory around it), whose own parameters are averaged over ranks here, since DDP
    does not see them.
    """

    model: torch.nn.Module
    criterion: torch.nn.Module
    miner: Any | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    dist: DistInfo
    amp_dtype: torch.dtype | None = None
    accumulate: int = 1
    grad_clip: float | None = None

    @property
    def criterion_params(self) -> list[torch.nn.Parameter]:
        return [p for p in self.criterion.parameters() if p.requires_grad]

    def forward_backward(
        self, inputs: torch.Tensor, labels: torch.Tensor, *, sync: bool = True
    ) -> torch.Tensor:
        """Accumulate the gradient of one batch; returns the (detached) loss of the global batch.

        ``sync=False`` (the inner batches of gradient accumulation) skips DDP's all-reduce.
        """
        ddp = isinstance(self.model, torch.nn.parallel.DistributedDataParallel)
        with self.model.no_sync() if ddp and not sync else contextlib.nullcontext():
            device_type = inputs.device.type
            with torch.autocast(
                device_type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None
            ):
                embeddings = self.model(inputs)
            embeddings = embeddings.float()
            if self.dist.enabled:  # DDP averages over ranks; each rank holds its samples' share of the sum
                embeddings = scale_grad(embeddings, self.dist.world_size)
            all_emb, all_labels = all_gather_embeddings(embeddings, labels, self.dist)
            if isinstance(self.criterion, CrossBatchMemory):
                loss = self.criterion(all_emb, all_labels)  # mines with the run's miner itself
            else:
                tuples = self.miner(all_emb, all_labels) if self.miner is not None else None
                loss = self.criterion(all_emb, all_labels, tuples)
            self.scaler.scale(loss / self.accumulate).backward()
        return loss.detach()

    def step(self) -> None:
        """Average the loss's gradients over ranks, clip, step the optimizer and the schedule."""
        average_gradients(self.criterion_params, self.dist)
        if self.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()

    def rewrap(self) -> None:
        """After the module's trainable set changed (the head-first phase's switch): DDP fixes the
        parameters it synchronises when it is built, so build it again (every rank switches at the
        same step, and building it is a collective). Without DDP nothing to do."""
        if not self.dist.enabled:
            return
        module = self.model
        if isinstance(module, torch.nn.parallel.DistributedDataParallel):
            module = module.module
        self.model = module  # drop the old wrapper (and its gradient hooks) first
        self.model = _ddp(module, self.dist)

    def state_dict(self) -> dict[str, Any]:
        miner_state = self.miner.state_dict() if hasattr(self.miner, "state_dict") else None
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "criterion": self.criterion.state_dict(),
            "miner": miner_state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.criterion.load_state_dict(state["criterion"])
        if hasattr(self.miner, "load_state_dict") and state.get("miner") is not None:
            self.miner.load_state_dict(state["miner"])


@dataclass
class Components:
    """What :func:`build_components` makes of a config; the fit loop only calls into these."""

    config: TrainingConfig
    run_dir: Path
    dist: DistInfo
    embedder: Embedder
    learner: Learner
    data: TrainData
    val: tuple[pd.DataFrame, pd.DataFrame]  # (queries, gallery)
    test: tuple[pd.DataFrame, pd.DataFrame]
    distance: BaseDistance
    history: RunHistory
    ema: ModelEmaV3 | None = None  # optim.ema: the averaged weights, updated after every step
    head_first: HeadFirst | None = None  # optim.head_epochs: the backbone's phase, from global_step

    @property
    def device(self) -> torch.device:
        return self.dist.device

    @property
    def eval_embedder(self) -> Embedder:
        """The weights that are evaluated and kept as best.pt: the EMA's when optim.ema is on."""
        return self.ema.module if self.ema is not None else self.embedder

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.data) / self.config.optim.accumulate)


class _HeadOnly(torch.nn.Module):
    """The trainable part when backbone features are cached (for DDP wrapping)."""

    def __init__(self, embedder: Embedder) -> None:
        super().__init__()
        self.embedder = embedder

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.embedder.embed_features(features)


def build_components(
    config: TrainingConfig,
    frame: pd.DataFrame,
    *,
    run_dir: Path,
    dist: DistInfo,
    checkpoint: Checkpoint | None = None,
    console: Console | None = None,
) -> Components:
    """Build a run from its config and split manifest (``frame``); a resumed run rebuilds the
    embedder from its ``checkpoint`` (no download, no weights file needed) and then loads the rest
    of its state with :meth:`Learner.load_state_dict`."""
    embedder = (checkpoint.embedder if checkpoint is not None else create_embedder(config.model)).to(
        dist.device
    )
    train_frame = frame[frame["split"] == "train"].reset_index(drop=True)
    cache = config.model.freeze == "frozen" and config.train.cache_features
    data = build_train_data(config, embedder, train_frame, dist=dist, cache_features=cache, console=console)
    miner = create_miner(config.miner.name, **config.miner.kwargs()) if config.miner.name else None
    if dist.enabled and miner is not None and getattr(miner, "seed", 0) is None:
        # an unseeded random miner would draw differently on each rank from the same gathered batch
        miner.seed = shared_seed(dist)
    criterion = build_criterion(config, embedder, len(data.dataset.classes), miner)
    steps_per_epoch = math.ceil(data.batches_per_epoch / config.optim.accumulate)
    head_steps = _head_steps(config, steps_per_epoch, console)
    learner = build_learner(
        config,
        _HeadOnly(embedder) if cache else embedder,
        _param_groups(config, embedder),
        criterion,
        miner,
        dist=dist,
        steps_per_epoch=steps_per_epoch,
        head_steps=head_steps,
    )
    return Components(
        config=config,
        run_dir=run_dir,
        dist=dist,
        embedder=embedder,
        learner=learner,
        data=data,
        val=split_frames(frame, "val"),
        test=split_frames(frame, "test"),
        distance=create_distance(config.eval.distance),
        history=RunHistory(run_dir),
        ema=build_ema(config, embedder),
        head_first=HeadFirst(embedder, head_steps) if head_steps > 0 else None,
    )


def build_train_data(
    config: TrainingConfig,
    embedder: Embedder,
    train_frame: pd.DataFrame,
    *,
    dist: DistInfo,
    cache_features: bool = False,
    console: Console | None = None,
) -> TrainData:
    """The training batches of this rank: the train rows augmented for ``embedder``'s input, drawn
    in seeded PK batches; with ``cache_features`` the frozen backbone's features of the images
    (eval transform) are computed once and trained on instead."""
    prep = embedder.preprocessing
    augment = config.augment.model_dump()
    dataset = ManifestDataset(
        train_frame,
        transform=train_transform(prep, **augment),
        cache_bytes=config.data.cache_images_mb * 2**20 if config.data.cache_images else 0,
    )
    sampler = PKSampler(
        dataset.labels,
        p=config.sampler.p,
        k=config.sampler.k,
        seed=config.train.seed,
        rank=dist.rank,
        world_size=dist.world_size,
    )
    batches_per_epoch = len(sampler)
    if config.train.steps_per_epoch is not None:
        batches_per_epoch = min(batches_per_epoch, config.train.steps_per_epoch * config.optim.accumulate)

    def features() -> torch.Tensor:
        if console is not None:
            console.print(
                f"caching frozen backbone features of {len(train_frame)} training images (eval transform)"
            )
        return embed_frame(
            embedder,
            train_frame,
            batch_size=config.data.eval_batch_size,
            device=dist.device,
            features_only=True,
            num_workers=config.data.num_workers,
        )

    return TrainData(
        dataset,
        SeededBatches(sampler, seed=config.train.seed + 7919 * dist.rank),
        batches_per_epoch=batches_per_epoch,
        device=dist.device,
        num_workers=config.data.num_workers,
        cache_features=features if cache_features else None,
        # images in memory and augmentations with a batched form: augmented a batch at a time
        batch_transform=BatchTrainTransform(prep, **augment)
        if dataset.cached and batchable(prep, **augment)
        else None,
    )


def _head_steps(config: TrainingConfig, steps_per_epoch: int, console: Console | None) -> int:
    """Optimizer steps of the head-first phase (``optim.head_epochs``); with model.freeze=frozen
    the whole run trains only the head, so there is no such phase."""
    if config.model.freeze == "frozen":
        return 0
    head_steps = round(config.optim.head_epochs * steps_per_epoch)
    if head_steps > 0 and console is not None:  # (a phase with nothing to train: refused by the config)
        console.print(
            f"head-first phase: the backbone is frozen for the first {head_steps} of "
            f"{steps_per_epoch * config.train.epochs} optimizer steps (optim.head_epochs)"
        )
    return head_steps


def _param_groups(config: TrainingConfig, embedder: Embedder) -> list[dict[str, Any]]:
    """The optimizer's parameter groups (learning rates, weight decay, layer decay)."""
    try:
        return embedder.param_groups(
            lr=config.optim.lr,
            backbone_lr=config.optim.backbone_lr,
            weight_decay=config.optim.weight_decay,
            layer_decay=config.optim.layer_decay,
        )
    except ValueError as err:  # a backbone whose blocks are not known
        decay = config.optim.layer_decay
        raise ConfigError(f"optim.layer_decay={decay} needs the backbone's blocks: {err}") from None


def build_ema(config: TrainingConfig, embedder: Embedder) -> ModelEmaV3 | None:
    """The EMA of ``embedder``'s weights (and BatchNorm statistics) when ``optim.ema`` is set.

    timm's ModelEmaV3 rather than torch's AveragedModel: its decay warm-up is a function of the step
    passed to ``update(model, step=global_step)``, so the averaged weights are its only state and a
    resumed run continues it exactly; it averages the buffers too and updates with foreach ops.
    Under DDP every rank holds the same parameters after each step, so every rank's EMA is the same
    without any collective.
    """
    if config.optim.ema is None:
        return None
    ema = ModelEmaV3(embedder, decay=config.optim.ema, use_warmup=config.optim.ema_warmup)
    ema.module.requires_grad_(False)  # updated under no_grad from the trained weights, never by autograd
    return ema


def build_criterion(
    config: TrainingConfig, embedder: Embedder, num_classes: int, miner: Any | None
) -> torch.nn.Module:
    """The configured loss, inside a cross-batch memory when ``memory.size > 0``."""
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


def build_learner(
    config: TrainingConfig,
    module: torch.nn.Module,
    param_groups: list[dict[str, Any]],
    criterion: torch.nn.Module,
    miner: Any | None,
    *,
    dist: DistInfo,
    steps_per_epoch: int,
    head_steps: int = 0,
) -> Learner:
    """Optimizer, schedule and (under DDP) the wrapped ``module`` for training with ``criterion``.

    Under DDP the criterion's state (ArcFace proxies, a learnable beta, a memory queue) is made
    equal to rank 0's, as DDP does for the module. ``head_steps``: the backbone's groups (named
    ``backbone*``) start their warm-up and cosine after that many steps (the head-first phase).
    """
    device = dist.device
    criterion = criterion.to(device)
    broadcast_state(criterion, dist)
    groups = list(param_groups)
    loss_params = [p for p in criterion.parameters() if p.requires_grad]
    if loss_params:
        groups.append({"name": "loss", "params": loss_params, "lr": config.optim.lr, "weight_decay": 0.0})
    if not groups:
        if config.train.epochs > 0:
            raise ValueError(
                f"nothing to train: model.freeze={config.model.freeze!r} with "
                f"model.head={config.model.head!r} and loss {config.loss.name!r} leaves no trainable "
                "parameter; use head: linear or mlp, another freeze, or train.epochs: 0 to only evaluate"
            )
        # evaluation only: an optimizer over a placeholder keeps the code uniform
        groups = [{"params": [torch.nn.Parameter(torch.zeros(1))]}]
    optimizer = torch.optim.AdamW(groups, lr=config.optim.lr, weight_decay=config.optim.weight_decay)
    model = _ddp(module, dist) if dist.enabled and config.train.epochs > 0 else module
    starts = [head_steps if str(g.get("name", "")).startswith("backbone") else 0 for g in groups]
    dtype = amp_dtype(config.train.amp, device)
    return Learner(
        model=model,
        criterion=criterion,
        miner=miner,
        optimizer=optimizer,
        scheduler=warmup_cosine(
            optimizer,
            total_steps=steps_per_epoch * config.train.epochs,
            warmup_steps=round(config.optim.warmup_epochs * steps_per_epoch),
            min_lr_ratio=config.optim.min_lr_ratio,
            group_starts=starts,
        ),
        scaler=torch.amp.GradScaler(device.type, enabled=dtype == torch.float16),
        dist=dist,
        amp_dtype=dtype,
        accumulate=config.optim.accumulate,
        grad_clip=config.optim.grad_clip,
    )


def _ddp(module: torch.nn.Module, dist: DistInfo) -> torch.nn.Module:
    """``module`` in DDP; as it is when none of its parameters trains (DDP refuses such a module;
    the head-first phase with an identity head trains only the loss's parameters)."""
    if not any(p.requires_grad for p in module.parameters()):
        return module
    device = dist.device
    return torch.nn.parallel.DistributedDataParallel(
        module, device_ids=[device.index] if device.type == "cuda" else None
    )
