"""Training: the fit loop and its parts (state, components, epoch, validation, checkpoints), the
schedule, DDP helpers, run history and plots."""

# re-exported for the `evaluate` command's import path; they live outside training/
from lookalike.devices import resolve_device
from lookalike.evaluation import evaluate_split, split_frames
from lookalike.training.components import Components, Learner, build_components
from lookalike.training.epoch import train_epoch
from lookalike.training.loop import FitResult, fit, load_run_config
from lookalike.training.state import TrainState
from lookalike.training.validation import validate

__all__ = [
    "Components",
    "FitResult",
    "Learner",
    "TrainState",
    "build_components",
    "evaluate_split",
    "fit",
    "load_run_config",
    "resolve_device",
    "split_frames",
    "train_epoch",
    "validate",
]
