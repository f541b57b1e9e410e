from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_MOBILENET = REPO_ROOT.parent / "shared" / "weights" / "mobilenetv2_100.imagenet.safetensors"


@pytest.fixture
def mobilenet_weights() -> Path:
    """The shared ImageNet MobileNetV2 feature extractor (timm key names), or a skip."""
    if not SHARED_MOBILENET.is_file():
        pytest.skip(f"shared weights not found at {SHARED_MOBILENET} (a fresh clone has no ../shared)")
    return SHARED_MOBILENET
