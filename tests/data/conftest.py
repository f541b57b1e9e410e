"""Fixtures for the data tests: tiny images written into tmp_path (no image files are committed)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def write_image(path: Path, *, mode: str = "RGB", size: tuple[int, int] = (12, 10), value: int = 100) -> Path:
    """Write a small image of ``mode`` at ``path`` (format from the suffix); return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "P":
        image = Image.new("P", size, 1)
        image.putpalette([0, 0, 0, value, 200, 30] + [0] * (256 * 3 - 6))
    elif mode in ("RGBA", "LA"):
        image = Image.new(mode, size, (value,) * (len(mode) - 1) + (0,))
    elif mode in ("L", "1"):
        image = Image.new(mode, size, value if mode == "L" else 1)
    else:
        image = Image.new(mode, size, (value, 255 - value, 7))
    image.save(path)
    return path


@pytest.fixture
def make_image() -> Callable[..., Path]:
    return write_image


@pytest.fixture
def omniglot() -> Path:
    root = SHARED_DATA / "omniglot-small"
    if not root.is_dir():
        pytest.skip(
            f"real data not found at {root.resolve()} (../shared/data/omniglot-small beside the repo)"
        )
    return root.resolve()
