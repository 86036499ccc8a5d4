"""Image transforms (torchvision.transforms.v2): the reference recipe's resize, pad-and-crop,
flip and ImageNet normalisation, random erasing after it, and the views of each modality
(CAJ's channel augmentations, vireid.data.channel, after that).

The resize runs PIL's filter of ``data.resize_filter`` on the decoded image: ``bilinear``
(vireid's default), or ``lanczos``, the references' ``img.resize((144, 288), Image.ANTIALIAS)``
(PIL's old name of LANCZOS) of every training and test image (mangye16/Cross-Modal-Re-ID-baseline
``pre_process_sysu.py`` line 56, ``data_loader.py`` lines 52, 60 and 96 at commit e817a26; the same
in ``ICCV21_CAJ/data_loader.py`` and ZYK100/LLCM ``AGW/data_loader.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from torchvision.transforms import InterpolationMode, v2

from vireid.data.channel import CHANNEL_AUGMENTATIONS
from vireid.data.erasing import ReIDRandomErasing
from vireid.modality import Modality

if TYPE_CHECKING:
    from vireid.config import ExperimentConfig, TrainConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

ResizeFilter = Literal["bilinear", "lanczos"]
RESIZE_FILTERS: dict[str, InterpolationMode] = {
    "bilinear": InterpolationMode.BILINEAR,
    "lanczos": InterpolationMode.LANCZOS,
}
"""``data.resize_filter``'s values: the PIL filter each names (torchvision resizes a PIL image with PIL)."""


def _to_normalised_tensor() -> list[v2.Transform]:
    """PIL image -> (3, H, W) float32 in [0, 1] -> ImageNet mean/std, as a plain tensor."""
    return [
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        v2.ToPureTensor(),
    ]


def resize(height: int, width: int, resize_filter: ResizeFilter = "bilinear") -> v2.Resize:
    """A PIL image resized to (height, width) with ``resize_filter`` (left as it is when it has that size)."""
    return v2.Resize((height, width), interpolation=RESIZE_FILTERS[resize_filter])


def normalised_batch(images: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) uint8 images already at the size -> (B, 3, H, W) float32, with the very operations
    of ``_to_normalised_tensor`` (scaled by 1/255, less the mean, over the std), so that a batch of
    decoded images gives inference_transform's tensors to the bit."""
    mean = torch.as_tensor(IMAGENET_MEAN, dtype=torch.float32, device=images.device).view(-1, 1, 1)
    std = torch.as_tensor(IMAGENET_STD, dtype=torch.float32, device=images.device).view(-1, 1, 1)
    scaled = images.permute(0, 3, 1, 2).contiguous().to(torch.float32).mul_(1.0 / 255)
    return scaled.sub_(mean).div_(std)


def inference_transform(height: int, width: int, resize_filter: ResizeFilter = "bilinear") -> v2.Compose:
    """Resize to (height, width), to tensor, ImageNet mean/std."""
    return v2.Compose([resize(height, width, resize_filter), *_to_normalised_tensor()])


def train_transform(
    height: int, width: int, padding: int = 10, resize_filter: ResizeFilter = "bilinear", grayscale: float = 0.0
) -> v2.Compose:
    """Resize, pad ``padding`` pixels, with probability ``grayscale`` turn gray (PIL's luma, kept in
    three channels: DEEN's ``transforms.RandomGrayscale(p=0.5)`` after its Pad), random crop back,
    random horizontal flip, normalise."""
    return v2.Compose(
        [
            resize(height, width, resize_filter),
            v2.Pad(padding),
            *([v2.RandomGrayscale(grayscale)] if grayscale > 0 else []),
            v2.RandomCrop((height, width)),
            v2.RandomHorizontalFlip(),
            *_to_normalised_tensor(),
        ]
    )


def random_erasing(config: TrainConfig) -> v2.Transform:
    """The erasing of ``config`` (``train.random_erasing`` > 0), applied to the normalised tensor:
    the re-ID form over ``train.erasing_area`` filled with ``train.erasing_fill``, or torchvision's
    RandomErasing defaults."""
    if config.erasing == "torchvision":
        return v2.RandomErasing(p=config.random_erasing)
    return ReIDRandomErasing(config.random_erasing, area=tuple(config.erasing_area), fill=tuple(config.erasing_fill))


def modality_views(config: TrainConfig) -> dict[int, list[list[str]]]:
    """Each modality's views: per view, the names of its channel augmentations."""
    return {Modality.VISIBLE: config.visible_views, Modality.INFRARED: config.infrared_views}


def has_channel_views(config: TrainConfig) -> bool:
    """Whether any modality has more than one view, or a view with channel augmentations."""
    return any(views != [[]] for views in modality_views(config).values())


def training_views(config: ExperimentConfig) -> dict[int, tuple[v2.Compose, ...]]:
    """Per modality, the transform of each of its views: resize, pad, gray (``train.random_grayscale``),
    crop, flip, normalise,
    the erasing (``train.random_erasing`` > 0), then the view's channel augmentations. Each view
    draws its own crop, flip and erasing (CAJ's two visible views are two augmentations of one image)."""
    train, data = config.train, config.data
    views = {}
    for modality, names_per_view in modality_views(train).items():
        transforms = []
        for names in names_per_view:
            steps = [
                train_transform(data.height, data.width, train.padding, data.resize_filter, train.random_grayscale)
            ]
            steps += [random_erasing(train)] if train.random_erasing > 0 else []
            steps += [CHANNEL_AUGMENTATIONS[name]() for name in names]
            transforms.append(v2.Compose(steps))
        views[modality] = tuple(transforms)
    return views
