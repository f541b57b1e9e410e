"""Uploaded images: size limits, decoding with PIL's decompression-bomb guard, thumbnails.

Every failure is an :class:`UploadError` carrying the HTTP status and a message that names the file,
what was wrong and what would be right; nothing here can take the server down.
"""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageOps, UnidentifiedImageError

from lookalike.data.dataset import to_rgb

if TYPE_CHECKING:
    from lookalike.models.backbones import Preprocessing

__all__ = ["UploadError", "decode_image", "probe_image", "render_thumbnail", "resized_pixels"]

_FORMATS_HINT = "a JPEG, PNG, WebP, GIF, BMP or TIFF image"


class UploadError(ValueError):
    """A request's image that cannot be used: ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _mb(n_bytes: int | float) -> str:
    return f"{n_bytes / (1024 * 1024):.1f} MB"


def resized_pixels(preprocessing: Preprocessing, width: int, height: int) -> int:
    """Pixels of the picture :func:`lookalike.data.eval_transform` resizes a ``width`` x ``height``
    image to before it crops: the short side is scaled to ``floor(image_size / crop_pct)`` (crop mode
    ``center``) and the long side with it, so a thin strip grows huge; ``squash`` and ``border`` give at
    most a square of that side."""
    scale = math.floor(preprocessing.image_size / preprocessing.crop_pct)
    if preprocessing.crop_mode != "center":
        return scale * scale
    short, long = sorted((max(width, 1), max(height, 1)))
    return scale * int(scale * long / short)


def _opened(data: bytes, *, name: str, max_bytes: int, max_pixels: int) -> Image.Image:
    """The image opened lazily (header only) and checked: bytes, width x height, format."""
    if not data:
        raise UploadError(422, f"{name}: the file is empty; send {_FORMATS_HINT}")
    if len(data) > max_bytes:
        raise UploadError(
            413,
            f"{name}: the file is {_mb(len(data))}, over the upload limit of {_mb(max_bytes)} "
            "(max_upload_mb)",
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise UploadError(
            413, f"{name}: refused as a decompression bomb ({err}); send a smaller image"
        ) from None
    except UnidentifiedImageError:
        raise UploadError(415, f"{name}: not an image that can be read; send {_FORMATS_HINT}") from None
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        raise UploadError(422, f"{name}: the image data is damaged ({err}); send {_FORMATS_HINT}") from None
    width, height = image.size
    if width * height > max_pixels:
        raise UploadError(
            413,
            f"{name}: the image is {width} x {height} = {width * height} pixels, over the limit of "
            f"{max_pixels} pixels (max_image_pixels, the decompression-bomb guard); send a smaller image",
        )
    return image


def probe_image(
    data: bytes,
    *,
    name: str,
    max_bytes: int,
    max_pixels: int,
    max_resized_pixels: int,
    preprocessing: Preprocessing | None,
) -> int:
    """Check an upload from its header alone (nothing is decoded); returns its width x height.

    Beyond :func:`decode_image`'s checks: 413 when the model's resize (``preprocessing``) would make
    it over ``max_resized_pixels``, e.g. a 1 x 200,000 strip that the resize would scale up to
    224 x 44,800,000.
    """
    image = _opened(data, name=name, max_bytes=max_bytes, max_pixels=max_pixels)
    width, height = image.size
    if preprocessing is not None:
        resized = resized_pixels(preprocessing, width, height)
        if resized > max_resized_pixels:
            raise UploadError(
                413,
                f"{name}: the image is {width} x {height}; the model's resize would make it {resized} "
                "pixels, "
                f"over the limit of {max_resized_pixels} (max_resized_pixels); crop it nearer to a square",
            )
    return width * height


def decode_image(data: bytes, *, name: str, max_bytes: int, max_pixels: int) -> Image.Image:
    """Decode ``data`` into a PIL image in its own mode (EXIF orientation applied in place).

    It is converted to RGB where it is embedded, by :func:`lookalike.data.to_rgb`, the way image files
    are read (transparency on white): an RGB copy made here would only hold 4 bytes a pixel longer.
    413 when the file is over ``max_bytes`` or the picture over ``max_pixels`` (checked from the
    header, before any pixel is decoded), 422 for an empty or truncated file, 415 for a file that is
    not an image PIL can read.
    """
    image = _opened(data, name=name, max_bytes=max_bytes, max_pixels=max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
            ImageOps.exif_transpose(image, in_place=True)
            return image
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise UploadError(
            413, f"{name}: refused as a decompression bomb ({err}); send a smaller image"
        ) from None
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        # truncated or corrupt data after a valid header
        raise UploadError(422, f"{name}: the image data is damaged ({err}); send {_FORMATS_HINT}") from None


def render_thumbnail(path: Path, *, size: int, max_pixels: int) -> bytes:
    """A PNG at most ``size`` pixels on its longest side, re-encoded from the image at ``path``.

    Only decoded pixels leave this function, never the file's bytes: a path that is not an image
    yields an UploadError, not its content.
    """
    data = path.read_bytes()
    image = decode_image(data, name=path.name, max_bytes=max(len(data), 1), max_pixels=max_pixels)
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    to_rgb(image).save(out, format="PNG", optimize=False)
    return out.getvalue()
