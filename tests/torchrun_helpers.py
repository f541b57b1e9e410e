"""Running ``python -m lookalike ...`` under torchrun in tests (CPU processes, gloo)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for a process group's rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_torchrun(args: list[str], *, nproc: int = 2, timeout: float = 240) -> subprocess.CompletedProcess:
    """``torchrun --nproc-per-node NPROC -m lookalike ARGS`` with this checkout's ``src`` first on the
    path; returns the finished process (stdout/stderr as text)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p),
    }
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc)]
    cmd += ["--master-port", str(free_port()), "-m", "lookalike", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
