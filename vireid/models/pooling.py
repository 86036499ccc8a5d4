"""Generalised-mean (GeM) pooling with a fixed exponent, as AGW uses it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GeM(nn.Module):
    """(mean over positions of x^p + eps)^(1/p) per channel, in fp32; x is non-negative (after ReLU).

    ``output_rows`` > 1 pools horizontal stripes instead of the whole map:
    (B, C, H, W) -> (B, C) for one row, (B, C, rows) otherwise.
    """

    def __init__(self, p: float = 3.0, eps: float = 1e-12, output_rows: int = 1):
        super().__init__()
        self.p, self.eps, self.output_rows = p, eps, output_rows

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        # in fp32 whatever the autocast: in fp16 an all-zero channel's mean + eps underflows to 0,
        # and the gradient of its 1/p-th power is infinite (every fp16 step would be skipped)
        powered = feature_map.float().pow(self.p)
        if self.output_rows == 1:
            mean = powered.flatten(2).mean(dim=2)  # (B, C)
        else:
            mean = F.adaptive_avg_pool2d(powered, (self.output_rows, 1)).squeeze(3)  # (B, C, rows)
        return (mean + self.eps).pow(1.0 / self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}, eps={self.eps}, output_rows={self.output_rows}"
