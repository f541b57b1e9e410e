"""Training: the fit loop, schedule, DDP helpers, run history and plots."""

from lookalike.training.evaluation import evaluate_split, split_frames
from lookalike.training.loop import FitResult, fit, load_run_config, resolve_device

__all__ = ["FitResult", "evaluate_split", "fit", "load_run_config", "resolve_device", "split_frames"]
