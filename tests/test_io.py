import os
import stat

import pytest

from lookalike._io import atomic_path, atomic_write_text


def test_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_successful_write_replaces_and_creates_folders(tmp_path):
    target = tmp_path / "a" / "b" / "out.txt"
    assert atomic_write_text(target, "new") == target
    assert target.read_text() == "new"
    assert [p.name for p in target.parent.iterdir()] == ["out.txt"]
    with atomic_path(tmp_path / "plot.png", suffix=".png") as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path
        tmp.write_bytes(b"x")
    assert (tmp_path / "plot.png").read_bytes() == b"x"


@pytest.fixture
def umask():
    """Set the process umask for a test and restore it after."""
    old = os.umask(0o022)
    os.umask(old)

    def set_mask(mask: int) -> None:
        os.umask(mask)

    yield set_mask
    os.umask(old)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_new_files_get_the_umask_mode_not_the_temp_files_0600(tmp_path, umask, mask, expected):
    umask(mask)
    atomic_write_text(tmp_path / "config.yaml", "a: 1\n")
    with atomic_path(tmp_path / "last.pt") as tmp:
        tmp.write_bytes(b"weights")
    for name in ("config.yaml", "last.pt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == expected, name


def test_replacing_a_file_keeps_its_mode(tmp_path, umask):
    umask(0o022)
    target = tmp_path / "split.csv"
    target.write_text("old")
    target.chmod(0o640)
    atomic_write_text(target, "new")
    assert target.read_text() == "new" and stat.S_IMODE(target.stat().st_mode) == 0o640


def test_run_files_are_readable_by_others_under_umask_022(tmp_path, umask):
    """The files a training run writes through the library: config, manifest/split, checkpoint."""
    import pandas as pd

    from lookalike.config import save_config, validate_config
    from lookalike.data import write_manifest
    from lookalike.models import create_embedder_from, save_checkpoint

    umask(0o022)
    save_config(
        validate_config({"data": {"root": "images"}, "model": {"backbone": "convnet4"}}), tmp_path / "c.yaml"
    )
    write_manifest(pd.DataFrame({"path": [str(tmp_path / "x.png")], "label": ["a"]}), tmp_path / "split.csv")
    save_checkpoint(tmp_path / "last.pt", create_embedder_from("convnet4", embed_dim=4, image_size=16))
    for name in ("c.yaml", "split.csv", "last.pt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name


def test_atomic_writes_are_flushed_before_and_after_the_rename(tmp_path, monkeypatch):
    """The data reaches the disk before the name points at it, and the rename itself is flushed."""
    import sys
    from pathlib import Path

    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc/self/fd to name the flushed files")
    flushed: list[str] = []
    real = os.fsync

    def recording(fd: int) -> None:
        flushed.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", recording)
    target = tmp_path / "out.txt"
    atomic_write_text(target, "hello")
    assert target.read_text() == "hello"
    assert len(flushed) == 2
    assert Path(flushed[0]).parent == tmp_path and Path(flushed[0]).name.startswith(".out.txt.")
    assert Path(flushed[1]) == tmp_path
