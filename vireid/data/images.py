"""Opening image files as 8-bit RGB, whatever their bit depth, with a clear error
naming the file when one cannot be read or is too small to show a person.

Thermal and infrared cameras often write 16-bit or floating-point images.
They are brought to 8 bits by their real range, never clipped: 16-bit
integers by 65535 → 255, 32-bit integers the same when their values fit in
16 bits (else by their own minimum and maximum), and floats as 0..1 → 0..255
when they lie in 0..1, else by their own minimum and maximum.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, UnidentifiedImageError

from vireid.errors import DatasetError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
"""What a file must end with (any case) to be taken for an image, in dataset folders and a user's own."""
IMAGE_FORMATS = ("JPEG", "PNG", "BMP", "TIFF", "WEBP", "PPM")
"""The formats Pillow may read a file as, whatever its name: those of IMAGE_SUFFIXES (PPM reads .pgm too).
Pillow knows 40 more by their content, some of which hand the file to other programs (EPS to Ghostscript)."""

MIN_HEIGHT, MIN_WIDTH = 8, 4
"""Smaller images cannot show a person: they are refused (skipped, where a user's own images are read)."""

_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
DECODER_VERSION = 2  # 2: deep images scaled by their range (1 clipped them); caches of decoded images name it


def open_image(path: str) -> Image.Image:
    """The image file at ``path``, opened (header read) by Pillow as one of IMAGE_FORMATS."""
    return Image.open(path, formats=IMAGE_FORMATS)


def load_image(path: str) -> Image.Image:
    """The image at ``path`` as 8-bit RGB (one-channel images get three equal channels)."""
    try:
        with open_image(path) as image:
            image.load()
            eight_bit = _to_eight_bit(image)
    except (FileNotFoundError, UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        raise unreadable(path, error) from error
    if too_small(eight_bit.height, eight_bit.width):
        raise DatasetError(f"{path}: {too_small(eight_bit.height, eight_bit.width)}")
    return eight_bit


def too_small(height: int, width: int) -> str | None:
    """Why an image of this size cannot show a person, or None when it can."""
    if height < MIN_HEIGHT or width < MIN_WIDTH:
        return f"an image of {height}x{width} pixels is too small to show a person (at least {MIN_HEIGHT}x{MIN_WIDTH})"
    return None


def unreadable(path: str, error: Exception) -> DatasetError:
    """The DatasetError of a file that cannot be opened as an image, naming it and why."""
    if isinstance(error, FileNotFoundError):
        return DatasetError(f"{path}: expected an image file, but it does not exist")
    return DatasetError(f"{path}: expected a readable image (jpg, png, bmp, ...), could not decode it ({error})")


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
    else:
        return image.convert("RGB")
    grey = np.round(values * 255.0).astype(np.uint8)
    return Image.fromarray(grey, mode="L").convert("RGB")


def _stretched(values: np.ndarray) -> np.ndarray:
    """``values`` mapped linearly from their minimum..maximum to 0..1 (all zero when constant)."""
    low, high = values.min(), values.max()
    return (values - low) / (high - low) if high > low else np.zeros_like(values)
