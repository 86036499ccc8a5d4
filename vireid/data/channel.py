"""The channel augmentations of CAJ (Ye et al., "Channel Augmented Joint Learning for
Visible-Infrared Recognition", ICCV 2021; ``ICCV21_CAJ`` in mangye16/Cross-Modal-Re-ID-baseline),
as torchvision.transforms.v2 transforms of the normalised (3, H, W) image.

==================  ===============================================  ========================
name (config)       what it does                                     reference
==================  ===============================================  ========================
``channel_exchange``  one of R, G, B (1/3 each) copied into all three  ``ChannelExchange(gray=2)``
``adaptive_gray``     R, G or B copied into all three (1/4 each); else  ``ChannelAdapGray(0.5)``
                      grayscale with ``probability``, else unchanged
==================  ===============================================  ========================

The reference's ``ChannelExchange`` has a grayscale branch that ``gray=2``, the only
value it is used with, never reaches (``randint(0, 2)``); it therefore always copies one
channel. Both run after Normalize (and after the erasing), so the grayscale mixes
normalised values, as the reference does. Draws come from torch's generator, which the
data loader seeds per worker, so a run repeats exactly.
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision.transforms import v2

GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)
"""The reference's grayscale: ITU-R 601 luma weights of R, G, B."""


def replicate_channel(image: torch.Tensor, channel: int) -> torch.Tensor:
    """(3, H, W) -> (3, H, W): every channel a copy of ``channel``."""
    return image[channel : channel + 1].expand_as(image).clone()


def grayscale(image: torch.Tensor) -> torch.Tensor:
    """(3, H, W) -> (3, H, W): every channel 0.2989 R + 0.5870 G + 0.1140 B."""
    weights = torch.tensor(GRAY_WEIGHTS, dtype=image.dtype, device=image.device)
    return (image * weights[:, None, None]).sum(0, keepdim=True).expand_as(image).clone()


class _ChannelTransform(v2.Transform):
    """One draw per call (``make_params``), then the image's channels rewritten (``transform``)."""

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if params["channel"] is not None:
            return replicate_channel(inpt, params["channel"])
        return grayscale(inpt) if params["gray"] else inpt


class RandomChannelReplication(_ChannelTransform):
    """CAJ's channel exchange of the second visible view: one of the three channels, drawn
    uniformly, copied into all three."""

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"channel": int(torch.randint(0, 3, ()).item()), "gray": False}


class AdaptiveChannelGray(_ChannelTransform):
    """CAJ's channel augmentation of infrared images: a draw of 0..3; 0, 1, 2 copy that
    channel into all three; 3 turns the image gray with ``probability``, else keeps it."""

    def __init__(self, probability: float = 0.5):
        super().__init__()
        self.probability = probability

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        draw = int(torch.randint(0, 4, ()).item())
        if draw < 3:
            return {"channel": draw, "gray": False}
        return {"channel": None, "gray": torch.rand(()).item() < self.probability}


CHANNEL_AUGMENTATIONS = {"channel_exchange": RandomChannelReplication, "adaptive_gray": AdaptiveChannelGray}
"""The channel augmentations a view may list (``train.visible_views``, ``train.infrared_views``), by name."""

__all__ = ["CHANNEL_AUGMENTATIONS", "GRAY_WEIGHTS", "AdaptiveChannelGray", "RandomChannelReplication", "grayscale"]
