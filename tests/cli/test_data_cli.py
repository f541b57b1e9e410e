"""`lookalike manifest` and `lookalike split`, end to end through the command line."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from lookalike.cli import app
from lookalike.data import read_manifest

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
runner = CliRunner()


def _image(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (10, 200, 30)).save(path)
    return str(path)


def _assignment(frame: pd.DataFrame) -> dict[str, tuple[str, str]]:
    return {p: (s, r) for p, s, r in zip(frame["path"], frame["split"], frame["role"], strict=True)}


@pytest.fixture(scope="module")
def omniglot() -> Path:
    root = SHARED_DATA / "omniglot-small"
    if not root.is_dir():
        pytest.skip(
            f"real data not found at {root.resolve()} (../shared/data/omniglot-small beside the repo)"
        )
    return root.resolve()


def test_omniglot_manifest_then_split(omniglot: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "omniglot.csv"
    result = runner.invoke(app, ["manifest", str(omniglot), "--out", str(manifest)])
    assert result.exit_code == 0, result.output
    assert "wrote 4840 images of 242 classes" in result.output
    frame = read_manifest(manifest)
    assert frame["label"].nunique() == 242 and "Greek/character03" in set(frame["label"])

    def split(source: Path, out: Path, *args: str) -> pd.DataFrame:
        run = runner.invoke(app, ["split", str(source), "--out", str(out), *args])
        assert run.exit_code == 0, run.output
        return read_manifest(out)

    first = split(manifest, tmp_path / "a.csv", "--seed", "0")
    assert (first.groupby("label")["split"].nunique() == 1).all()  # class-disjoint
    classes = first.groupby("split")["label"].nunique().to_dict()
    assert classes == {"train": 170, "val": 24, "test": 48}
    evaluated = first[first["split"] != "train"]
    assert (evaluated.groupby("label")["role"].apply(lambda r: (r == "query").sum()) == 1).all()
    assert set(evaluated["role"]) == {"query", "gallery"}
    assert set(first["split_seed"]) == {0}
    assert set(first["source_sha256"]) == {hashlib.sha256(manifest.read_bytes()).hexdigest()}

    second = split(manifest, tmp_path / "b.csv", "--seed", "0")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()

    shuffled = tmp_path / "shuffled.parquet"
    pd.read_csv(manifest).sample(frac=1.0, random_state=7).to_parquet(shuffled, index=False)
    assert _assignment(split(shuffled, tmp_path / "c.csv", "--seed", "0")) == _assignment(second)

    other = split(manifest, tmp_path / "d.csv", "--seed", "1")
    assert set(other.loc[other["split"] == "test", "label"]) != set(
        first.loc[first["split"] == "test", "label"]
    )


def test_split_prints_summary_and_leave_one_out(omniglot: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "m.parquet"
    assert runner.invoke(app, ["manifest", str(omniglot / "Greek"), "--out", str(manifest)]).exit_code == 0
    out = tmp_path / "loo.csv"
    args = [
        "split",
        str(manifest),
        "--out",
        str(out),
        "--protocol",
        "leave-one-out",
        "--val",
        "0",
        "--test",
        "0.5",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "query+gallery" in result.output and "train" in result.output
    frame = read_manifest(out)
    assert set(frame.loc[frame["split"] == "test", "role"]) == {"query+gallery"}
    assert frame.loc[frame["split"] == "test", "label"].nunique() == 12  # half of Greek's 24 characters


def _bad_manifest(tmp_path: Path) -> tuple[Path, str, str]:
    corrupt = tmp_path / "imgs" / "b" / "corrupt.png"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(b"\x89PNG but not really")
    missing = str(tmp_path / "imgs" / "a" / "gone.png")
    paths = [_image(tmp_path / "imgs" / "a" / f"{i}.png") for i in range(3)] + [missing, str(corrupt)]
    pd.DataFrame({"path": paths, "label": ["a", "a", "a", "a", "b"]}).to_csv(tmp_path / "in.csv", index=False)
    return tmp_path / "in.csv", missing, str(corrupt)


def test_verify_fails_naming_rows_and_writes_nothing(tmp_path: Path) -> None:
    source, missing, corrupt = _bad_manifest(tmp_path)
    out = tmp_path / "out" / "clean.csv"
    result = runner.invoke(app, ["manifest", str(source), "--out", str(out), "--verify"])
    assert result.exit_code == 1
    assert f"row 3: {missing!r}: missing file" in result.output
    assert f"row 4: {corrupt!r}: not a decodable image" in result.output
    assert "2 invalid row(s)" in result.output and "nothing written" in result.output
    assert not out.exists() and not (out.parent.exists() and any(out.parent.iterdir()))


def test_drop_invalid_writes_the_rest_and_names_the_dropped(tmp_path: Path) -> None:
    source, missing, corrupt = _bad_manifest(tmp_path)
    out = tmp_path / "clean.parquet"
    result = runner.invoke(app, ["manifest", str(source), "--out", str(out), "--drop-invalid"])
    assert result.exit_code == 0, result.output
    assert "dropped 2 invalid row(s): [3, 4]" in result.output
    assert missing in result.output and corrupt in result.output
    kept = read_manifest(out)
    assert len(kept) == 3 and missing not in set(kept["path"]) and corrupt not in set(kept["path"])


def test_errors_exit_nonzero_with_the_reason(tmp_path: Path) -> None:
    source, _, _ = _bad_manifest(tmp_path)
    result = runner.invoke(
        app, ["split", str(source), "--out", str(tmp_path / "s.csv"), "--val", "0.6", "--test", "0.5"]
    )
    assert result.exit_code == 1
    assert "val + test = 0.6 + 0.5" in result.output and not (tmp_path / "s.csv").exists()
    result = runner.invoke(app, ["manifest", str(source), "--out", str(tmp_path / "m.txt")])
    assert result.exit_code == 1 and "unsupported manifest suffix '.txt'" in result.output
    result = runner.invoke(
        app, ["manifest", str(tmp_path), "--out", str(tmp_path / "m.csv"), "--format", "sop"]
    )
    assert result.exit_code == 1 and "Ebay_train.txt" in result.output


def test_benchmark_layout_is_detected_and_its_split_kept(tmp_path: Path) -> None:
    sop = tmp_path / "Stanford_Online_Products"
    rows = [
        (1, 1, "bicycle_final/1_0.JPG"),
        (2, 1, "bicycle_final/1_1.JPG"),
        (3, 2, "chair_final/2_0.JPG"),
        (4, 2, "chair_final/2_1.JPG"),
    ]
    tests = [(5, 3, "kettle_final/3_0.JPG"), (6, 3, "kettle_final/3_1.JPG"), (7, 3, "kettle_final/3_2.JPG")]
    for name, part in (("Ebay_train.txt", rows), ("Ebay_test.txt", tests)):
        lines = "".join(f"{i} {c} 1 {p}\n" for i, c, p in part)
        sop.mkdir(exist_ok=True)
        (sop / name).write_text("image_id class_id super_class_id path\n" + lines)
        for *_, p in part:
            _image(sop / p)
    manifest = sop / "manifest.csv"
    result = runner.invoke(app, ["manifest", str(sop), "--out", str(manifest), "--verify"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("sop: wrote 7 images of 3 classes")
    assert pd.read_csv(manifest)["path"][0] == "bicycle_final/1_0.JPG"  # relative to the manifest
    result = runner.invoke(
        app, ["split", str(manifest), "--out", str(tmp_path / "s.csv"), "--keep-benchmark-split"]
    )
    assert result.exit_code == 0, result.output
    frame = read_manifest(tmp_path / "s.csv")
    assert list(frame["split"]) == ["train"] * 4 + ["test"] * 3
    assert sorted(frame["role"][4:]) == ["gallery", "gallery", "query"]
