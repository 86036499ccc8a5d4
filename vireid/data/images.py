"""Opening image files, with a clear error naming the file when one cannot be read."""

from __future__ import annotations

from PIL import Image, UnidentifiedImageError

from vireid.errors import DatasetError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
"""What a file must end with (any case) to be taken for an image, in dataset folders and a user's own."""


def load_image(path: str) -> Image.Image:
    """The image at ``path`` as 8-bit RGB (infrared images get three equal channels)."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except FileNotFoundError as error:
        raise DatasetError(f"{path}: expected an image file, but it does not exist") from error
    except (UnidentifiedImageError, OSError) as error:
        raise DatasetError(
            f"{path}: expected a readable image (jpg, png, bmp, ...), could not decode it ({error})"
        ) from error
