"""Build "emoji-styles", a third benchmark data set for issue 12: everyday objects drawn by
different artists, retrieved across drawing styles.

A class is one emoji of the object-like Unicode categories (Animals & Nature, Food & Drink,
Travel & Places, Activities, Objects: 857 candidates, ``--classes`` of them drawn with a seed). Its
images are that emoji in four drawing styles, each pasted several times at a random size, position
and rotation on a random background (flat colour, gradient or blurred noise), lightly blurred and
JPEG-compressed:

- ``google``: Noto Color Emoji (Google), Apache License 2.0, 64 px PNGs from the npm package
  ``emoji-datasource-google@16.0.0``;
- ``twitter``: Twemoji (Twitter / X, jdecked), CC-BY 4.0, 64 px PNGs from
  ``emoji-datasource-twitter@16.0.0``;
- ``openmoji``: OpenMoji colour, CC BY-SA 4.0, SVGs from ``openmoji@17.0.0``, rendered with cairosvg;
- ``openmoji-black``: OpenMoji's black line art of the same emoji (same licence).

Its character differs from the two shared data sets: colour objects (not strokes) like the
ImageNet classes a pretrained backbone knows, few source drawings per class, and a domain gap
(style) inside every class. The images are derived works of those sets and inherit their
licences (attribution: Google Noto Emoji, Twemoji by Twitter/X and contributors, OpenMoji by
HfG Schwäbisch Gmünd); the output's README.md says so. The set is built outside the repository
and never committed.

Run (needs ``npm`` on PATH for the download, and ``pip install cairosvg``):
    python benchmarks/make_emoji_dataset.py --src /work/data/emoji-src --out /work/data/emoji-styles
Then, as any image folder: ``lookalike train --config configs/cub_mobilenetv2.yaml
--set data.root=/work/data/emoji-styles/images ...``
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

PACKAGES = {
    "google": "emoji-datasource-google@16.0.0",
    "twitter": "emoji-datasource-twitter@16.0.0",
    "openmoji": "openmoji@17.0.0",
}
CATEGORIES = ("Animals & Nature", "Food & Drink", "Travel & Places", "Activities", "Objects")
STYLES = ("google", "twitter", "openmoji", "openmoji-black")


def fetch(src: Path) -> dict[str, Path]:
    """The three npm tarballs in ``src`` (``npm pack`` fetches the missing ones)."""
    src.mkdir(parents=True, exist_ok=True)
    out = {}
    for key, spec in PACKAGES.items():
        name, version = spec.rsplit("@", 1)
        path = src / f"{name}-{version}.tgz"
        if not path.exists():
            subprocess.run(["npm", "pack", spec], cwd=src, check=True, capture_output=True)
        out[key] = path
    return out


def _members(path: Path, wanted: set[str]) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.name in wanted}


def load_sources(tarballs: dict[str, Path], classes: int, seed: int) -> dict[str, dict[str, Image.Image]]:
    """{class name: {style: RGBA drawing}} for ``classes`` emoji drawn in all four styles."""
    import cairosvg

    with tarfile.open(tarballs["google"]) as tar:
        emoji = json.load(tar.extractfile("package/emoji.json"))
    candidates = sorted(
        (e for e in emoji if e["category"] in CATEGORIES and e["has_img_google"] and e["has_img_twitter"]),
        key=lambda e: e["short_name"],
    )
    with tarfile.open(tarballs["openmoji"]) as tar:
        names = set(tar.getnames())
    candidates = [
        e
        for e in candidates
        if f"package/color/svg/{e['unified']}.svg" in names
        and f"package/black/svg/{e['unified']}.svg" in names
    ]
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(candidates), size=min(classes, len(candidates)), replace=False))
    picked = [candidates[i] for i in chosen]
    google = _members(tarballs["google"], {f"package/img/google/64/{e['image']}" for e in picked})
    twitter = _members(tarballs["twitter"], {f"package/img/twitter/64/{e['image']}" for e in picked})
    svgs = _members(
        tarballs["openmoji"],
        {f"package/{kind}/svg/{e['unified']}.svg" for e in picked for kind in ("color", "black")},
    )

    def png(data: bytes) -> Image.Image:
        return Image.open(io.BytesIO(data)).convert("RGBA")

    def svg(data: bytes) -> Image.Image:
        return png(cairosvg.svg2png(bytestring=data, output_width=128, output_height=128))

    sources = {}
    for e in picked:
        sources[e["short_name"]] = {
            "google": png(google[f"package/img/google/64/{e['image']}"]),
            "twitter": png(twitter[f"package/img/twitter/64/{e['image']}"]),
            "openmoji": svg(svgs[f"package/color/svg/{e['unified']}.svg"]),
            "openmoji-black": svg(svgs[f"package/black/svg/{e['unified']}.svg"]),
        }
    return sources


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    kind = rng.integers(3)
    c1, c2 = rng.integers(0, 256, size=(2, 3))
    if kind == 0:  # flat colour
        arr = np.broadcast_to(c1, (size, size, 3))
    elif kind == 1:  # linear gradient in a random direction
        angle = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
        t = (np.cos(angle) * xx + np.sin(angle) * yy - min(0, np.cos(angle)) - min(0, np.sin(angle))) / (
            abs(np.cos(angle)) + abs(np.sin(angle))
        )
        arr = c1 + (c2 - c1) * t[..., None]
    else:  # blurred colour noise around a base colour
        noise = rng.normal(0, 40, size=(size // 8, size // 8, 3))
        small = Image.fromarray(np.clip(c1 + noise, 0, 255).astype(np.uint8))
        return small.resize((size, size), Image.BICUBIC).filter(ImageFilter.GaussianBlur(1.5))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def render(drawing: Image.Image, rng: np.random.Generator, size: int) -> Image.Image:
    """One image: the drawing at a random scale/rotation/position on a random background."""
    canvas = _background(rng, size)
    side = int(size * rng.uniform(0.45, 0.9))
    sprite = drawing.resize((side, side), Image.LANCZOS).rotate(
        rng.uniform(-25, 25), resample=Image.BICUBIC, expand=True
    )
    x = int(rng.integers(0, max(1, size - sprite.width + 1)))
    y = int(rng.integers(0, max(1, size - sprite.height + 1)))
    canvas.paste(
        sprite, (x - max(0, sprite.width - size) // 2, y - max(0, sprite.height - size) // 2), sprite
    )
    return canvas.filter(ImageFilter.GaussianBlur(rng.uniform(0.0, 0.8)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", type=Path, required=True, help="folder for the npm tarballs")
    parser.add_argument("--out", type=Path, required=True, help="output folder (must not exist)")
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--per-style", type=int, default=6, help="images per class and drawing style")
    parser.add_argument("--size", type=int, default=96, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.out.exists():
        raise SystemExit(f"{args.out} exists; give a new --out")
    sources = load_sources(fetch(args.src), args.classes, args.seed)
    tmp = args.out.with_name(args.out.name + ".partial")
    rows = ["path,label,style"]
    for name, styles in sources.items():
        folder = tmp / "images" / name
        folder.mkdir(parents=True)
        for style in STYLES:
            for i in range(args.per_style):
                key = hashlib.sha256(f"{args.seed}/{name}/{style}/{i}".encode()).digest()
                rng = np.random.default_rng(int.from_bytes(key[:8], "little"))
                path = folder / f"{style}_{i}.jpg"
                render(styles[style], rng, args.size).save(path, quality=int(rng.integers(70, 96)))
                rows.append(f"images/{name}/{path.name},{name},{style}")
    (tmp / "manifest.csv").write_text("\n".join(rows) + "\n")
    (tmp / "README.md").write_text(
        f"# emoji-styles ({len(sources)} classes x {len(STYLES)} styles x {args.per_style} images, "
        f"{args.size} px, seed {args.seed})\n\nBuilt by lookalike's benchmarks/make_emoji_dataset.py "
        "from Noto Color Emoji (Google, Apache-2.0), Twemoji (Twitter/X and contributors, CC-BY 4.0) "
        "and OpenMoji colour and black (HfG Schwaebisch Gmuend, CC BY-SA 4.0); these images are derived "
        "works under the same licences.\n"
    )
    tmp.rename(args.out)
    print(f"wrote {len(rows) - 1} images of {len(sources)} classes to {args.out}")


if __name__ == "__main__":
    main()
