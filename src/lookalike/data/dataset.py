"""The image Dataset over a manifest: ``(image, label index, row id)`` per item."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset
from torchvision.transforms import v2

__all__ = ["ImageDecodeError", "ManifestDataset", "load_rgb", "to_rgb"]

_log = logging.getLogger(__name__)

_TO_TENSOR = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])


class ImageDecodeError(RuntimeError):
    """An image of the manifest could not be read; the message names the file and the row."""


def load_rgb(path: str) -> Image.Image:
    """Open an image as 8-bit RGB: EXIF rotation applied; grayscale, 1-bit and palette images
    converted; transparency composited on white."""
    with Image.open(path) as image:
        image.load()
        return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    """An image in memory as 8-bit RGB, the way :func:`load_rgb` converts files: EXIF rotation
    applied; grayscale, 16-bit, 1-bit and palette images converted; transparency composited on white."""
    image = ImageOps.exif_transpose(image)
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        top = array.max() or 1.0
        image = Image.fromarray((array * (255.0 / top)).astype(np.uint8))
    return image.convert("RGB")


class ManifestDataset(Dataset):
    """Images of a manifest frame (columns ``path``, absolute, and ``label``).

    ``dataset[i]`` is ``(image, label_index, row_id)``:

    - ``image``: ``transform(PIL RGB image)``; without a transform a float32 tensor (3, H, W) in [0, 1].
    - ``label_index``: int, the label's position in :attr:`classes`.
    - ``row_id``: int, the frame's index label of the row; for a frame from
      :func:`~lookalike.data.read_manifest`, or any subset of it, the 0-based data row of the
      manifest file, so that the same image has the same id in every subset (a query is never
      matched with itself).

    :attr:`classes` is the sorted unique labels of the frame, or the ``classes`` given (to share
    one label mapping between datasets; every label must be among them). :attr:`labels` is an
    int64 tensor (N,) of label indices, for :class:`~lookalike.data.PKSampler`.

    ``cache_bytes > 0``: decode every image once, now, and keep the decoded RGB pixels in memory
    when they fit in that many bytes (sizes read from the file headers first), so that decoding
    is not paid again every epoch; when they do not fit, or a file cannot be read, the images are
    read from disk as usual and the reason is logged. :attr:`cached` says which happened. The
    pixels are numpy arrays made before any DataLoader worker starts, so forked workers share them.
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        *,
        transform: Callable[[Image.Image], torch.Tensor] | None = None,
        classes: Sequence[str] | None = None,
        cache_bytes: int = 0,
    ) -> None:
        missing = [c for c in ("path", "label") if c not in frame.columns]
        if missing:
            raise ValueError(
                f"ManifestDataset: the frame has no column(s) {missing}; found {list(frame.columns)}"
            )
        if not pd.api.types.is_integer_dtype(frame.index.dtype) or not frame.index.is_unique:
            raise ValueError(
                "ManifestDataset: the frame's index must be unique integers (the row ids); found "
                f"{frame.index.dtype} index{'' if frame.index.is_unique else ' with repeats'}. Use a frame "
                "from read_manifest, or frame.reset_index(drop=True)"
            )
        labels = frame["label"].astype(str)
        self.classes: list[str] = sorted(set(labels)) if classes is None else [str(c) for c in classes]
        position = {c: i for i, c in enumerate(self.classes)}
        if len(position) != len(self.classes):
            raise ValueError("ManifestDataset: `classes` has repeated names; expected unique labels")
        unknown = sorted(set(labels) - set(position))
        if unknown:
            raise ValueError(
                f"ManifestDataset: label(s) {unknown[:10]} are not among the "
                f"{len(self.classes)} classes given"
            )
        self.paths: list[str] = [str(p) for p in frame["path"]]
        self.row_ids: list[int] = [int(r) for r in frame.index]
        self.labels: torch.Tensor = torch.tensor([position[x] for x in labels], dtype=torch.int64)
        self.transform = transform
        self._pixels: list[np.ndarray] | None = None
        if cache_bytes > 0:
            self._pixels = self._decode_all(cache_bytes)

    @property
    def cached(self) -> bool:
        """True when the decoded images are held in memory."""
        return self._pixels is not None

    def cached_tensors(self, mode: str = "RGB") -> list[torch.Tensor]:
        """The cached images as uint8 tensors (C, H, W), in PIL ``mode`` ``"RGB"`` (C = 3, views of the
        cache) or ``"L"`` (C = 1, new tensors, converted as ``Grayscale`` converts the RGB image the
        transform gets). For batched augmentation (:class:`~lookalike.data.BatchTrainTransform`)."""
        if self._pixels is None:
            raise RuntimeError("ManifestDataset.cached_tensors: the images are not cached (see `cached`)")
        if mode == "RGB":
            return [torch.from_numpy(p).permute(2, 0, 1) for p in self._pixels]
        if mode == "L":
            return [torch.from_numpy(np.array(Image.fromarray(p).convert("L")))[None] for p in self._pixels]
        raise ValueError(f"ManifestDataset.cached_tensors: mode={mode!r}; expected 'RGB' or 'L'")

    def _decode_all(self, budget: int) -> list[np.ndarray] | None:
        start = time.perf_counter()
        need = 0
        try:
            for path in self.paths:
                with Image.open(path) as image:  # reads the header only
                    need += image.width * image.height * 3
                if need > budget:
                    _log.warning(
                        "data.cache_images: %d images need more than the %.0f MB budget "
                        "(data.cache_images_mb); reading them from disk every epoch",
                        len(self.paths),
                        budget / 2**20,
                    )
                    return None
            pixels = [np.array(load_rgb(path)) for path in self.paths]  # writable: shared as tensors
        except Exception as exc:  # an unreadable file is reported by __getitem__ with its row
            _log.warning("data.cache_images: not caching, an image cannot be read (%s)", exc)
            return None
        _log.info(
            "data.cache_images: %d decoded images (%.1f MB) held in memory, decoded in %.1f s",
            len(pixels),
            need / 2**20,
            time.perf_counter() - start,
        )
        return pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        path, row = self.paths[i], self.row_ids[i]
        if self._pixels is not None:
            image = Image.fromarray(self._pixels[i])
        else:
            try:
                image = load_rgb(path)
            except Exception as exc:
                raise ImageDecodeError(
                    f"row {row}: cannot read image {path!r} ({type(exc).__name__}: {exc}); check it with "
                    "`lookalike manifest MANIFEST --out FILE --verify`"
                ) from exc
        tensor = _TO_TENSOR(image) if self.transform is None else self.transform(image)
        return tensor, int(self.labels[i]), row
