"""A decoded-image cache: every image of a split decoded and resized once into one
uint8 array on disk, memory-mapped by the data loader's workers.

The file is named by a hash of the image paths, the size and the resize filter
(``data.resize_filter``), so a changed split, size or filter never reads a stale
cache; it is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from vireid.atomic import atomic_path
from vireid.data.images import DECODER_VERSION, load_image
from vireid.data.splits import Split
from vireid.data.transforms import ResizeFilter, resize
from vireid.progress import track


def cache_file(
    cache_dir: str | Path, split: Split, height: int, width: int, resize_filter: ResizeFilter = "bilinear"
) -> Path:
    # a new decoder or filter, a new cache
    key = "\n".join(split.paths) + f"\n{height}x{width} {resize_filter}\ndecoder {DECODER_VERSION}"
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    return Path(cache_dir) / f"images_{digest}_{height}x{width}_{resize_filter}.npy"


def decode_resized(path: str, height: int, width: int, resize_filter: ResizeFilter = "bilinear") -> np.ndarray:
    """(height, width, 3) uint8: the image resized by the transforms' own Resize."""
    return np.asarray(resize(height, width, resize_filter)(load_image(path)))


def image_cache(
    split: Split,
    height: int,
    width: int,
    cache_dir: str | Path,
    progress: bool = False,
    resize_filter: ResizeFilter = "bilinear",
) -> np.ndarray:
    """The (N, height, width, 3) uint8 images of ``split`` resized with ``resize_filter``,
    memory-mapped; built on first use."""
    path = cache_file(cache_dir, split, height, width, resize_filter)
    if not path.exists():
        with atomic_path(path) as temporary:
            images = np.lib.format.open_memmap(
                str(temporary), mode="w+", dtype=np.uint8, shape=(len(split), height, width, 3)
            )
            for row, image_path in enumerate(track(split.paths, "cache", "img", progress)):
                images[row] = decode_resized(image_path, height, width, resize_filter)
            images.flush()
            del images  # close the map before the rename
    return np.load(path, mmap_mode="r")
