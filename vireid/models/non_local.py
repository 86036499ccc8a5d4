"""The non-local block of AGW (embedded dot product, residual, zero-initialised output BN)."""

from __future__ import annotations

import torch
from torch import nn


class NonLocalBlock(nn.Module):
    """y = x + BN(W · (theta(x)^T phi(x) / N) g(x)).

    ``inter_channels``: the reference AGW code computes ``reduc_ratio // reduc_ratio``,
    i.e. ONE inter channel, whatever the input width; that is the default
    here for fidelity. Pass ``in_channels // 2`` for the usual non-local block.
    """

    def __init__(self, in_channels: int, inter_channels: int = 1):
        super().__init__()
        self.inter_channels = inter_channels
        self.g = nn.Conv2d(in_channels, inter_channels, 1)
        self.theta = nn.Conv2d(in_channels, inter_channels, 1)
        self.phi = nn.Conv2d(in_channels, inter_channels, 1)
        self.project = nn.Sequential(nn.Conv2d(inter_channels, in_channels, 1), nn.BatchNorm2d(in_channels))
        nn.init.zeros_(self.project[1].weight)  # the block starts as the identity
        nn.init.zeros_(self.project[1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        values = self.g(x).flatten(2).transpose(1, 2)  # (B, N, I)
        queries = self.theta(x).flatten(2).transpose(1, 2)  # (B, N, I)
        keys = self.phi(x).flatten(2)  # (B, I, N)
        affinity = torch.matmul(queries, keys) / keys.shape[-1]  # (B, N, N)
        attended = torch.matmul(affinity, values).transpose(1, 2).reshape(batch, self.inter_channels, height, width)
        return x + self.project(attended)
