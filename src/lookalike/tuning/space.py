"""The search space of ``lookalike tune``: what may vary, as data (a YAML file or :func:`default_space`).

A space has two parts::

    params:                 # config keys by dotted name -> a distribution
      optim.lr: {type: float, low: 3.0e-5, high: 3.0e-3, log: true}
      model.freeze: {type: categorical, choices: [full, frozen, last_n_blocks]}
      model.last_n_blocks: {type: int, low: 1, high: 4}
      sampler.k: {type: categorical, choices: [2, 4, 8]}
    losses:                 # loss name -> its options and the miners it may use (conditional)
      triplet:
        options: {margin: {type: float, low: 0.05, high: 0.5}}
        miners: {semihard: {margin: loss.margin}, batch_hard: {}, none: {}}

An option is a distribution or a fixed value; ``loss.X`` as a miner option ties it to the sampled
loss option ``X``; the miner ``none`` means no miner. Rules the sampler applies (:func:`sample_config`):
``model.last_n_blocks`` is drawn only when ``model.freeze`` is ``last_n_blocks`` (else 0); the
backbone's own options (``optim.backbone_lr``, ``optim.head_epochs``, ``optim.layer_decay``) are not
drawn when the backbone is frozen; ``sampler.k`` without ``sampler.p`` keeps the batch (P x K) near
the base config's, with P at most the number of training classes.

Optuna's parameter names: the dotted keys of ``params``; ``loss``; ``loss[NAME].OPTION`` for a loss's
options; ``miner[LOSS]`` for the miner drawn with that loss and ``miner[LOSS].MINER.OPTION`` for its
options (conditional parameters are named by their condition, so TPE models each on its own).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lookalike.config import ConfigError, LossConfig, TrainingConfig, read_yaml

if TYPE_CHECKING:
    import optuna

__all__ = [
    "Dimension",
    "LossSpace",
    "SearchSpace",
    "SpaceContext",
    "check_space",
    "default_space",
    "load_space",
    "sample_config",
    "space_context",
]

#: Keys that tune the backbone's training: not drawn when ``model.freeze`` is ``frozen``.
BACKBONE_KEYS = ("optim.backbone_lr", "optim.head_epochs", "optim.layer_decay")
#: The miner entry meaning "no miner".
NO_MINER = "none"
#: Prefix of a miner option tied to the sampled loss option of that name.
TIE_PREFIX = "loss."

Scalar = str | int | float | bool | None


class Dimension(BaseModel):
    """One distribution: ``float`` / ``int`` in [low, high] (``log`` for a log scale), or ``categorical``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["float", "int", "categorical"]
    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    choices: list[Scalar] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Dimension:
        if self.type == "categorical":
            if not self.choices or self.low is not None or self.high is not None:
                raise ValueError("a categorical dimension needs a non-empty `choices` list and no low/high")
            return self
        if self.choices is not None or self.low is None or self.high is None:
            raise ValueError(f"a {self.type} dimension needs `low` and `high` and no choices")
        if not self.low < self.high:
            raise ValueError(f"low must be < high, got low={self.low}, high={self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log-scale dimension needs low > 0, got low={self.low}")
        if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError(f"an int dimension needs integer bounds, got {self.low}, {self.high}")
        return self

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        if self.type == "categorical":
            return trial.suggest_categorical(name, self.choices)  # type: ignore[arg-type]
        if self.type == "int":
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.log)  # type: ignore[arg-type]
        return trial.suggest_float(name, self.low, self.high, log=self.log)  # type: ignore[arg-type]


Option = Dimension | Scalar


class LossSpace(BaseModel):
    """One loss: its options (distributions or fixed values) and the miners it may use, with theirs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    options: dict[str, Option] = Field(default_factory=dict)
    miners: dict[str, dict[str, Option]] = Field(default_factory=lambda: {NO_MINER: {}})


class SearchSpace(BaseModel):
    """What a tune may vary: config keys (``params``) and, conditionally, the loss and its miner."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    params: dict[str, Dimension] = Field(default_factory=dict)
    losses: dict[str, LossSpace] = Field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_defaults=True)

    def to_yaml(self) -> str:
        """The space as a ``--space`` file (``tune`` writes the one it searches as ``DIR/space.yaml``)."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _section_fields(section: str) -> list[str] | None:
    field = TrainingConfig.model_fields.get(section)
    ann = field.annotation if field else None
    if isinstance(ann, type) and issubclass(ann, BaseModel) and ann.model_config.get("extra") == "forbid":
        return list(ann.model_fields)
    return None


def check_space(space: SearchSpace, *, source: str = "search space") -> SearchSpace:
    """Refuse keys the config has not (naming them and the valid ones), losses/miners that do not
    exist, options they do not take, and ties to loss options that are not there."""
    from lookalike.losses import list_losses, loss_class
    from lookalike.miners import list_miners, miner_class
    from lookalike.registry import option_names

    sections = [s for s in TrainingConfig.model_fields if _section_fields(s) is not None]
    for key in space.params:
        section, _, name = key.partition(".")
        if section in ("loss", "miner"):
            raise ConfigError(
                f"{source}: {key!r}: the loss and miner are searched under `losses:`, not params"
            )
        valid = _section_fields(section)
        if valid is None or not name:
            raise ConfigError(
                f"{source}: unknown key {key!r}; params are section.key with section one of "
                f"{', '.join(sections)}"
            )
        if name not in valid:
            raise ConfigError(f"{source}: unknown key {key!r}; valid keys of {section}: {', '.join(valid)}")
    for loss, entry in space.losses.items():
        if loss not in list_losses():
            raise ConfigError(f"{source}: unknown loss {loss!r}; valid: {', '.join(list_losses())}")
        loss_options = set(option_names(loss_class(loss)))
        for option in entry.options:
            if option not in loss_options:
                raise ConfigError(
                    f"{source}: loss {loss!r} has no option {option!r}; valid: "
                    f"{', '.join(sorted(loss_options))}"
                )
        if not entry.miners:
            raise ConfigError(f"{source}: loss {loss!r} lists no miners; use {{{NO_MINER}: {{}}}} for none")
        for miner, options in entry.miners.items():
            if miner == NO_MINER:
                if options:
                    raise ConfigError(f"{source}: loss {loss!r}: miner {NO_MINER!r} takes no options")
                continue
            if miner not in list_miners():
                raise ConfigError(
                    f"{source}: loss {loss!r}: unknown miner {miner!r}; valid: "
                    f"{', '.join([*list_miners(), NO_MINER])}"
                )
            miner_options = set(option_names(miner_class(miner)))
            for option, value in options.items():
                if option not in miner_options:
                    raise ConfigError(
                        f"{source}: miner {miner!r} has no option {option!r}; valid: "
                        f"{', '.join(sorted(miner_options))}"
                    )
                if isinstance(value, str) and value.startswith(TIE_PREFIX):
                    tied = value.removeprefix(TIE_PREFIX)
                    if tied not in entry.options:
                        raise ConfigError(
                            f"{source}: miner {miner!r} option {option}: {value!r} ties to loss option "
                            f"{tied!r}, which loss {loss!r} does not list under options"
                        )
    return space


def load_space(path: str | Path) -> SearchSpace:
    """Read and check a search-space YAML file."""
    return parse_space(read_yaml(path, what="search space file"), source=str(path))


def parse_space(raw: Any, *, source: str = "search space") -> SearchSpace:
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{source}: expected a mapping with `params` and/or `losses`, got {type(raw).__name__}"
        )
    try:
        space = SearchSpace.model_validate(raw)
    except ValidationError as err:
        lines = [f"invalid search space in {source}:"]
        for e in err.errors():
            loc = ".".join(str(p) for p in e["loc"])
            lines.append(f"  {loc}: {e['msg'].removeprefix('Value error, ')}")
        raise ConfigError("\n".join(lines)) from None
    return check_space(space, source=source)


# ---- the default space ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpaceContext:
    """What the default space and the sampling rules need to know about the base config and data."""

    pretrained: bool  # pretrained=True or local weights: the backbone has features to protect
    n_blocks: int  # blocks found by lookalike.models.freezing.find_blocks (0: none found)
    train_classes: int  # classes of the train split (P can be no larger)
    epochs: int  # the trial budget in epochs


def space_context(config: TrainingConfig, *, train_classes: int, epochs: int) -> SpaceContext:
    """Inspect the base config: is the backbone pretrained, and how many blocks has it (built
    without weights, only to count them)."""
    from lookalike.models.backbones import create_timm_backbone
    from lookalike.models.freezing import find_blocks

    m = config.model
    pretrained = m.pretrained or m.weights is not None
    n_blocks = 0
    if pretrained:
        backbone = create_timm_backbone(
            m.backbone, pretrained=False, in_chans=m.in_chans, image_size=m.image_size, **m.backbone_kwargs
        )
        try:
            n_blocks = len(find_blocks(backbone))
        except ValueError:
            n_blocks = 0
    return SpaceContext(pretrained=pretrained, n_blocks=n_blocks, train_classes=train_classes, epochs=epochs)


def _has(dotted: str) -> bool:
    section, _, key = dotted.partition(".")
    return key in (_section_fields(section) or [])


def _float(low: float, high: float, *, log: bool = False) -> Dimension:
    return Dimension(type="float", low=float(f"{low:.4g}"), high=float(f"{high:.4g}"), log=log)


def default_space(config: TrainingConfig, context: SpaceContext) -> SearchSpace:
    """The space tune searches when no ``--space`` is given, centred on the base config.

    - ``optim.lr``: log-uniform over [lr / 10, lr * 10].
    - pretrained backbones only: ``optim.backbone_lr`` log-uniform over [blr / 100, blr * 3] (blr: the
      base's backbone_lr, else lr); ``model.freeze`` in full / frozen / last_n_blocks with
      ``model.last_n_blocks`` in 1..blocks (when blocks are found); and, when the config has them,
      ``optim.head_epochs`` in [0, epochs / 2] and ``optim.layer_decay`` in {none, 0.65, 0.75, 0.85}.
    - ``optim.ema`` in {none, 0.99, 0.999} when the config has it.
    - ``sampler.k`` in {2, 4, 8} (those leaving P >= 2), P following to keep the batch near the base's.
    - the loss and its miner: triplet (margin 0.05-0.5; semihard / batch_hard / distance_weighted),
      multi_similarity (alpha, beta, base; no miner or batch_all pairs), contrastive (pos/neg margins;
      no miner or batch_hard) and margin (margin, beta; distance_weighted or no miner).
    """
    optim = config.optim
    params: dict[str, Dimension] = {"optim.lr": _float(optim.lr / 10, optim.lr * 10, log=True)}
    if context.pretrained:
        blr = optim.backbone_lr or optim.lr
        params["optim.backbone_lr"] = _float(blr / 100, blr * 3, log=True)
        # an identity head (no neck) has nothing to train on its own: a frozen backbone would train
        # nothing (that is trial 0 already) and a head-first phase would have nothing to fit
        trainable_head = config.model.head != "identity" or config.model.neck_bn
        modes = [
            "full",
            *(["frozen"] if trainable_head else []),
            *(["last_n_blocks"] if context.n_blocks >= 2 else []),
        ]
        params["model.freeze"] = Dimension(type="categorical", choices=modes)
        if context.n_blocks >= 2:
            params["model.last_n_blocks"] = Dimension(type="int", low=1, high=context.n_blocks)
        if _has("optim.head_epochs") and context.epochs >= 1 and trainable_head:
            params["optim.head_epochs"] = _float(0.0, max(context.epochs / 2, 0.5))
        if _has("optim.layer_decay"):
            params["optim.layer_decay"] = Dimension(type="categorical", choices=[None, 0.65, 0.75, 0.85])
    if _has("optim.ema"):
        params["optim.ema"] = Dimension(type="categorical", choices=[None, 0.99, 0.999])
    batch = config.sampler.p * config.sampler.k
    ks = [k for k in (2, 4, 8) if min(round(batch / k), context.train_classes) >= 2]
    if len(ks) >= 2:
        params["sampler.k"] = Dimension(type="categorical", choices=ks)
    margin = _float(0.05, 0.5)
    losses = {
        "triplet": LossSpace(
            options={"margin": margin},
            miners={"semihard": {"margin": "loss.margin"}, "batch_hard": {}, "distance_weighted": {}},
        ),
        "multi_similarity": LossSpace(
            options={
                "alpha": _float(0.5, 10.0, log=True),
                "beta": _float(10.0, 80.0, log=True),
                "base": _float(0.3, 0.8),
            },
            miners={NO_MINER: {}, "batch_all": {"tuple_type": "pair"}},
        ),
        "contrastive": LossSpace(
            options={"pos_margin": _float(0.0, 0.3), "neg_margin": _float(0.5, 1.4)},
            miners={NO_MINER: {}, "batch_hard": {}},
        ),
        "margin": LossSpace(
            options={"margin": margin, "beta": _float(0.8, 1.4)},
            miners={"distance_weighted": {}, NO_MINER: {}},
        ),
    }
    return check_space(SearchSpace(params=params, losses=losses), source="default search space")


# ---- sampling a trial's config ----------------------------------------------------------------------


def _set(raw: dict[str, Any], dotted: str, value: Any) -> None:
    section, _, key = dotted.partition(".")
    raw.setdefault(section, {})
    raw[section] = {**(raw[section] or {}), key: value}


def sample_config(
    trial: optuna.Trial, base: Mapping[str, Any], space: SearchSpace, context: SpaceContext
) -> dict[str, Any]:
    """The raw config dict of one trial: ``base`` with the space's dimensions drawn by ``trial``
    (rules in the module docstring). Not validated here: the caller validates, and an invalid
    combination is a failed trial, not a crash."""
    raw: dict[str, Any] = copy.deepcopy(dict(base))
    params = dict(space.params)
    freeze = raw.get("model", {}).get("freeze", "full")
    if "model.freeze" in params:
        freeze = params.pop("model.freeze").suggest(trial, "model.freeze")
        _set(raw, "model.freeze", freeze)
    if "model.last_n_blocks" in params:
        dim = params.pop("model.last_n_blocks")
        _set(
            raw,
            "model.last_n_blocks",
            dim.suggest(trial, "model.last_n_blocks") if freeze == "last_n_blocks" else 0,
        )
    elif "model.freeze" in space.params and freeze != "last_n_blocks":
        _set(raw, "model.last_n_blocks", 0)
    for key, dim in params.items():
        if freeze == "frozen" and key in BACKBONE_KEYS:
            continue
        _set(raw, key, dim.suggest(trial, key))
    if "sampler.k" in space.params and "sampler.p" not in space.params:
        sampler = raw.get("sampler") or {}
        base_sampler = base.get("sampler") or {}
        batch = base_sampler.get("p", 16) * base_sampler.get("k", 4)
        _set(raw, "sampler.p", max(2, min(round(batch / sampler["k"]), context.train_classes)))
    if space.losses:
        _sample_loss(trial, raw, base, space)
    return raw


def _option(trial: optuna.Trial, name: str, value: Option, loss_values: dict[str, Any]) -> Any:
    if isinstance(value, Dimension):
        return value.suggest(trial, name)
    if isinstance(value, str) and value.startswith(TIE_PREFIX):
        return loss_values[value.removeprefix(TIE_PREFIX)]
    return value


def _sample_loss(
    trial: optuna.Trial, raw: dict[str, Any], base: Mapping[str, Any], space: SearchSpace
) -> None:
    loss = trial.suggest_categorical("loss", list(space.losses))
    entry = space.losses[loss]
    base_loss = dict(base.get("loss") or {"name": LossConfig.model_fields["name"].default})
    loss_values = {k: v for k, v in base_loss.items() if k != "name"} if base_loss.get("name") == loss else {}
    for option, value in entry.options.items():
        loss_values[option] = _option(trial, f"loss[{loss}].{option}", value, loss_values)
    raw["loss"] = {"name": loss, **loss_values}
    miner = trial.suggest_categorical(f"miner[{loss}]", list(entry.miners))
    if miner == NO_MINER:
        raw["miner"] = {"name": None}
        return
    base_miner = dict(base.get("miner") or {})
    miner_values = (
        {k: v for k, v in base_miner.items() if k != "name"} if base_miner.get("name") == miner else {}
    )
    for option, value in entry.miners[miner].items():
        miner_values[option] = _option(trial, f"miner[{loss}].{miner}.{option}", value, loss_values)
    raw["miner"] = {"name": miner, **miner_values}
