"""Helpers of the service tests. A small real gallery: omniglot-small images, a tiny random-init convnet4
checkpoint, a FAISS folder gallery built through the Matcher, with a threshold that matches an image
only against itself (so every decision in the tests is known in advance)."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import torch
from PIL import Image

OMNIGLOT = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "omniglot-small"
API_KEY = "test-key-123"
THRESHOLD = 1e-3  # an exact copy of a gallery image is at distance ~0; any other image is farther


@dataclass(frozen=True)
class GalleryCase:
    """The built gallery (a template copied per test), the images in it and some that are not."""

    template: Path
    checkpoint: Path
    gallery_images: list[tuple[str, str, Path]]  # (id, label, path)
    other_images: list[tuple[str, Path]]  # (label, path) of images not in the gallery


def _omniglot_images(classes: int, per_class: int) -> list[tuple[str, list[Path]]]:
    if not OMNIGLOT.is_dir():
        pytest.skip(f"omniglot-small not found at {OMNIGLOT} (the shared data folder is absent)")
    picked = []
    for alphabet in sorted(p for p in OMNIGLOT.iterdir() if p.is_dir()):
        for character in sorted(p for p in alphabet.iterdir() if p.is_dir()):
            files = sorted(character.glob("*.png"))[:per_class]
            if len(files) == per_class:
                picked.append((f"{alphabet.name}/{character.name}", files))
            if len(picked) == classes:
                return picked
    pytest.skip(f"omniglot-small at {OMNIGLOT} has fewer than {classes} classes of {per_class} images")


def build_gallery_case(root: Path) -> GalleryCase:
    from lookalike.gallery import create_gallery
    from lookalike.gallery.indexing import gallery_header
    from lookalike.gallery.matcher import Matcher
    from lookalike.models import create_embedder_from, save_checkpoint
    from lookalike.models.inference import load_inference_model

    classes = _omniglot_images(classes=6, per_class=4)
    torch.manual_seed(0)
    embedder = create_embedder_from("convnet4", image_size=28, embed_dim=16, backbone_kwargs={"width": 8})
    checkpoint = save_checkpoint(root / "tiny.pt", embedder)
    model = load_inference_model(checkpoint=checkpoint)
    header = gallery_header(model, threshold=THRESHOLD)
    template = root / "gallery"
    in_gallery, others = [], []
    for c, (label, files) in enumerate(classes):
        for i, path in enumerate(files[:3]):
            in_gallery.append((f"c{c}i{i}", label, path.resolve()))
        others.append((label, files[3].resolve()))
    store = create_gallery(template, header)
    with Matcher(store, model) as matcher:
        matcher.add(
            [p for _, _, p in in_gallery],
            [label for _, label, _ in in_gallery],
            ids=[i for i, _, _ in in_gallery],
            metadata=[{"source": "omniglot"} for _ in in_gallery],
        )
    return GalleryCase(template, checkpoint, in_gallery, others)


def png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(args: list[str], *, env: dict[str, str] | None = None, timeout: float = 120.0):
    """``python -m lookalike serve ARGS --port FREE`` on 127.0.0.1; yields the base URL once /health
    answers; stopped (SIGTERM, then SIGKILL) on exit. Its output goes to a log shown on failure."""
    port = free_port()
    import lookalike

    src = Path(lookalike.__file__).resolve().parents[1]  # the lookalike these tests import
    full_env = {**os.environ, "PYTHONPATH": str(src), **(env or {})}
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lookalike", "serve", *args, "--host", "127.0.0.1", "--port", str(port)],
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield _wait_ready(proc, f"http://127.0.0.1:{port}", log, timeout)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_ready(proc: subprocess.Popen, base: str, log, timeout: float) -> str:
    def output() -> str:
        log.seek(0)
        return log.read().decode(errors="replace")[-4000:]

    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}:\n{output()}")
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return base
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server did not answer /health within {timeout} s:\n{output()}")
        time.sleep(0.2)
