"""Image transforms of the reference recipe: resize, pad-and-crop, flip, ImageNet normalisation,
and random erasing after it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch
from torchvision import transforms as T

from vireid.data.erasing import ReIDRandomErasing

if TYPE_CHECKING:
    from vireid.config import TrainConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def inference_transform(height: int, width: int) -> T.Compose:
    """Resize to (height, width), to tensor, ImageNet mean/std."""
    return T.Compose([T.Resize((height, width)), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def train_transform(height: int, width: int, padding: int = 10) -> T.Compose:
    """Resize, pad ``padding`` pixels, random crop back, random horizontal flip, normalise."""
    return T.Compose(
        [
            T.Resize((height, width)),
            T.Pad(padding),
            T.RandomCrop((height, width)),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def random_erasing(config: TrainConfig) -> Callable[[torch.Tensor], torch.Tensor]:
    """The erasing of ``config`` (``train.random_erasing`` > 0), applied to the normalised tensor:
    the re-ID form filled with ``train.erasing_fill``, or torchvision's RandomErasing defaults."""
    if config.erasing == "torchvision":
        return T.RandomErasing(p=config.random_erasing)
    return ReIDRandomErasing(config.random_erasing, fill=tuple(config.erasing_fill))
