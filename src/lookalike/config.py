"""Typed, strict training configuration, loaded from YAML and saved into every run.

One section per stage (``data``, ``augment``, ``model``, ``sampler``, ``miner``, ``loss``, ``memory``,
``optim``, ``train``, ``eval``). Every key is typed and checked: an unknown key fails and lists the valid
ones. ``--set section.key=value`` overrides any key (the value is parsed as YAML, so
``--set optim.lr=1e-3`` and ``--set eval.ks=[1,5]`` work).

The ``miner`` and ``loss`` sections take ``name`` plus that miner's or loss's own keyword
arguments (``{name: triplet, margin: 0.2}``); those are checked against the chosen class's
signature when the config is loaded; ``distance`` takes a name from
``lookalike.distances.list_distances()`` (``{name: triplet, distance: cosine}``).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lookalike._io import atomic_write_text
from lookalike.models import ModelConfig

__all__ = [
    "AugmentConfig",
    "ConfigDeprecationWarning",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "LossConfig",
    "MemoryConfig",
    "MinerConfig",
    "OptimConfig",
    "SamplerConfig",
    "TrainConfig",
    "TrainingConfig",
    "apply_overrides",
    "load_config",
    "read_yaml",
    "save_config",
]


#: Losses computed on the whole batch (proxies, class centres): no miner, no cross-batch memory.
BATCH_LOSSES = frozenset({"arcface", "range"})


class ConfigError(ValueError):
    """A configuration that cannot be used; the message says which key and what would be right."""


class ConfigDeprecationWarning(FutureWarning):
    """A config key that is still read but has a new name; the message names both."""


#: What ``eval.target_far`` says when a config uses it.
TARGET_FAR_ALIAS = (
    "eval.target_far is a deprecated alias of eval.target_fpir: the training step calibrates the match "
    "decision for the false positive identification rate (searches for objects not in the gallery "
    "answered 'match'), and the value is used as eval.target_fpir; write eval.target_fpir"
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Strict):
    root: str = Field(
        description="An image folder (a folder per class), a manifest (CSV/Parquet), or a split manifest. "
        "Relative paths are relative to the directory the command runs in."
    )
    val: float = Field(0.1, ge=0.0, lt=1.0, description="Share of classes held out for validation.")
    test: float = Field(0.2, ge=0.0, lt=1.0, description="Share of classes held out for testing.")
    seed: int = Field(0, description="Seed of the class-disjoint split.")
    queries_per_class: int = Field(1, ge=1, description="Query images per val/test class.")
    protocol: Literal["query-gallery", "leave-one-out"] = "query-gallery"
    class_order: Literal["random", "sorted"] = Field(
        "random",
        description="random: classes drawn to val/test by a seeded permutation (as `lookalike split`); "
        "sorted: "
        "the last `test` share of the classes by name are test and the `val` share before them val, the "
        "papers' protocol for CUB/Cars (first half train, second half test).",
    )
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes.")
    cache_images: bool = Field(
        True,
        description="Decode the training images once and keep them in memory when they fit in "
        "cache_images_mb (else read from disk every epoch, with the reason logged). Cached images are "
        "augmented a batch at a time when the augment section allows it (bilinear interpolation, no "
        "rotation or colour jitter).",
    )
    cache_images_mb: int = Field(1024, ge=1, description="Memory budget of cache_images, in MB.")
    eval_batch_size: int = Field(
        128, ge=1, description="Images per forward pass when embedding for evaluation."
    )

    @model_validator(mode="after")
    def _fractions(self) -> DataConfig:
        if self.val + self.test >= 1.0:
            raise ValueError(
                f"data.val + data.test must be < 1 (train needs classes), got {self.val} + {self.test}"
            )
        return self


class AugmentConfig(_Strict):
    """Training augmentations (:func:`lookalike.data.train_transform`); evaluation never augments.
    The defaults suit natural images; characters, text, logos and anything chiral want ``hflip: false``."""

    hflip: bool = Field(True, description="Flip left-right with probability 0.5.")
    vflip: bool = Field(False, description="Flip upside down with probability 0.5.")
    crop_scale: tuple[float, float] = Field(
        (0.2, 1.0), description="Random resized crop: [low, high] share of the image area kept."
    )
    crop_ratio: tuple[float, float] = Field(
        (0.75, 4 / 3), description="Random resized crop: [low, high] aspect ratio (width / height)."
    )
    rotation: float = Field(
        0.0,
        ge=0.0,
        le=180.0,
        description="Rotate by a uniform angle in [-rotation, rotation] degrees; 0 = off.",
    )
    color_jitter: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Brightness, contrast and saturation each scaled by a factor in [1 - s, 1 + s]; 0 = off.",
    )
    hue: float = Field(0.0, ge=0.0, le=0.5, description="Hue shifted by up to this (a turn = 1); 0 = off.")

    @field_validator("crop_scale")
    @classmethod
    def _scale(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0.0 < value[0] <= value[1] <= 1.0:
            raise ValueError(
                f"augment.crop_scale must be [low, high] with 0 < low <= high <= 1, got {list(value)}"
            )
        return value

    @field_validator("crop_ratio")
    @classmethod
    def _ratio(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0.0 < value[0] <= value[1]:
            raise ValueError(
                f"augment.crop_ratio must be [low, high] with 0 < low <= high, got {list(value)}"
            )
        return value


class SamplerConfig(_Strict):
    p: int = Field(16, ge=2, description="Classes per batch.")
    k: int = Field(4, ge=2, description="Images per class in a batch.")


class _NamedWithKwargs(BaseModel):
    """``name`` plus the chosen class's keyword arguments, checked against its signature."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)
    name: str | None

    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


def _check_name(section: str, name: str, registry: list[str]) -> None:
    if name not in registry:
        raise ValueError(f"{section}.name {name!r} is not known; valid names: {', '.join(registry)}")


def _check_kwargs(section: str, name: str, factory: Any, kwargs: dict[str, Any]) -> None:
    from lookalike.registry import option_names

    params = set(option_names(factory))
    unknown = sorted(set(kwargs) - params)
    if unknown:
        raise ValueError(
            f"{section} {name!r} has no option(s) {', '.join(unknown)}; valid options: "
            f"{', '.join(sorted(params)) or '(none)'}"
        )
    if "distance" in kwargs:  # by name: the loss/miner resolves it through create_distance
        from lookalike.distances import list_distances

        if kwargs["distance"] not in list_distances():
            raise ValueError(
                f"{section}.distance {kwargs['distance']!r} is not a known distance; valid names: "
                f"{', '.join(list_distances())}"
            )


class MinerConfig(_NamedWithKwargs):
    name: str | None = Field(
        None,
        description="A miner from lookalike.miners.list_miners(), or null (the default: the default loss, "
        "multi-similarity, weighs every pair itself; pair triplet/contrastive/margin with a miner).",
    )

    @model_validator(mode="after")
    def _known(self) -> MinerConfig:
        if self.name is not None:
            from lookalike.miners import list_miners, miner_class

            _check_name("miner", self.name, list_miners())
            _check_kwargs("miner", self.name, miner_class(self.name), self.kwargs())
        return self


class LossConfig(_NamedWithKwargs):
    name: str = Field(
        "multi_similarity",
        description="A loss from lookalike.losses.list_losses(); the default, multi-similarity with no "
        "miner, beat triplet + semi-hard on all three benchmark sets (BENCHMARKS.md, issue 12).",
    )

    @model_validator(mode="after")
    def _known(self) -> LossConfig:
        from lookalike.losses import list_losses, loss_class

        _check_name("loss", self.name, list_losses())
        _check_kwargs("loss", self.name, loss_class(self.name), self.kwargs())
        return self


class MemoryConfig(_Strict):
    size: int = Field(0, ge=0, description="Cross-batch memory size in embeddings; 0 turns it off.")
    warmup_steps: int = Field(
        0, ge=0, description="Training batches (forward passes) before the memory is used."
    )


class OptimConfig(_Strict):
    lr: float = Field(
        3e-4, gt=0, description="AdamW learning rate of the head (and of the backbone unless backbone_lr)."
    )
    backbone_lr: float | None = Field(None, gt=0, description="Backbone learning rate; null = lr.")
    weight_decay: float = Field(1e-4, ge=0)
    warmup_epochs: float = Field(
        1.0, ge=0, description="Linear warm-up, then cosine decay to min_lr_ratio * lr."
    )
    min_lr_ratio: float = Field(0.01, ge=0, le=1)
    grad_clip: float | None = Field(1.0, gt=0, description="Max gradient norm; null turns clipping off.")
    accumulate: int = Field(1, ge=1, description="Batches per optimizer step (gradient accumulation).")
    head_epochs: float = Field(
        0.0,
        ge=0,
        description="Head-first phase (linear probe, then fine-tune; Kumar et al. 2022): for the first "
        "round(head_epochs * steps per epoch) optimizer steps only the head and the loss's own parameters "
        "train; the backbone is frozen (no gradient computed, BatchNorms in eval mode). Then the backbone's "
        "trainable set is what model.freeze says again, and its learning rate starts its own warm-up "
        "(warmup_epochs) and cosine decay over the remaining steps; the head's schedule spans the whole run. "
        ">= train.epochs: a linear probe only. 0 = off. Ignored with model.freeze=frozen (the whole run "
        "already trains only the head).",
    )
    layer_decay: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Layer-wise learning-rate decay of the backbone: the last block (and the final norm / "
        "conv head after it) trains at backbone_lr, the block before at backbone_lr * d, ..., the stem / "
        "patch and position embeddings at backbone_lr * d ** n_blocks. Blocks are those of "
        "model.freeze=last_n_blocks (ViT blocks, CNN stages). null = off (every backbone parameter at "
        "backbone_lr).",
    )
    ema: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="Exponential moving average of the weights with this decay (e.g. 0.999), updated after "
        "every optimizer step; evaluation, checkpoints/best.pt, calibration and the test use the averaged "
        "weights. null = off.",
    )
    ema_warmup: bool = Field(
        True,
        description="With ema: the decay grows as 1 - (1 + step) ** (-2/3) up to `ema`, so that a short run "
        "does not average in the initial weights for long (timm's ModelEmaV3 warm-up).",
    )


class TrainConfig(_Strict):
    epochs: int = Field(10, ge=0)
    device: str = Field("auto", description="auto (cuda if available), cpu, cuda, cuda:N.")
    amp: Literal["auto", "off", "bf16", "fp16"] = Field("auto", description="auto = bf16 on GPU, off on CPU.")
    seed: int = Field(0, description="Seed of initialisation, sampling and augmentation.")
    steps_per_epoch: int | None = Field(
        None, ge=1, description="Cap on batches per epoch (null: a full PK epoch)."
    )
    cache_features: bool = Field(
        True,
        description="With model.freeze=frozen: compute backbone features once and train the head on them.",
    )
    checkpoint_every: int | None = Field(
        None, ge=1, description="Also save checkpoints/last.pt every N optimizer steps (mid-epoch resume)."
    )
    log_every: int = Field(10, ge=1, description="Progress-bar refresh in batches.")


class EvalConfig(_Strict):
    every: int = Field(1, ge=1, description="Evaluate on the val split every N epochs (and before training).")
    ks: list[int] = Field(default_factory=lambda: [1, 10, 50, 1000])
    metric: str = Field("hit_rate@1", description="Metric that picks checkpoints/best.pt (higher is better).")
    distance: str = Field("euclidean", description="Distance used to rank the gallery.")
    patience: int | None = Field(
        None, ge=1, description="Stop after this many evaluations without improvement."
    )
    target_fpir: float | None = Field(
        0.05,
        gt=0.0,
        lt=1.0,
        description="At the end, calibrate best.pt's match decision on val for this FPIR (the share of "
        "searches for objects not in the gallery answered 'match'): the decision score and a threshold "
        "for every gallery size, as `lookalike calibrate --target-fpir` does; null turns it off. "
        "`target_far` is a deprecated alias.",
    )

    @model_validator(mode="before")
    @classmethod
    def _target_far_alias(cls, data: Any) -> Any:
        """``eval.target_far`` (the older key) is read as ``eval.target_fpir``, with a warning."""
        if not isinstance(data, dict) or "target_far" not in data:
            return data
        if "target_fpir" in data:
            raise ValueError(
                "give eval.target_fpir or its deprecated alias eval.target_far, not both "
                f"(got target_fpir={data['target_fpir']!r}, target_far={data['target_far']!r})"
            )
        warnings.warn(TARGET_FAR_ALIAS, ConfigDeprecationWarning, stacklevel=2)
        data = dict(data)
        data["target_fpir"] = data.pop("target_far")
        return data

    @field_validator("ks")
    @classmethod
    def _positive(cls, ks: list[int]) -> list[int]:
        if not ks or any(k < 1 for k in ks):
            raise ValueError(f"eval.ks must be a non-empty list of positive integers, got {ks}")
        return sorted(set(ks))

    @model_validator(mode="after")
    def _metric_known(self) -> EvalConfig:
        from lookalike.metrics import metric_names

        valid = metric_names(self.ks)
        if self.metric not in valid:
            raise ValueError(f"eval.metric {self.metric!r} is not computed; valid: {', '.join(valid)}")
        return self


class TrainingConfig(_Strict):
    """The whole run: one section per stage."""

    data: DataConfig
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)
    miner: MinerConfig = Field(default_factory=MinerConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    memory: MemoryConfig = Field(default_factory=MemoryConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @model_validator(mode="after")
    def _loss_takes_tuples(self) -> TrainingConfig:
        if self.loss.name in BATCH_LOSSES and (self.miner.name is not None or self.memory.size > 0):
            raise ValueError(
                f"loss {self.loss.name!r} is computed on the whole batch and takes no mined tuples: set "
                "miner.name: null and memory.size: 0"
            )
        return self

    @model_validator(mode="after")
    def _head_phase_trains(self) -> TrainingConfig:
        head_trains = self.model.head != "identity" or self.model.neck_bn
        phase = self.optim.head_epochs > 0 and self.model.freeze != "frozen"
        if phase and not head_trains and not _loss_has_parameters(self.loss):
            raise ValueError(
                f"optim.head_epochs={self.optim.head_epochs} trains only the head and the loss's own "
                f"parameters first, but model.head={self.model.head!r} and loss.name={self.loss.name!r} "
                "have none: nothing would train in that phase. Use model.head: linear or mlp, a loss "
                "with parameters (e.g. arcface), or optim.head_epochs: 0"
            )
        return self


def _loss_has_parameters(loss: LossConfig) -> bool:
    """Whether the configured loss has trainable parameters (ArcFace's proxies, a learnable margin)."""
    import inspect

    from lookalike.losses import create_loss, loss_class

    params = inspect.signature(loss_class(loss.name)).parameters
    inferred = {k: v for k, v in {"num_classes": 2, "embedding_size": 2}.items() if k in params}
    module = create_loss(loss.name, **(inferred | loss.kwargs()))
    return any(p.requires_grad for p in module.parameters())


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides to a raw config dict (a new dict is returned).

    ``section={key: value, ...}`` replaces a whole section (``loss={name: multi_similarity}`` switches
    the loss without keeping the old loss's options)."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    sections = list(TrainingConfig.model_fields)
    for item in overrides:
        target = item.split("=", 1)[0]
        if "=" not in item or ("." not in target and target not in sections):
            raise ConfigError(
                "--set expects section.key=value (e.g. optim.lr=1e-3) or section={key: value, ...}, "
                f"got {item!r}"
            )
        dotted, value = item.split("=", 1)
        if "." not in dotted:
            mapping = _parse_value(value)
            if not isinstance(mapping, dict):
                raise ConfigError(
                    f"--set {item!r}: a whole section takes a mapping, e.g. {dotted}={{name: ...}}"
                )
            out[dotted] = mapping
            continue
        section, key = dotted.split(".", 1)
        if section not in sections:
            raise ConfigError(
                f"--set {item!r}: unknown section {section!r}; valid sections: {', '.join(sections)}"
            )
        current = out.get(section) or {}
        if not isinstance(current, dict):
            raise ConfigError(f"--set {item!r}: section {section!r} is not a mapping in the config file")
        current = dict(current)
        current[key] = _parse_value(value)
        out[section] = current
    return out


def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            model: type[BaseModel] = TrainingConfig
            for part in e["loc"][:-1]:
                field = model.model_fields.get(str(part))
                ann = field.annotation if field else None
                if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
                    break
                model = ann
            valid = ", ".join(model.model_fields)
            lines.append(f"  {loc}: unknown key; valid keys here: {valid}")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            got = e.get("input")
            shown = "" if isinstance(got, dict) else f" (got {got!r})"
            lines.append(f"  {loc}: {msg}{shown}" if loc else f"  {msg}")
    return "\n".join(lines)


def validate_config(raw: dict[str, Any], *, source: str = "config") -> TrainingConfig:
    """Build a :class:`TrainingConfig` from a plain dict, with readable errors."""
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{source}: the config must be a YAML mapping of sections, got {type(raw).__name__}"
        )
    try:
        return TrainingConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source)) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainingConfig:
    """Read a YAML config, apply ``--set`` overrides, validate strictly."""
    raw = read_yaml(path, what="config file")
    return validate_config(apply_overrides(raw, overrides or []), source=str(path))


def read_yaml(path: str | Path, *, what: str) -> Any:
    """The parsed YAML file at ``path`` ({} when empty); a missing file or bad YAML is a
    ConfigError that names ``what`` and the path."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist")
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None


def config_to_dict(config: TrainingConfig) -> dict[str, Any]:
    """The resolved config as plain data (miner/loss extra keys included)."""
    return config.model_dump(mode="json")


def save_config(config: TrainingConfig, path: str | Path) -> Path:
    """Write the resolved config as YAML, atomically."""
    path = Path(path)
    text = yaml.safe_dump(config_to_dict(config), sort_keys=False)
    atomic_write_text(path, text)
    return path
