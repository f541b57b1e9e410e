"""Manifests: building from folders, reading, atomic writing, and the errors they raise."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from lookalike.data import ManifestError, manifest_from_folder, read_manifest, write_manifest


def test_folder_labels_are_relative_class_paths(tmp_path: Path, make_image) -> None:
    root = tmp_path / "data"
    make_image(root / "Greek" / "character03" / "a.png")
    make_image(root / "Latin" / "character03" / "b.PNG")
    make_image(root / "Latin" / "character03" / "c.JpEg")
    make_image(root / "cat" / "d.webp")
    make_image(root / "cat" / ".hidden.png")
    make_image(root / ".cache" / "e.png")
    make_image(root / "loose.png")  # no class folder
    (root / "cat" / "notes.txt").write_text("not an image")

    frame = manifest_from_folder(root)

    assert list(frame.columns) == ["path", "label"]
    got = {(Path(p).name, label) for p, label in zip(frame["path"], frame["label"], strict=True)}
    assert got == {
        ("a.png", "Greek/character03"),
        ("b.PNG", "Latin/character03"),
        ("c.JpEg", "Latin/character03"),
        ("d.webp", "cat"),
    }
    assert all(Path(p).is_absolute() for p in frame["path"])


def test_folder_without_images_or_missing_folder_fails(tmp_path: Path) -> None:
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(ManifestError, match="no images found"):
        manifest_from_folder(tmp_path / "empty")
    with pytest.raises(ManifestError, match="is not a folder"):
        manifest_from_folder(tmp_path / "nowhere")


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_write_read_round_trip_with_relative_paths(tmp_path: Path, suffix: str) -> None:
    inside = str(tmp_path / "m" / "imgs" / "a.png")
    outside = str(tmp_path / "elsewhere" / "b.png")
    frame = pd.DataFrame(
        {"path": [inside, outside], "label": ["NA", "None"], "split": ["train", "test"]}, index=[5, 9]
    )

    written = write_manifest(frame, tmp_path / "m" / f"manifest{suffix}")

    assert written == (tmp_path / "m" / f"manifest{suffix}").resolve()
    raw = pd.read_csv(written, keep_default_na=False) if suffix == ".csv" else pd.read_parquet(written)
    assert list(raw["path"]) == ["imgs/a.png", outside]  # relative inside the manifest's folder
    back = read_manifest(written)
    assert list(back["path"]) == [inside, outside]
    assert list(back["label"]) == ["NA", "None"]  # never turned into missing values
    assert list(back["split"]) == ["train", "test"]
    assert list(back.index) == [0, 1]


def test_read_resolves_relative_to_the_manifest_folder_not_cwd(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "m.csv").write_text("label,path\nx,imgs/1.png\n")
    monkeypatch.chdir(tmp_path)
    frame = read_manifest("sub/m.csv")
    assert list(frame.columns[:2]) == ["path", "label"]
    assert frame["path"][0] == str(tmp_path / "sub" / "imgs" / "1.png")


def test_integer_labels_become_strings(tmp_path: Path) -> None:
    pd.DataFrame({"path": ["/a.png", "/b.png"], "label": [3, 12]}).to_parquet(tmp_path / "m.parquet")
    assert list(read_manifest(tmp_path / "m.parquet")["label"]) == ["3", "12"]


def test_read_errors_name_file_and_what_is_expected(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("file,label\na.png,x\n")
    with pytest.raises(
        ManifestError, match=r"no column\(s\) \['path'\].*expected at least \['path', 'label'\]"
    ):
        read_manifest(tmp_path / "m.csv")
    with pytest.raises(ManifestError, match=r"unsupported manifest suffix '.txt'.*\['.csv', '.parquet'\]"):
        read_manifest(tmp_path / "m.txt")
    with pytest.raises(ManifestError, match="no manifest file at"):
        read_manifest(tmp_path / "missing.csv")


def test_strict_read_names_empty_and_duplicated_rows(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("path,label\na.png,x\nb.png,\na.png,y\n,z\n")
    with pytest.raises(ManifestError) as info:
        read_manifest(tmp_path / "m.csv")
    message = str(info.value)
    assert "empty path in row(s) 3" in message
    assert "empty label in row(s) 1" in message
    assert "duplicated path in row(s) 2" in message
    assert len(read_manifest(tmp_path / "m.csv", strict=False)) == 4


def test_write_is_atomic_and_leaves_no_temporary_file(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "m.csv"
    write_manifest(pd.DataFrame({"path": ["/a.png"], "label": ["x"]}), target)
    before = target.read_bytes()

    def explode(self, path, *args, **kwargs):  # a write that dies half-way
        Path(path).write_text("path,la")
        raise RuntimeError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", explode)
    with pytest.raises(RuntimeError, match="disk full"):
        write_manifest(pd.DataFrame({"path": ["/b.png"], "label": ["y"]}), target)
    assert target.read_bytes() == before  # the old file is intact
    assert sorted(os.listdir(tmp_path)) == ["m.csv"]  # and no temporary file is left


def test_write_rejects_bad_suffix_and_missing_columns(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"unsupported manifest suffix '\.json'"):
        write_manifest(pd.DataFrame({"path": ["/a"], "label": ["x"]}), tmp_path / "m.json")
    with pytest.raises(ManifestError, match=r"no column\(s\) \['label'\]"):
        write_manifest(pd.DataFrame({"path": ["/a"]}), tmp_path / "m.csv")
    assert list(tmp_path.iterdir()) == []
