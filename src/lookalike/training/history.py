"""The run's history: ``metrics.jsonl`` (one JSON object per evaluation), ``train_log.jsonl`` (one per
epoch) and PNG plots of loss and metrics@k against epoch, refreshed as training goes."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from lookalike._io import atomic_path, atomic_write_text
from lookalike.metrics import METRICS_AT_K

__all__ = ["RunHistory"]


class RunHistory:
    """Appends records to the run folder and redraws the plots from everything recorded so far."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.train_log_path = self.run_dir / "train_log.jsonl"
        self.plots_dir = self.run_dir / "plots"

    # -- records ---------------------------------------------------------------------------------
    def log_eval(self, record: dict[str, Any]) -> None:
        _append_jsonl(self.metrics_path, record)

    def log_epoch(self, record: dict[str, Any]) -> None:
        _append_jsonl(self.train_log_path, record)

    def evals(self) -> list[dict[str, Any]]:
        return _read_jsonl(self.metrics_path)

    def epochs(self) -> list[dict[str, Any]]:
        return _read_jsonl(self.train_log_path)

    def truncate_after(self, epoch: int) -> None:
        """Drop records past ``epoch`` (a resumed run rewrites what its checkpoint did not cover)."""
        for path in (self.metrics_path, self.train_log_path):
            rows = [r for r in _read_jsonl(path) if r.get("epoch", 0) <= epoch]
            _write_jsonl(path, rows)

    # -- plots -----------------------------------------------------------------------------------
    def plot(self) -> list[Path]:
        """Redraw ``plots/loss.png`` and ``plots/metrics.png``; returns the files written."""
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt

        self.plots_dir.mkdir(parents=True, exist_ok=True)
        written = []
        epochs = self.epochs()
        if epochs:
            fig, ax = plt.subplots(figsize=(6, 4))
            ax.plot([r["epoch"] for r in epochs], [r["loss"] for r in epochs], marker="o")
            ax.set_xlabel("epoch")
            ax.set_ylabel("training loss (mean over the epoch)")
            ax.grid(alpha=0.3)
            written.append(_save(fig, self.plots_dir / "loss.png"))
            plt.close(fig)
        evals = [r for r in self.evals() if r.get("split") == "val"]
        if evals:
            fig, axes = plt.subplots(1, len(METRICS_AT_K) + 1, figsize=(4 * (len(METRICS_AT_K) + 1), 3.6))
            xs = [r["epoch"] for r in evals]
            for ax, family in zip(axes, METRICS_AT_K, strict=False):
                keys = sorted(
                    (k for k in evals[-1] if re.fullmatch(rf"{family}@\d+", k)),
                    key=lambda k: int(k.split("@")[1]),
                )
                for key in keys:
                    ax.plot(xs, [r.get(key) for r in evals], marker="o", label=key)
                ax.set_title(family)
                ax.set_xlabel("epoch")
                ax.set_ylim(0, 1.02)
                ax.grid(alpha=0.3)
                ax.legend(fontsize=7)
            ax = axes[-1]
            for key in ("map@r", "r_precision"):
                ax.plot(xs, [r.get(key) for r in evals], marker="o", label=key)
            ax.set_title("MAP@R, R-precision")
            ax.set_xlabel("epoch")
            ax.set_ylim(0, 1.02)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
            fig.tight_layout()
            written.append(_save(fig, self.plots_dir / "metrics.png"))
            plt.close(fig)
        return written


def _save(fig: Any, path: Path) -> Path:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90)
    return path


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write(json.dumps(record, sort_keys=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a kill mid-write
                continue
    return rows


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    if not path.exists() and not rows:
        return
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
