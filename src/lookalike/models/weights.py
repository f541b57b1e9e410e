"""Loading local weight files (.safetensors, .pt/.pth) into a module, with a report."""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

__all__ = ["LoadReport", "load_weights", "read_state_dict"]

logger = logging.getLogger(__name__)

SAFETENSORS_SUFFIXES = (".safetensors",)
TORCH_SUFFIXES = (".pt", ".pth", ".bin")


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_weights` did: module keys absent from the file (``missing``, left as they were),
    file keys the module does not have (``unexpected``, ignored), and with ``strict_shapes=False`` the
    keys skipped because their shapes differ (``mismatched``, also left as they were)."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict) and obj.get("format") == "lookalike-checkpoint":
        # a lookalike checkpoint: its backbone's weights, in timm key names
        state = obj.get("state_dict", {})
        return {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise ValueError(
            f"{path} does not hold a state dict (a dict of name -> tensor, raw or under 'state_dict' or "
            f"'model'); found {type(obj).__name__}"
        )
    if obj and all(k.startswith("module.") for k in obj):  # saved from DistributedDataParallel
        obj = {k.removeprefix("module."): v for k, v in obj.items()}
    return obj


def read_state_dict(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` (safetensors.torch.load_file) or ``.pt/.pth/.bin``
    (``torch.load(weights_only=True)``: no arbitrary code runs)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        from safetensors.torch import load_file

        return load_file(str(path), device=str(map_location))
    if suffix in TORCH_SUFFIXES:
        try:
            obj = torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as error:
            raise ValueError(
                f"{path} could not be loaded with torch.load(weights_only=True): it holds objects other "
                f"than tensors and plain python types ({error}). Save a plain state dict instead."
            ) from error
        except Exception as error:  # torch.load raises many types on foreign or corrupt files
            raise ValueError(
                f"{path} is not a readable torch file ({type(error).__name__}: {error}); expected a state "
                "dict saved with torch.save"
            ) from error
        return _unwrap(obj, path)
    raise ValueError(
        f"unsupported weights file {path.name!r}: expected a suffix in "
        f"{[*SAFETENSORS_SUFFIXES, *TORCH_SUFFIXES]}"
    )


def _resample_pos_embed(module: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """ViT weights made for another image size: resample ``pos_embed`` to the module's patch grid, as
    timm does for pretrained weights (so DINOv2's 518-px weights load into a 224-px model)."""
    own = getattr(module, "pos_embed", None)
    theirs = state.get("pos_embed")
    if not isinstance(own, torch.Tensor) or theirs is None or theirs.shape == own.shape:
        return state
    if (
        not hasattr(module, "patch_embed")
        or theirs.ndim != 3
        or own.ndim != 3
        or theirs.shape[2] != own.shape[2]
    ):
        return state  # left to the shape check
    from timm.layers import resample_abs_pos_embed

    prefix = 0 if getattr(module, "no_embed_class", False) else int(getattr(module, "num_prefix_tokens", 1))
    grid = tuple(module.patch_embed.grid_size)
    logger.info("resampling pos_embed %s -> %s (patch grid %s)", tuple(theirs.shape), tuple(own.shape), grid)
    resampled = resample_abs_pos_embed(theirs, new_size=list(grid), num_prefix_tokens=prefix)
    return {**state, "pos_embed": resampled}


def _adapt_first_conv(module: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The first conv of RGB weights for a model with other input channels (``in_chans=1``): summed over
    the input channels, as timm does when it loads pretrained weights."""
    first_conv = (getattr(module, "pretrained_cfg", None) or {}).get("first_conv")
    key = f"{first_conv}.weight" if isinstance(first_conv, str) else None
    own = module.state_dict().get(key) if key else None
    theirs = state.get(key) if key else None
    if own is None or theirs is None or own.ndim != 4 or theirs.ndim != 4:
        return state
    if own.shape == theirs.shape or own.shape[:1] + own.shape[2:] != theirs.shape[:1] + theirs.shape[2:]:
        return state  # same shape, or different beyond the input channels: left to the shape check
    from timm.models import adapt_input_conv

    logger.info("adapting %s from %d to %d input channels", key, theirs.shape[1], own.shape[1])
    return {**state, key: adapt_input_conv(own.shape[1], theirs)}


def load_weights(module: nn.Module, path: str | Path, *, strict_shapes: bool = True) -> LoadReport:
    """Load a local weights file into ``module`` (non-strict on keys, strict on shapes).

    Missing and unexpected keys are returned in the :class:`LoadReport` and logged as warnings. A key
    present in both with different shapes raises ValueError listing every such key with both shapes;
    with ``strict_shapes=False`` those keys are skipped and reported as ``mismatched`` instead. A file
    that shares no key with the module is refused. A ViT's ``pos_embed`` made for another image size is
    resampled to the module's patch grid, and RGB weights for a 1-channel model have their first conv
    summed over the input channels (both as timm does for pretrained weights).
    """
    state = _adapt_first_conv(module, _resample_pos_embed(module, read_state_dict(path)))
    own = module.state_dict()
    if own and state and not (own.keys() & state.keys()):
        raise ValueError(
            f"no key of {path} matches {type(module).__name__}: the file has e.g. {sorted(state)[:3]}, "
            f"the module e.g. {sorted(own)[:3]}. Is it for another architecture?"
        )
    mismatched = {
        k: (tuple(v.shape), tuple(own[k].shape))
        for k, v in state.items()
        if k in own and v.shape != own[k].shape
    }
    if mismatched and strict_shapes:
        lines = "; ".join(f"{k}: file {f} vs model {m}" for k, (f, m) in sorted(mismatched.items()))
        raise ValueError(f"{len(mismatched)} weight(s) in {path} have the wrong shape: {lines}")
    state = {k: v for k, v in state.items() if k not in mismatched}
    result = module.load_state_dict(state, strict=False)
    report = LoadReport(
        missing=sorted(set(result.missing_keys) - set(mismatched)),
        unexpected=sorted(result.unexpected_keys),
        mismatched=sorted(mismatched),
    )
    if report.missing:
        logger.warning(
            "%d key(s) of %s not in %s, left as initialised: %s",
            len(report.missing),
            type(module).__name__,
            path,
            report.missing,
        )
    if report.unexpected:
        logger.warning(
            "%d key(s) in %s not used by %s: %s",
            len(report.unexpected),
            path,
            type(module).__name__,
            report.unexpected,
        )
    return report
