"""Random erasing in the re-identification form (Zhong et al., "Random Erasing Data
Augmentation", and the community code's ``RandomErasing``/``ChannelRandomErasing``).

It differs from torchvision's ``RandomErasing`` in three ways that change what a
model sees: the aspect ratio is drawn uniformly from [r, 1/r] (torchvision draws
its logarithm uniformly), the rectangle is filled with a fixed value per channel
(torchvision: zeros), and it tries up to 100 rectangles (torchvision: 10).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torchvision.transforms import v2

REFERENCE_FILL = (0.4914, 0.4822, 0.4465)
"""The reference code's fill, written into the already normalised tensor (its ``mean`` default)."""


class ReIDRandomErasing(v2.Transform):
    """With ``probability``, fill one rectangle of a (C, H, W) tensor with ``fill`` (one value per channel).

    The rectangle's area is uniform in [``area[0]``, ``area[1]``] of the image, its aspect
    ratio h/w uniform in [``min_aspect``, 1/``min_aspect``]; h = round(sqrt(area * aspect)),
    w = round(sqrt(area / aspect)). A draw is kept when h < H and w < W, and its top-left
    corner is uniform over the places it fits; after 100 draws that do not fit, the image
    is returned unchanged. A one-channel image is filled with ``fill[0]``. Random numbers
    come from torch's generator, which the data loader seeds per worker, so a run repeats
    exactly. A torchvision.transforms.v2 transform: the draws in ``make_params``, the fill in ``transform``.
    """

    def __init__(
        self,
        probability: float = 0.5,
        area: tuple[float, float] = (0.02, 0.4),
        min_aspect: float = 0.3,
        fill: tuple[float, ...] = REFERENCE_FILL,
        attempts: int = 100,
    ):
        super().__init__()
        self.probability = probability
        self.area = area
        self.min_aspect = min_aspect
        self.fill = fill
        self.attempts = attempts

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        """The rectangle ``box`` = (top, left, height, width), or None: no erasing."""
        if torch.rand(()).item() >= self.probability:
            return {"box": None}
        height, width = flat_inputs[0].shape[-2:]
        for _ in range(self.attempts):
            target_area = _uniform(*self.area) * height * width
            aspect = _uniform(self.min_aspect, 1 / self.min_aspect)
            erase_height = int(round(math.sqrt(target_area * aspect)))
            erase_width = int(round(math.sqrt(target_area / aspect)))
            if erase_height < height and erase_width < width:
                top = int(torch.randint(0, height - erase_height + 1, ()).item())
                left = int(torch.randint(0, width - erase_width + 1, ()).item())
                return {"box": (top, left, erase_height, erase_width)}
        return {"box": None}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if params["box"] is None:
            return inpt
        top, left, height, width = params["box"]
        fill = torch.tensor(self.fill if inpt.shape[0] == 3 else self.fill[:1], dtype=inpt.dtype)
        erased = inpt.clone()
        erased[:, top : top + height, left : left + width] = fill.view(-1, 1, 1)
        return erased

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(probability={self.probability}, area={self.area}, "
            f"aspect=({self.min_aspect}, {1 / self.min_aspect:.2f}), fill={self.fill}, attempts={self.attempts})"
        )


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * torch.rand(()).item()


__all__ = ["REFERENCE_FILL", "ReIDRandomErasing"]
