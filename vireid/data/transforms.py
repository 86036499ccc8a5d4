"""Image transforms of the reference recipe: resize, pad-and-crop, flip, ImageNet normalisation."""

from __future__ import annotations

from torchvision import transforms as T

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
