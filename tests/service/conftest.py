"""Fixtures of the service tests: a small real gallery built once, copied fresh for each test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from service_helpers import GalleryCase, build_gallery_case


@pytest.fixture(scope="session")
def gallery_case(tmp_path_factory) -> GalleryCase:
    return build_gallery_case(tmp_path_factory.mktemp("service"))


@pytest.fixture
def gallery_dir(gallery_case, tmp_path) -> Path:
    """A fresh copy of the gallery for one test (tests add and remove items)."""
    target = tmp_path / "gallery"
    shutil.copytree(gallery_case.template, target)
    return target
