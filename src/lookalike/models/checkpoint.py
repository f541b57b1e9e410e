"""Checkpoints that rebuild an embedder from the file alone (no download, no config file)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lookalike._io import atomic_path
from lookalike._version import __version__
from lookalike.models.backbones import Preprocessing
from lookalike.models.config import ModelConfig
from lookalike.models.embedder import Embedder, create_embedder

__all__ = ["CHECKPOINT_FORMAT", "Checkpoint", "load_checkpoint", "save_checkpoint"]

CHECKPOINT_FORMAT = "lookalike-checkpoint"
CHECKPOINT_FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    """A loaded checkpoint: the rebuilt ``embedder`` (in eval mode), the full training ``config`` and
    the training state ``extra`` as saved (None when not saved), the lookalike ``version`` that wrote
    it, and the ``preprocessing`` the embedder expects."""

    embedder: Embedder
    config: dict[str, Any] | None
    extra: dict[str, Any] | None
    version: str
    preprocessing: Preprocessing


_PLAIN_LEAVES = (type(None), bool, int, float, complex, str, bytes, torch.Tensor, torch.dtype, torch.device)


def _check_plain(obj: object, where: str) -> None:
    """Raise TypeError at the first value ``torch.load(weights_only=True)`` would refuse."""
    if isinstance(obj, _PLAIN_LEAVES):
        return
    if isinstance(obj, dict):
        for key, value in obj.items():
            _check_plain(key, f"{where} key {key!r}")
            _check_plain(value, f"{where}[{key!r}]")
        return
    if isinstance(obj, (list, tuple, set, frozenset)):  # torch.Size is a tuple
        for i, value in enumerate(obj):
            _check_plain(value, f"{where}[{i}]")
        return
    raise TypeError(
        f"{where} is a {type(obj).__module__}.{type(obj).__qualname__}, which torch.load(weights_only=True) "
        "cannot read back; store plain python types and tensors (e.g. a numpy array as a tensor or list, "
        "a Path as str, a pydantic model via model_dump())"
    )


def save_checkpoint(
    path: str | Path,
    embedder: Embedder,
    *,
    config: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``embedder`` (weights, model config, preprocessing) plus the resolved training ``config``
    and training state ``extra`` (plain tensors and python types only, so the file loads with
    ``weights_only=True``; anything else raises TypeError naming where it is). A DDP-wrapped embedder
    is unwrapped. Atomic: written to a temporary file in the same folder, then renamed."""
    if config is not None and not isinstance(config, dict):
        raise TypeError(
            f"config must be a plain dict (e.g. TrainConfig.model_dump()), got {type(config).__name__}"
        )
    if extra is not None and not isinstance(extra, dict):
        raise TypeError(f"extra must be a dict of training state, got {type(extra).__name__}")
    if isinstance(getattr(embedder, "module", None), Embedder):  # DistributedDataParallel / DataParallel
        embedder = embedder.module
    if not isinstance(embedder, Embedder):
        raise TypeError(f"save_checkpoint saves an Embedder, got {type(embedder).__name__}")
    _check_plain(config, "config")
    _check_plain(extra, "extra")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "version": __version__,
        "model_config": embedder.config.model_dump(mode="json"),
        "preprocessing": embedder.preprocessing.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in embedder.state_dict().items()},
        "config": config,
        "extra": extra,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the embedder saved by :func:`save_checkpoint` from the file alone.

    Loads with ``torch.load(weights_only=True)``; the backbone is created with ``pretrained=False``
    and ``weights=None`` (the weights come from the file), so nothing is downloaded; the embedder is
    put on ``map_location`` in eval mode. Raises ValueError when the file is not a lookalike checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch.load raises many types on foreign or corrupt files
        raise ValueError(
            f"{path} is not a lookalike checkpoint: torch.load(weights_only=True) failed "
            f"({type(error).__name__}: {error})"
        ) from error
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = sorted(payload)[:8] if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(
            f"{path} is not a lookalike checkpoint (no format={CHECKPOINT_FORMAT!r}; found {found}). "
            "To load plain backbone weights use ModelConfig(weights=PATH) / load_weights()."
        )
    if payload.get("format_version", 1) > CHECKPOINT_FORMAT_VERSION:
        raise ValueError(
            f"{path} has checkpoint format_version {payload['format_version']}, newer than this lookalike "
            f"({__version__}) reads ({CHECKPOINT_FORMAT_VERSION}); upgrade lookalike"
        )
    model_config = ModelConfig(**{**payload["model_config"], "pretrained": False, "weights": None})
    embedder = create_embedder(model_config)
    embedder.load_state_dict(payload["state_dict"], strict=True)
    preprocessing = Preprocessing.from_dict(payload["preprocessing"])
    embedder.preprocessing = preprocessing
    return Checkpoint(
        embedder=embedder.to(torch.device(map_location)).eval(),
        config=payload.get("config"),
        extra=payload.get("extra"),
        version=str(payload.get("version", "unknown")),
        preprocessing=preprocessing,
    )
