"""Uploaded images: size limits, decoding with PIL's decompression-bomb guard, thumbnails.

Every failure is an :class:`UploadError` carrying the HTTP status and a message that names the file,
what was wrong and what would be right; nothing here can take the server down.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["UploadError", "decode_image", "render_thumbnail"]

_FORMATS_HINT = "a JPEG, PNG, WebP, GIF, BMP or TIFF image"


class UploadError(ValueError):
    """A request's image that cannot be used: ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _mb(n_bytes: int | float) -> str:
    return f"{n_bytes / (1024 * 1024):.1f} MB"


def decode_image(data: bytes, *, name: str, max_bytes: int, max_pixels: int) -> Image.Image:
    """Decode ``data`` into an RGB image (EXIF orientation applied).

    413 when the file is over ``max_bytes`` or the picture over ``max_pixels`` (checked from the
    header, before any pixel is decoded), 422 for an empty or truncated file, 415 for a file that is
    not an image PIL can read.
    """
    if not data:
        raise UploadError(422, f"{name}: the file is empty; send {_FORMATS_HINT}")
    if len(data) > max_bytes:
        raise UploadError(
            413, f"{name}: the file is {_mb(len(data))}, over the upload limit of {_mb(max_bytes)}"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise UploadError(
                    413,
                    f"{name}: the image is {width} x {height} = {width * height} pixels, over the limit of "
                    f"{max_pixels} pixels (decompression-bomb guard); send a smaller image",
                )
            image.load()
            image = ImageOps.exif_transpose(image)
            return image.convert("RGB")
    except UploadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise UploadError(
            413, f"{name}: refused as a decompression bomb ({err}); send a smaller image"
        ) from None
    except UnidentifiedImageError:
        raise UploadError(415, f"{name}: not an image that can be read; send {_FORMATS_HINT}") from None
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
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()
