"""The built-in glyphs data set (rendered from matplotlib's fonts) and the public-benchmark fetchers."""

from __future__ import annotations

import hashlib
import json
import unicodedata
import urllib.error
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lookalike.data import manifest_from_folder, read_manifest
from lookalike.data.builtin import (
    DatasetDownloadError,
    GlyphsSpec,
    _face_cmap,
    font_faces,
    glyph_classes,
    import_public_dataset,
    make_glyphs,
)

SMALL = GlyphsSpec(seed=3, classes=6, per_class=5, image_size=24)


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_hundreds_of_classes_from_many_scripts_each_in_enough_faces() -> None:
    classes = glyph_classes(8)
    assert len(classes) >= 400
    scripts = {c.script for c in classes}
    assert {"latin", "greek", "cyrillic", "armenian", "math", "arrow"} <= scripts
    assert len({c.codepoint for c in classes}) == len(classes)
    assert all(len(c.faces) >= 8 for c in classes)
    assert all(c.name == unicodedata.name(c.char) for c in classes)
    labels = {c.label for c in classes}
    assert "U+0041" in labels and "U+0416" in labels  # Latin A, Cyrillic Zhe
    # look-alikes of an earlier script are dropped: Cyrillic A and Greek Alpha draw Latin A
    assert "U+0410" not in labels and "U+0391" not in labels and "U+043E" not in labels


def test_tex_encoded_fonts_keep_only_the_glyphs_their_codes_name() -> None:
    cmr = next(f for f in font_faces() if f.path.endswith("cmr10.ttf"))
    cmap = _face_cmap(cmr)
    assert cmap[ord("A")] == "A"
    assert ord("<") not in cmap  # cmr10 draws an inverted exclamation mark at '<'
    lastresort = [f for f in font_faces() if "LastResort" in f.path]
    assert lastresort == []  # its placeholder boxes are not characters


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path: Path) -> None:
    make_glyphs(tmp_path / "a", SMALL)
    make_glyphs(tmp_path / "b", SMALL)
    make_glyphs(tmp_path / "c", GlyphsSpec(seed=4, classes=6, per_class=5, image_size=24))
    a, b, c = _digest(tmp_path / "a"), _digest(tmp_path / "b"), _digest(tmp_path / "c")
    assert a == b
    assert len(a) == 6 * 5 + 2  # images + manifest.csv + dataset.json
    images_a = {k: v for k, v in a.items() if k.endswith(".png")}
    images_c = {k: v for k, v in c.items() if k.endswith(".png")}
    assert set(images_a.values()).isdisjoint(images_c.values())


def test_written_as_any_user_data_set(tmp_path: Path) -> None:
    frame = make_glyphs(tmp_path / "g", SMALL)
    assert list(frame.columns)[:2] == ["path", "label"]
    assert {"char", "name", "script", "font"} <= set(frame.columns)
    assert len(frame) == 30 and frame["label"].nunique() == 6
    assert frame.groupby("label").size().eq(5).all()
    # a folder per class: the generic folder reader finds the same images and labels
    by_folder = manifest_from_folder(tmp_path / "g")
    assert sorted(zip(by_folder["path"], by_folder["label"], strict=True)) == sorted(
        zip(frame["path"], frame["label"], strict=True)
    )
    assert read_manifest(tmp_path / "g" / "manifest.csv")["path"].tolist() == frame["path"].tolist()
    info = json.loads((tmp_path / "g" / "dataset.json").read_text())
    assert info["seed"] == 3 and info["n_images"] == 30
    for label, rows in frame.groupby("label"):
        assert label.startswith("U+") and rows["char"].nunique() == 1
        pixels = [np.asarray(Image.open(p)) for p in rows["path"]]
        assert all(p.shape == (24, 24) for p in pixels)
        assert all(p.min() < p.max() - 60 for p in pixels)  # ink on paper, not a blank square
        # the images of a class really differ (fonts, warps, noise), none is a copy of another
        assert len({p.tobytes() for p in pixels}) == 5
    # a class is drawn in several fonts
    assert frame.groupby("label")["font"].nunique().min() >= 3


def test_reused_when_present_refused_over_other_content(tmp_path: Path) -> None:
    out = tmp_path / "g"
    make_glyphs(out, SMALL)
    stamp = (out / "manifest.csv").stat().st_mtime_ns
    make_glyphs(out, SMALL)  # same spec: nothing is rewritten
    assert (out / "manifest.csv").stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError, match="does not hold the glyphs data set of this spec"):
        make_glyphs(out, GlyphsSpec(seed=9, classes=6, per_class=5, image_size=24))
    assert (out / "manifest.csv").stat().st_mtime_ns == stamp  # untouched
    other = tmp_path / "mine"
    other.mkdir()
    (other / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="not empty"):
        make_glyphs(other, SMALL)
    assert (other / "keep.txt").read_text() == "user data"


def test_bad_spec_is_refused_with_the_value() -> None:
    with pytest.raises(ValueError, match="per_class=1"):
        GlyphsSpec(per_class=1)
    with pytest.raises(ValueError, match="image_size=8"):
        GlyphsSpec(image_size=8)


def test_offline_download_says_what_to_do(tmp_path: Path) -> None:
    def offline(what: str, root: Path) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    for name in ("omniglot", "cub", "sop"):
        with pytest.raises(DatasetDownloadError, match=r"cannot download .*--data FOLDER_OR_MANIFEST"):
            import_public_dataset(name, tmp_path / name, download=offline)
    with pytest.raises(ValueError, match="unknown public data set 'mnist'"):
        import_public_dataset("mnist", tmp_path)


def test_import_after_download_reads_the_benchmark_layouts(tmp_path: Path, make_image) -> None:
    def fake_omniglot(what: str, root: Path) -> None:  # torchvision's unpacked layout
        for alphabet in ("Greek", "Latin"):
            for ch in ("character01", "character02"):
                for j in range(2):
                    make_image(root / "omniglot-py" / "images_background" / alphabet / ch / f"{j}.png")

    frame = import_public_dataset("omniglot", tmp_path / "o", download=fake_omniglot)
    assert sorted(frame["label"].unique()) == [
        "Greek/character01",
        "Greek/character02",
        "Latin/character01",
        "Latin/character02",
    ]
    assert (tmp_path / "o" / "manifest.csv").is_file()

    def fake_cub(url: str, root: Path) -> None:
        assert url.startswith("https://data.caltech.edu/")
        cub = root / "CUB_200_2011"
        for image_id, name in enumerate(["001.A", "101.B"], 1):
            make_image(cub / "images" / name / f"{image_id}.jpg")
        (cub / "images.txt").write_text("1 001.A/1.jpg\n2 101.B/2.jpg\n")
        (cub / "image_class_labels.txt").write_text("1 1\n2 101\n")

    frame = import_public_dataset("cub", tmp_path / "c", download=fake_cub)
    assert frame["split"].tolist() == ["train", "test"]
    calls = []
    import_public_dataset("cub", tmp_path / "c", download=lambda u, r: calls.append(u))
    assert calls == []  # already there: no second download
