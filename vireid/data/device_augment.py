"""The training augmentations on a whole batch, on whatever device it lives on.

Fed by the decoded-image cache (uint8 images already at the training size), the
loader only gathers bytes; padding, random crop, horizontal flip and ImageNet
normalisation then run as a few tensor operations on the GPU (or the CPU),
drawn from a generator that the trainer re-seeds every epoch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vireid.data.transforms import IMAGENET_MEAN, IMAGENET_STD


class BatchAugment:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float: zero-pad ``padding``, crop back to
    (H, W) at a random offset, flip half the images, normalise."""

    def __init__(self, padding: int, generator: torch.Generator):
        self.padding = padding
        self.generator = generator

    def offsets_and_flips(self, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per image: crop row offset, crop column offset (0..2*padding), flip flag; drawn on the CPU."""
        top = torch.randint(0, 2 * self.padding + 1, (batch,), generator=self.generator)
        left = torch.randint(0, 2 * self.padding + 1, (batch,), generator=self.generator)
        flip = torch.rand(batch, generator=self.generator) < 0.5
        return top, left, flip

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        batch, height, width, _ = images.shape
        device = images.device
        top, left, flip = (values.to(device) for values in self.offsets_and_flips(batch))
        padded = F.pad(images.permute(0, 3, 1, 2).float().div_(255), (self.padding,) * 4)  # (B, 3, H+2p, W+2p)
        rows = top[:, None] + torch.arange(height, device=device)  # (B, H)
        columns = left[:, None] + torch.arange(width, device=device)  # (B, W)
        columns = torch.where(flip[:, None], columns.flip(1), columns)
        batch_index = torch.arange(batch, device=device)[:, None, None]
        cropped = padded.permute(0, 2, 3, 1)[batch_index, rows[:, :, None], columns[:, None, :]]  # (B, H, W, 3)
        mean = torch.tensor(IMAGENET_MEAN, device=device)
        std = torch.tensor(IMAGENET_STD, device=device)
        return ((cropped - mean) / std).permute(0, 3, 1, 2).contiguous()
