"""Opening image files as 8-bit RGB, whatever their bit depth or pixel format, with a
clear error naming the file when one cannot be read or is too small to show a person.

Every image is turned the way its EXIF orientation says (as a photo viewer shows it),
then made RGB: grey, 1-bit and grey-with-alpha images get three equal channels, palette
images their palette's colours, CMYK Pillow's conversion, and an alpha channel is
dropped (the colours stored under it are kept, as ``convert("RGB")`` does). What a file
holds decides how it is read, not its suffix (a PNG named ``.jpg`` is read as a PNG).

Thermal and infrared cameras often write 16-bit or floating-point images.
They are brought to 8 bits by their real range, never clipped: 16-bit
integers by 65535 → 255, 32-bit integers the same when their values fit in
16 bits (else by their own minimum and maximum), and floats as 0..1 → 0..255
when they lie in 0..1, else by their own minimum and maximum.
"""

from __future__ import annotations

import os
import struct

import numpy as np
from PIL import ExifTags, Image, ImageOps

from vireid.errors import DatasetError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
"""What a file must end with (any case) to be taken for an image, in dataset folders and a user's own."""
IMAGE_FORMATS = ("JPEG", "PNG", "BMP", "TIFF", "WEBP", "PPM")
"""The formats Pillow may read a file as, whatever its name: those of IMAGE_SUFFIXES (PPM reads .pgm too).
Pillow knows 40 more by their content, some of which hand the file to other programs (EPS to Ghostscript)."""

MIN_HEIGHT, MIN_WIDTH = 8, 4
"""Smaller images cannot show a person: they are refused (skipped, where a user's own images are read)."""

_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
DECODER_VERSION = 3  # 3: EXIF orientation applied; 2: deep images scaled by their range (1 clipped them)
"""Caches of decoded images name it, so a changed decoder never reads a stale cache."""

DECODE_ERRORS = (
    OSError,  # missing, a folder, not an image (UnidentifiedImageError), truncated
    ValueError,
    SyntaxError,
    EOFError,
    struct.error,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
    MemoryError,
    Image.DecompressionBombError,
)
"""What Pillow raises, depending on the format's plugin, on a file it cannot decode."""

_TURNED_ORIENTATIONS = (5, 6, 7, 8)
"""EXIF orientations that swap an image's width and height (a quarter turn, with or without a mirror)."""


def open_image(path: str) -> Image.Image:
    """The image file at ``path``, opened (header read) by Pillow as one of IMAGE_FORMATS."""
    return Image.open(path, formats=IMAGE_FORMATS)


def load_image(path: str) -> Image.Image:
    """The image at ``path`` as 8-bit RGB, turned as its EXIF orientation says (module docstring)."""
    try:
        with open_image(path) as image:
            image.load()
            ImageOps.exif_transpose(image, in_place=True)
            eight_bit = _to_eight_bit(image)
    except DECODE_ERRORS as error:
        raise unreadable(path, error) from error
    if too_small(eight_bit.height, eight_bit.width):
        raise DatasetError(f"{path}: {too_small(eight_bit.height, eight_bit.width)}")
    return eight_bit


def too_small(height: int, width: int) -> str | None:
    """Why an image of this size cannot show a person, or None when it can."""
    if height < MIN_HEIGHT or width < MIN_WIDTH:
        return f"an image of {height}x{width} pixels is too small to show a person (at least {MIN_HEIGHT}x{MIN_WIDTH})"
    return None


def displayed_size(image: Image.Image) -> tuple[int, int]:
    """(height, width) of an opened image as shown, its EXIF orientation applied (read from the header only)."""
    width, height = image.size
    if image.getexif().get(ExifTags.Base.Orientation, 1) in _TURNED_ORIENTATIONS:
        return width, height
    return height, width


def unreadable(path: str, error: Exception) -> DatasetError:
    """The DatasetError of a file that cannot be opened as an image, naming it and why."""
    if isinstance(error, FileNotFoundError):
        return DatasetError(f"{path}: expected an image file, but it does not exist")
    if os.path.isdir(path):
        return DatasetError(f"{path}: expected an image file, but it is a folder")
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        return DatasetError(f"{path}: expected an image file, but it is empty (0 bytes)")
    reason = " ".join(str(error).split()) or type(error).__name__  # one line, never an empty pair of brackets
    return DatasetError(f"{path}: expected a readable image (jpg, png, bmp, ...), could not decode it ({reason})")


def _to_eight_bit(image: Image.Image) -> Image.Image:
    """RGB with 8 bits per channel, deeper images scaled by their real range (module docstring)."""
    if image.mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image, dtype=np.float64) / 65535.0
    elif image.mode == "I":
        values = np.asarray(image, dtype=np.float64)
        values = values / 65535.0 if values.min() >= 0 and values.max() <= 65535 else _stretched(values)
    elif image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if not np.isfinite(values).all():
            raise ValueError("a floating-point image holding NaN or infinite values")
        values = values if values.min() >= 0 and values.max() <= 1 else _stretched(values)
    elif image.mode in ("P", "PA"):  # by way of RGBA: Pillow warns of a palette's transparency otherwise
        return image.convert("RGBA").convert("RGB")
    else:
        return image.convert("RGB")
    grey = np.round(values * 255.0).astype(np.uint8)
    return Image.fromarray(grey, mode="L").convert("RGB")


def _stretched(values: np.ndarray) -> np.ndarray:
    """``values`` mapped linearly from their minimum..maximum to 0..1 (all zero when constant)."""
    low, high = values.min(), values.max()
    return (values - low) / (high - low) if high > low else np.zeros_like(values)
