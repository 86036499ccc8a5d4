"""A hand-made image descriptor with no learning: the floor any trained model must beat.

Each image becomes a small grey-level picture and its gradient magnitudes, each
standardised per image so that the modalities' different intensity mappings
matter less. It carries body shape and pattern geometry, not colour.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
from PIL import Image

DESCRIPTOR_SIZE = (32, 16)  # (height, width) of the grey-level picture


def _standardise(values: np.ndarray) -> np.ndarray:
    return (values - values.mean()) / (values.std() + 1e-6)


def describe(image: Image.Image) -> np.ndarray:
    """(2 * 32 * 16,) float32 descriptor of one image."""
    height, width = DESCRIPTOR_SIZE
    full = Image.fromarray(np.asarray(image.convert("L"), dtype=np.float32), mode="F")
    grey = np.asarray(full.resize((width, height), Image.Resampling.BILINEAR))  # (32, 16), resized in float
    vertical, horizontal = np.gradient(grey)
    gradient = np.hypot(vertical, horizontal)
    return np.concatenate([_standardise(grey).ravel(), _standardise(gradient).ravel()]).astype(np.float32)


def describe_images(images: Iterable[Image.Image]) -> np.ndarray:
    """(N, D) descriptors of the images, in order (the caller opens them)."""
    return np.stack([describe(image) for image in images])
