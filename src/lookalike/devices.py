"""Which device to compute on: the one rule, :func:`resolve_device`, for every ``device`` option
(training's ``train.device``, each command's ``--device``, the gallery matcher's ``device``).

No other module decides what ``auto`` means (``tests/test_devices.py`` checks it)."""

from __future__ import annotations

import torch

__all__ = ["resolve_device"]


def resolve_device(name: str | torch.device) -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.

    Asking for CUDA where there is none is an error that says so (not a silent CPU fallback)."""
    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device {str(name)!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {str(name)!r} asked for, but CUDA is not available here; use cpu or auto")
    return device
