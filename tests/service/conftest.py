"""Fixtures of the service tests: a small real gallery built once, copied fresh for each test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from service_helpers import API_KEY, GalleryCase, build_gallery_case, running_server


@pytest.fixture(scope="session")
def gallery_case(tmp_path_factory) -> GalleryCase:
    return build_gallery_case(tmp_path_factory.mktemp("service"))


@pytest.fixture
def gallery_dir(gallery_case, tmp_path) -> Path:
    """A fresh copy of the gallery for one test (tests add and remove items)."""
    target = tmp_path / "gallery"
    shutil.copytree(gallery_case.template, target)
    return target


@pytest.fixture(scope="session")
def live_server(gallery_case, tmp_path_factory):
    """One real ``lookalike serve --k 3`` (with the API key) on 127.0.0.1 over its own copy of the
    gallery, shared by the tests that need a real server (starting one costs seconds).
    Yields (base URL, gallery folder)."""
    gallery = tmp_path_factory.mktemp("live") / "gallery"
    shutil.copytree(gallery_case.template, gallery)
    with running_server(["--gallery", str(gallery), "--k", "3"], env={"LOOKALIKE_API_KEY": API_KEY}) as base:
        yield base, gallery
