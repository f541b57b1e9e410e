"""Benchmark importers, each on a tiny fixture laid out exactly as the published data set."""

from __future__ import annotations

from pathlib import Path

import pytest

from lookalike.data import (
    ManifestError,
    detect_format,
    find_problems,
    import_manifest,
    manifest_from_cub,
    manifest_from_inshop,
    manifest_from_sop,
)


def _cub(root: Path, make_image) -> Path:
    """CUB_200_2011/{images.txt, image_class_labels.txt, classes.txt, train_test_split.txt, images/}."""
    cub = root / "CUB_200_2011"
    classes = {
        1: "001.Black_footed_Albatross",
        100: "100.Brown_Pelican",
        101: "101.White_Pelican",
        200: "200.Common_Yellowthroat",
    }
    images, labels, split = [], [], []
    image_id = 0
    for class_id, name in classes.items():
        for j in range(2):
            image_id += 1
            rel = f"{name}/{name.split('.')[1]}_{j:04d}_{image_id}.jpg"
            make_image(cub / "images" / rel)
            images.append(f"{image_id} {rel}")
            labels.append(f"{image_id} {class_id}")
            split.append(f"{image_id} {j % 2}")
    (cub / "images.txt").write_text("\n".join(images) + "\n")
    (cub / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    (cub / "classes.txt").write_text("\n".join(f"{k} {v}" for k, v in classes.items()) + "\n")
    (cub / "train_test_split.txt").write_text("\n".join(split) + "\n")
    return cub


def test_cub_uses_the_dml_class_split(tmp_path: Path, make_image) -> None:
    cub = _cub(tmp_path, make_image)
    frame = manifest_from_cub(cub)
    assert len(frame) == 8
    assert find_problems(frame) == []  # every path points at a real image
    per_class = frame.groupby("label")["split"].agg(set).to_dict()
    assert per_class == {
        "001.Black_footed_Albatross": {"train"},
        "100.Brown_Pelican": {"train"},
        "101.White_Pelican": {"test"},
        "200.Common_Yellowthroat": {"test"},
    }
    assert set(frame["class_id"]) == {1, 100, 101, 200}
    assert detect_format(cub) == "cub"


def test_cub_without_classes_txt_labels_by_id_and_names_unlabelled_ids(tmp_path: Path, make_image) -> None:
    cub = _cub(tmp_path, make_image)
    (cub / "classes.txt").unlink()
    assert set(manifest_from_cub(cub)["label"]) == {"1", "100", "101", "200"}
    (cub / "image_class_labels.txt").write_text("1 1\n")
    with pytest.raises(ManifestError, match=r"image id\(s\) \['2'"):
        manifest_from_cub(cub)


def _sop(root: Path, make_image) -> Path:
    sop = root / "Stanford_Online_Products"
    header = "image_id class_id super_class_id path\n"
    train = [
        (1, 1, 1, "bicycle_final/111085122871_0.JPG"),
        (2, 1, 1, "bicycle_final/111085122871_1.JPG"),
        (3, 2, 2, "cabinet_final/111119289891_0.JPG"),
    ]
    test = [
        (4, 11319, 1, "bicycle_final/111265328556_0.JPG"),
        (5, 11319, 1, "bicycle_final/111265328556_1.JPG"),
    ]
    for name, rows in (("Ebay_train.txt", train), ("Ebay_test.txt", test)):
        (sop / name).parent.mkdir(parents=True, exist_ok=True)
        (sop / name).write_text(header + "".join(f"{a} {b} {c} {d}\n" for a, b, c, d in rows))
        for *_, rel in rows:
            make_image(sop / rel)
    (sop / "Ebay_info.txt").write_text("image_id class_id super_class_id path\n")
    return sop


def test_sop_splits_by_file(tmp_path: Path, make_image) -> None:
    sop = _sop(tmp_path, make_image)
    frame = manifest_from_sop(sop)
    assert list(frame["split"]) == ["train", "train", "train", "test", "test"]
    assert list(frame["label"]) == ["1", "1", "2", "11319", "11319"]
    assert list(frame["super_class_id"]) == [1, 1, 2, 1, 1]
    assert find_problems(frame) == []
    assert detect_format(sop) == "sop"
    (sop / "Ebay_test.txt").write_text("id class super path\n")
    with pytest.raises(ManifestError, match="expected the header 'image_id class_id super_class_id path'"):
        manifest_from_sop(sop)


@pytest.mark.parametrize("published", [True, False], ids=["Eval-and-Img-folders", "flat"])
def test_inshop_keeps_split_and_roles(tmp_path: Path, make_image, published: bool) -> None:
    root = tmp_path / "In-shop Clothes Retrieval Benchmark"
    listing = root / "Eval" / "list_eval_partition.txt" if published else root / "list_eval_partition.txt"
    image_base = root / "Img" if published else root
    rows = [
        ("img/WOMEN/Dresses/id_00000002/02_1_front.jpg", "id_00000002", "train"),
        ("img/WOMEN/Dresses/id_00000002/02_2_side.jpg", "id_00000002", "train"),
        ("img/MEN/Denim/id_00000080/01_1_front.jpg", "id_00000080", "query"),
        ("img/MEN/Denim/id_00000080/01_2_side.jpg", "id_00000080", "gallery"),
        ("img/MEN/Denim/id_00000080/01_3_back.jpg", "id_00000080", "gallery"),
    ]
    listing.parent.mkdir(parents=True)
    body = "".join(f"{a}           {b}    {c}\n" for a, b, c in rows)
    listing.write_text(f"{len(rows)}\nimage_name item_id evaluation_status\n{body}")
    for rel, *_ in rows:
        make_image(image_base / rel)

    frame = manifest_from_inshop(root)

    assert list(frame["role"]) == ["train", "train", "query", "gallery", "gallery"]
    assert list(frame["split"]) == ["train", "train", "test", "test", "test"]
    assert list(frame["label"]) == ["id_00000002"] * 2 + ["id_00000080"] * 3
    assert find_problems(frame) == []
    assert detect_format(root) == "inshop"


def test_detect_and_import_folder_and_manifest(tmp_path: Path, make_image) -> None:
    make_image(tmp_path / "d" / "cls" / "a.png")
    assert detect_format(tmp_path / "d") == "folder"
    (tmp_path / "m.csv").write_text("path,label\nd/cls/a.png,cls\n")
    assert detect_format(tmp_path / "m.csv") == "manifest"
    assert import_manifest(tmp_path / "m.csv")["path"][0] == str(tmp_path / "d" / "cls" / "a.png")
    with pytest.raises(ManifestError, match=r"unknown manifest format 'coco'; expected one of \['auto'"):
        import_manifest(tmp_path / "d", format="coco")
    with pytest.raises(ManifestError, match="lacks"):
        import_manifest(tmp_path / "d", format="cub")
