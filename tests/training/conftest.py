from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"


def make_image_folder(
    root: Path, *, classes: int = 10, per_class: int = 6, size: int = 24, seed: int = 0
) -> Path:
    """A tiny folder-per-class data set: each class a colour and stripe pattern, plus noise."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        folder = root / f"class{c:02d}"
        folder.mkdir(parents=True)
        base = rng.integers(0, 255, size=3)
        for i in range(per_class):
            img = np.zeros((size, size, 3), dtype=np.uint8) + base.astype(np.uint8)
            img[:: (c % 4) + 2] = 255 - base.astype(np.uint8)
            img = np.clip(img + rng.normal(0, 20, img.shape), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(folder / f"{i}.png")
    return root


@pytest.fixture
def image_folder(tmp_path):
    return make_image_folder(tmp_path / "images")


@pytest.fixture
def omniglot():
    path = SHARED_DATA / "omniglot-small"
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (a fresh clone has no ../shared)")
    return path
