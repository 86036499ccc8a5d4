"""Batch augmentation on the device equals torchvision's per-image pad, crop, flip, normalise."""

from __future__ import annotations

import torch
import torchvision.transforms.functional as TF
from PIL import Image

from vireid.data.device_augment import BatchAugment
from vireid.data.transforms import IMAGENET_MEAN, IMAGENET_STD


def test_batch_augment_matches_torchvision_image_by_image():
    images = torch.randint(0, 256, (16, 8, 4, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    augmented = BatchAugment(2, torch.Generator().manual_seed(3))(images)
    top, left, flip = BatchAugment(2, torch.Generator().manual_seed(3)).offsets_and_flips(16)
    assert augmented.shape == (16, 3, 8, 4) and augmented.dtype == torch.float32
    assert 0 < int(flip.sum()) < 16 and len(set(top.tolist())) > 1  # the draws do vary
    for index in range(16):
        expected = TF.to_tensor(TF.pad(Image.fromarray(images[index].numpy()), 2))
        expected = expected[:, top[index] : top[index] + 8, left[index] : left[index] + 4]
        if flip[index]:
            expected = expected.flip(2)
        torch.testing.assert_close(augmented[index], TF.normalize(expected, IMAGENET_MEAN, IMAGENET_STD))


def test_same_seed_same_batch():
    images = torch.randint(0, 256, (4, 8, 4, 3), dtype=torch.uint8)
    first = BatchAugment(2, torch.Generator().manual_seed(1))(images)
    second = BatchAugment(2, torch.Generator().manual_seed(1))(images)
    assert torch.equal(first, second)
