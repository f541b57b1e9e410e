"""Built-in data sets: a real metric-learning task made from what the dependencies already ship.

``glyphs``: characters rendered from the TrueType fonts that come with matplotlib (DejaVu Sans /
Serif / Sans Mono with their bold and oblique faces, STIX, Computer Modern). A class is one
character (Latin, Greek, Cyrillic, Armenian, Georgian letters, digits, currency, arrows, maths
operators); its images are that character in different fonts and styles, each with a random
affine warp, stroke width, blur, contrast and noise. Only glyphs a font really has are used (its
cmap, and for the TeX-encoded Computer Modern fonts the glyph's name too), empty renders are
skipped, and look-alike characters of different scripts (Latin ``A``, Greek ``Α``, Cyrillic ``А``)
are kept once, so that every class is tellable from its images. Splitting the classes
class-disjointly gives unseen test characters: the model has to learn "the same glyph in another
font", not the glyphs themselves.

The set is deterministic for a seed (the same PNG bytes) and written as any user data set: a
folder per class (``U+0041``) and ``manifest.csv`` (``path``, ``label``, ``char``, ``name``,
``script``, ``font``), plus ``dataset.json`` with the parameters it was made with.

``omniglot``, ``cub`` and ``sop`` are downloaded (torchvision's Omniglot; the official CUB and SOP
archives) and imported with :mod:`lookalike.data.importers` when there is internet.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from lookalike.data.manifest import manifest_from_folder, write_manifest

__all__ = [
    "BUILTIN_DATASETS",
    "PUBLIC_DATASETS",
    "DatasetDownloadError",
    "FontFace",
    "GlyphClass",
    "GlyphsSpec",
    "font_faces",
    "glyph_classes",
    "import_public_dataset",
    "make_glyphs",
    "render_glyph",
]

BUILTIN_DATASETS: tuple[str, ...] = ("glyphs",)
PUBLIC_DATASETS: tuple[str, ...] = ("omniglot", "cub", "sop")
MANIFEST_NAME = "manifest.csv"
INFO_NAME = "dataset.json"
FORMAT_VERSION = 1

# (file stem, family, style); Computer Modern files use TeX's own encoding, checked by glyph name.
_FACES: tuple[tuple[str, str, str], ...] = (
    ("DejaVuSans", "DejaVu Sans", "regular"),
    ("DejaVuSans-Bold", "DejaVu Sans", "bold"),
    ("DejaVuSans-Oblique", "DejaVu Sans", "oblique"),
    ("DejaVuSans-BoldOblique", "DejaVu Sans", "bold oblique"),
    ("DejaVuSerif", "DejaVu Serif", "regular"),
    ("DejaVuSerif-Bold", "DejaVu Serif", "bold"),
    ("DejaVuSerif-Italic", "DejaVu Serif", "italic"),
    ("DejaVuSerif-BoldItalic", "DejaVu Serif", "bold italic"),
    ("DejaVuSansMono", "DejaVu Sans Mono", "regular"),
    ("DejaVuSansMono-Bold", "DejaVu Sans Mono", "bold"),
    ("DejaVuSansMono-Oblique", "DejaVu Sans Mono", "oblique"),
    ("DejaVuSansMono-BoldOblique", "DejaVu Sans Mono", "bold oblique"),
    ("STIXGeneral", "STIX", "regular"),
    ("STIXGeneralBol", "STIX", "bold"),
    ("STIXGeneralItalic", "STIX", "italic"),
    ("STIXGeneralBolIta", "STIX", "bold italic"),
    ("cmr10", "Computer Modern", "roman"),
    ("cmb10", "Computer Modern", "bold"),
    ("cmti10", "Computer Modern", "text italic"),
    ("cmmi10", "Computer Modern", "math italic"),
    ("cmss10", "Computer Modern", "sans"),
    ("cmtt10", "Computer Modern", "typewriter"),
)

# Candidate characters by script, in priority order: of two look-alikes the earlier one is kept.
_SCRIPTS: tuple[tuple[str, tuple[tuple[int, int], ...]], ...] = (
    ("latin", ((0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A), (0xC0, 0x24F))),
    ("greek", ((0x391, 0x3C9),)),
    ("cyrillic", ((0x400, 0x4FF),)),
    ("armenian", ((0x531, 0x556), (0x561, 0x587))),
    ("georgian", ((0x10D0, 0x10FA),)),
    ("symbol", ((0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E), (0xA2, 0xBF), (0x20A0, 0x20BF))),
    ("letterlike", ((0x2100, 0x214F),)),
    ("arrow", ((0x2190, 0x21FF),)),
    ("math", ((0x2200, 0x22FF),)),
)
_LETTER_CATEGORIES = ("Lu", "Ll", "Lo", "Nd")
_SYMBOL_CATEGORIES = ("Sm", "So", "Sc", "Po", "Ps", "Pe", "Pd")


class DatasetDownloadError(RuntimeError):
    """A public data set could not be downloaded; the message says from where and what to do."""


@dataclass(frozen=True)
class FontFace:
    """One font file: ``path``, a readable ``family`` and ``style``."""

    path: str
    family: str
    style: str

    @property
    def name(self) -> str:
        return f"{self.family} {self.style}"


@dataclass(frozen=True)
class GlyphClass:
    """A character that becomes a class: its code point, Unicode name, script and the faces
    (indices into :func:`font_faces`) that have it."""

    codepoint: int
    name: str
    script: str
    faces: tuple[int, ...]

    @property
    def char(self) -> str:
        return chr(self.codepoint)

    @property
    def label(self) -> str:
        return f"U+{self.codepoint:04X}"


@dataclass(frozen=True)
class GlyphsSpec:
    """The parameters of a glyphs data set (saved as ``dataset.json``; same spec, same bytes).

    ``classes``: how many characters (a seeded choice among the eligible ones; None = all).
    ``per_class``: images per character. ``image_size``: side in pixels (grayscale PNG).
    ``min_faces``: a character needs at least this many font faces to become a class.
    """

    seed: int = 0
    classes: int | None = 400
    per_class: int = 20
    image_size: int = 32
    min_faces: int = 8
    version: int = field(default=FORMAT_VERSION)

    def __post_init__(self) -> None:
        if self.classes is not None and self.classes < 2:
            raise ValueError(f"classes={self.classes}: expected at least 2 characters (or None for all)")
        if self.per_class < 2:
            raise ValueError(f"per_class={self.per_class}: expected at least 2 images per character")
        if not 16 <= self.image_size <= 256:
            raise ValueError(f"image_size={self.image_size}: expected 16 to 256 pixels")
        if self.min_faces < 1:
            raise ValueError(f"min_faces={self.min_faces}: expected at least 1")


def _font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@cache
def font_faces() -> tuple[FontFace, ...]:
    """The font faces the glyphs data set draws from (those of matplotlib's fonts present here)."""
    folder = _font_dir()
    faces = tuple(
        FontFace(str(folder / f"{stem}.ttf"), family, style)
        for stem, family, style in _FACES
        if (folder / f"{stem}.ttf").is_file()
    )
    if not faces:
        raise FileNotFoundError(f"no TrueType fonts found in {folder} (matplotlib's mpl-data/fonts/ttf)")
    return faces


def _face_cmap(face: FontFace) -> dict[int, str]:
    """Code point -> glyph, only where the glyph is really that character."""
    from fontTools.agl import toUnicode
    from fontTools.ttLib import TTFont

    with TTFont(face.path, lazy=True) as font:
        cmap = dict(font.getBestCmap() or {})
    tex_encoded = face.family == "Computer Modern"
    out = {}
    for code, glyph in cmap.items():
        if glyph in (".notdef", ".null", "space") or glyph.startswith("uniE"):
            continue
        if tex_encoded and toUnicode(glyph) != chr(code):  # TeX encodings put other glyphs at ASCII codes
            continue
        out[code] = glyph
    return out


def _candidates() -> Iterable[tuple[int, str]]:
    for script, ranges in _SCRIPTS:
        categories = _SYMBOL_CATEGORIES if script in ("symbol", "letterlike", "arrow", "math") else None
        for lo, hi in ranges:
            for code in range(lo, hi + 1):
                ch = chr(code)
                cat = unicodedata.category(ch)
                if categories is None and cat not in _LETTER_CATEGORIES:
                    continue
                if categories is not None and cat not in categories:
                    continue
                if unicodedata.decomposition(ch):  # accented/compatibility forms: near-copies of a base
                    continue
                if not unicodedata.name(ch, ""):
                    continue
                yield code, script


@cache
def _face_font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


@cache
def _face_size(path: str, canvas: int) -> int:
    """Font size (px) at which the face's capital H is 45% of the canvas high: faces look alike in size."""
    probe = _face_font(path, 200)
    _, top, _, bottom = probe.getbbox("H", anchor="ls")
    return max(4, round(200 * 0.45 * canvas / max(1, bottom - top)))


def _coverage(face: FontFace, ch: str, canvas: int, *, stroke: int = 0) -> np.ndarray:
    """The glyph's ink (float32 (canvas, canvas) in [0, 1]) centred on its bounding box; scaled
    down when it would not fit in 85% of the canvas. All zero when the font draws nothing."""
    font = _face_font(face.path, _face_size(face.path, canvas))
    big = 2 * canvas
    left, top, right, bottom = font.getbbox(ch, anchor="ls", stroke_width=stroke)
    image = Image.new("L", (big, big), 0)
    if right <= left or bottom <= top:
        return np.zeros((canvas, canvas), np.float32)
    x = big / 2 - (left + right) / 2
    y = big / 2 - (top + bottom) / 2
    ImageDraw.Draw(image).text(
        (x, y), ch, font=font, fill=255, anchor="ls", stroke_width=stroke, stroke_fill=255
    )
    extent = max(right - left, bottom - top)
    if extent > 0.85 * canvas:
        side = max(1, round(big * 0.85 * canvas / extent))
        image = image.resize((side, side), Image.Resampling.LANCZOS)
        pad = Image.new("L", (big, big), 0)
        pad.paste(image, ((big - side) // 2, (big - side) // 2))
        image = pad
    off = (big - canvas) // 2
    image = image.crop((off, off, off + canvas, off + canvas))
    return np.asarray(image, dtype=np.float32) / 255.0


def _min_ink(canvas: int) -> float:
    return 0.02 * canvas * canvas  # below this a render is a dot, a short line or empty


@cache
def glyph_classes(min_faces: int = 8) -> tuple[GlyphClass, ...]:
    """Every character that can be a class: drawn (with ink) by at least ``min_faces`` faces, with
    a Unicode name, and not a look-alike of an earlier character (compared on DejaVu Sans and
    DejaVu Serif renders: two characters are look-alikes when either render nearly coincides)."""
    faces = font_faces()
    cmaps = [_face_cmap(f) for f in faces]
    by_stem = {Path(f.path).stem: i for i, f in enumerate(faces)}
    refs = [by_stem.get("DejaVuSans"), by_stem.get("DejaVuSerif")]
    canvas = 32
    kept: list[GlyphClass] = []
    signatures: list[np.ndarray] = []
    for code, script in _candidates():
        have = tuple(i for i, cmap in enumerate(cmaps) if code in cmap)
        if len(have) < min_faces:
            continue
        ch = chr(code)
        views = []
        for ref in refs:
            face = faces[ref if ref is not None and ref in have else have[0]]
            views.append(_coverage(face, ch, canvas))
        if any(v.sum() < _min_ink(canvas) for v in views):
            continue
        sig = np.stack(views).reshape(2, -1)
        if signatures:
            prior = np.stack(signatures)  # (K, 2, P)
            # (K, 2): ink that differs, as a share of both glyphs' ink, per reference face
            diff = np.abs(prior - sig[None]).sum(axis=2) / (prior.sum(axis=2) + sig.sum(axis=1)[None])
            if bool((diff.min(axis=1) < 0.08).any()):  # identical in either face: a look-alike
                continue
        signatures.append(sig)
        kept.append(GlyphClass(code, unicodedata.name(ch), script, have))
    return tuple(kept)


def render_glyph(face: FontFace, ch: str, rng: np.random.Generator, *, image_size: int = 32) -> Image.Image:
    """One image of ``ch`` in ``face``: random stroke width, affine warp (rotation, shear, scale,
    shift), blur, ink/paper levels and noise drawn from ``rng``. Grayscale, ``image_size`` square."""
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    hi = 3 * image_size  # drawn at 3x, then reduced: smooth edges
    style = (0, 1, 1, 2)[int(rng.integers(0, 4))]  # thinner, as designed (half the time), thicker
    ink = _coverage(face, ch, hi, stroke=max(1, hi // 64) if style == 2 else 0)
    image = Image.fromarray((ink * 255).astype(np.uint8), mode="L")
    if style == 0:
        image = image.filter(ImageFilter.MinFilter(3))
        if np.asarray(image).max() == 0:  # a hairline glyph vanished: keep it as designed
            image = Image.fromarray((ink * 255).astype(np.uint8), mode="L")
    angle = float(rng.uniform(-12, 12))
    shear = [float(rng.uniform(-14, 14)), float(rng.uniform(-6, 6))]
    scale = float(rng.uniform(0.8, 1.12))
    shift = [int(rng.integers(-hi // 14, hi // 14 + 1)) for _ in range(2)]
    image = F.affine(
        image,
        angle=angle,
        translate=shift,
        scale=scale,
        shear=shear,
        interpolation=InterpolationMode.BILINEAR,
        fill=0,
    )
    image = image.resize((image_size, image_size), Image.Resampling.LANCZOS)
    blur = float(rng.uniform(0.0, 0.9))
    if blur > 0.25:
        image = image.filter(ImageFilter.GaussianBlur(blur))
    cover = np.asarray(image, dtype=np.float32) / 255.0
    paper = float(rng.uniform(190, 255))
    pen = float(rng.uniform(0, 90))
    pixels = paper + (pen - paper) * cover + rng.normal(0.0, float(rng.uniform(0, 14)), cover.shape)
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), mode="L")


def _chosen_classes(spec: GlyphsSpec) -> list[GlyphClass]:
    eligible = list(glyph_classes(spec.min_faces))
    if spec.classes is None or spec.classes >= len(eligible):
        return eligible
    rng = np.random.default_rng([spec.seed, 0x61797068])
    chosen = sorted(rng.choice(len(eligible), size=spec.classes, replace=False).tolist())
    return [eligible[i] for i in chosen]


def make_glyphs(
    out: str | Path,
    spec: GlyphsSpec | None = None,
    *,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Write the glyphs data set of ``spec`` into the folder ``out`` and return its manifest frame.

    When ``out`` already holds the data set of the same spec it is reused as it is. Any other
    content there is an error unless ``overwrite``. The folder appears complete or not at all
    (written to a temporary folder, then renamed). ``progress(done, total)`` is called per class.
    """
    spec = spec or GlyphsSpec()
    out = Path(out)
    info_path = out / INFO_NAME
    if out.exists():
        if _same_spec(info_path, spec) and (out / MANIFEST_NAME).is_file():
            return _read(out)
        if not overwrite and any(out.iterdir()):
            raise FileExistsError(
                f"{out} is not empty and does not hold the glyphs data set of this spec "
                f"({asdict(spec)}); choose an empty folder or pass overwrite=True"
            )
    faces = font_faces()
    classes = _chosen_classes(spec)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        rows = []
        for ci, cls in enumerate(classes):
            folder = tmp / cls.label
            folder.mkdir()
            for j in range(spec.per_class):
                rng = np.random.default_rng([spec.seed, cls.codepoint, j])
                face_index = cls.faces[int(rng.integers(len(cls.faces)))] if j >= len(cls.faces) else None
                if face_index is None:  # first images: every face once (seeded order), then at random
                    order = np.random.default_rng([spec.seed, cls.codepoint]).permutation(len(cls.faces))
                    face_index = cls.faces[int(order[j])]
                face = faces[face_index]
                image = render_glyph(face, cls.char, rng, image_size=spec.image_size)
                name = f"{cls.label}_{j:03d}.png"
                image.save(folder / name, format="PNG", optimize=False)
                rows.append(
                    {
                        "path": f"{cls.label}/{name}",
                        "label": cls.label,
                        "char": cls.char,
                        "name": cls.name,
                        "script": cls.script,
                        "font": face.name,
                    }
                )
            if progress is not None:
                progress(ci + 1, len(classes))
        frame = pd.DataFrame(rows)
        frame.to_csv(tmp / MANIFEST_NAME, index=False)
        info = {"dataset": "glyphs", **asdict(spec), "n_classes": len(classes), "n_images": len(frame)}
        (tmp / INFO_NAME).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _read(out)


def _same_spec(info_path: Path, spec: GlyphsSpec) -> bool:
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return info.get("dataset") == "glyphs" and all(info.get(k) == v for k, v in asdict(spec).items())


def _read(out: Path) -> pd.DataFrame:
    from lookalike.data.manifest import read_manifest

    return read_manifest(out / MANIFEST_NAME)


# ---- public benchmarks (need internet) ------------------------------------------------------------

_ARCHIVES = {
    "cub": (
        "https://data.caltech.edu/records/65de6-vbk23/files/CUB_200_2011.tgz?download=1",
        "CUB_200_2011.tgz",
        "CUB_200_2011",
    ),
    "sop": (
        "ftp://cs.stanford.edu/cs/cvgl/Stanford_Online_Products.zip",
        "Stanford_Online_Products.zip",
        "Stanford_Online_Products",
    ),
}


def import_public_dataset(
    name: str, root: str | Path, *, download: Callable[[str, Path], None] | None = None
) -> pd.DataFrame:
    """Download (unless already there) and import a public benchmark into ``root``; returns its
    manifest frame, which is also written as ``root/manifest.csv``.

    ``omniglot``: torchvision's Omniglot (background set, 964 characters of 30 alphabets; labels
    ``Alphabet/characterNN``). ``cub``: CUB-200-2011; ``sop``: Stanford Online Products, from
    their official archives, read by :func:`~lookalike.data.manifest_from_cub` /
    :func:`~lookalike.data.manifest_from_sop` (the benchmark's own split kept in ``split``).
    ``download(url_or_name, root)`` fetches and unpacks (tests pass their own).
    """
    if name not in PUBLIC_DATASETS:
        raise ValueError(f"unknown public data set {name!r}; expected one of {list(PUBLIC_DATASETS)}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    fetch = download or _default_download
    if name == "omniglot":
        folder = root / "omniglot-py" / "images_background"
        if not folder.is_dir():
            _fetching(fetch, "omniglot", root, "torchvision.datasets.Omniglot")
        frame = manifest_from_folder(folder)
    else:
        from lookalike.data.importers import manifest_from_cub, manifest_from_sop

        url, _, subdir = _ARCHIVES[name]
        folder = root / subdir
        if not folder.is_dir():
            _fetching(fetch, url, root, url)
        frame = manifest_from_cub(folder) if name == "cub" else manifest_from_sop(folder)
    write_manifest(frame, root / MANIFEST_NAME)
    return frame


def _fetching(fetch: Callable[[str, Path], None], what: str, root: Path, source: str) -> None:
    try:
        fetch(what, root)
    except OSError as exc:  # URLError, socket errors, DNS failures are all OSErrors
        raise DatasetDownloadError(
            f"cannot download {source} into {root} ({type(exc).__name__}: {exc}). Without internet, "
            "fetch the data set elsewhere, unpack it, and run `lookalike demo --data FOLDER_OR_MANIFEST`, "
            "or run the demo on the built-in data set (`lookalike demo`, no download needed)"
        ) from exc


def _default_download(what: str, root: Path) -> None:
    if what == "omniglot":
        from torchvision.datasets import Omniglot

        Omniglot(str(root), background=True, download=True)
        return
    from torchvision.datasets.utils import download_and_extract_archive

    filename = next(f for url, f, _ in _ARCHIVES.values() if url == what)
    download_and_extract_archive(what, str(root), filename=filename)
