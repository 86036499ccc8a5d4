"""Heads on the backbone's feature map: the global BNNeck head, the FGFL part
heads, and CMIMPL's modality-specific classifiers with their slow copies."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vireid.modality import Modality
from vireid.models.pooling import GeM


def identity_classifier(in_features: int, num_classes: int) -> nn.Linear:
    """A bias-free linear classifier with weights N(0, 0.001), as AGW initialises it."""
    classifier = nn.Linear(in_features, num_classes, bias=False)
    nn.init.normal_(classifier.weight, 0.0, 0.001)
    return classifier


def bn_neck(features: int) -> nn.BatchNorm1d:
    """BatchNorm1d with weight N(1, 0.01) and a frozen zero bias (AGW's BNNeck)."""
    bn = nn.BatchNorm1d(features)
    nn.init.normal_(bn.weight, 1.0, 0.01)
    nn.init.zeros_(bn.bias)
    bn.bias.requires_grad_(False)
    return bn


class GlobalHead(nn.Module):
    """GeM -> BNNeck -> shared identity classifier."""

    def __init__(self, channels: int, num_classes: int, gem_p: float = 3.0):
        super().__init__()
        self.pool = GeM(gem_p)
        self.bottleneck = bn_neck(channels)
        self.classifier = identity_classifier(channels, num_classes)

    def forward(self, feature_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, H, W) -> pooled (B, C) before the BNNeck, feature (B, C) after it."""
        pooled = self.pool(feature_map)
        return pooled, self.bottleneck(pooled)


class PartHead(nn.Module):
    """FGFL: P horizontal stripes, each GeM-pooled, reduced to ``part_dim``,
    batch-normalised and classified (a BNNeck per part)."""

    def __init__(self, channels: int, num_classes: int, parts: int = 6, part_dim: int = 512, gem_p: float = 3.0):
        super().__init__()
        self.pool = GeM(gem_p, output_rows=parts)
        self.reductions = nn.ModuleList(nn.Linear(channels, part_dim, bias=False) for _ in range(parts))
        self.bottlenecks = nn.ModuleList(nn.BatchNorm1d(part_dim) for _ in range(parts))
        self.classifiers = nn.ModuleList(identity_classifier(part_dim, num_classes) for _ in range(parts))

    def forward(self, feature_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, H, W) -> reduced part features before and after their BN, each (B, P, part_dim)."""
        stripes = self.pool(feature_map)  # (B, C, P)
        reduced = torch.stack([reduce(stripes[:, :, index]) for index, reduce in enumerate(self.reductions)], dim=1)
        normalised = torch.stack([bn(reduced[:, index]) for index, bn in enumerate(self.bottlenecks)], dim=1)
        return reduced, normalised

    def logits(self, part_features: torch.Tensor) -> torch.Tensor:
        """(B, P, part_dim) after BN -> (B, P, K)."""
        return torch.stack(
            [classify(part_features[:, index]) for index, classify in enumerate(self.classifiers)], dim=1
        )


class ModalityClassifiers(nn.Module):
    """CMIMPL: a visible and an infrared identity classifier, each with a slow
    copy (an exponential moving average of its weights, kept as a buffer: no
    gradient ever reaches it)."""

    def __init__(self, features: int, num_classes: int, ema_rate: float = 0.2):
        super().__init__()
        self.visible = identity_classifier(features, num_classes)
        self.infrared = identity_classifier(features, num_classes)
        self.register_buffer("visible_ema", self.visible.weight.detach().clone())
        self.register_buffer("infrared_ema", self.infrared.weight.detach().clone())
        self.ema_rate = ema_rate

    @torch.no_grad()
    def update_ema(self) -> None:
        """slow <- (1 - rate) * slow + rate * live."""
        self.visible_ema.mul_(1 - self.ema_rate).add_(self.visible.weight, alpha=self.ema_rate)
        self.infrared_ema.mul_(1 - self.ema_rate).add_(self.infrared.weight, alpha=self.ema_rate)

    def forward(self, features: torch.Tensor, modalities: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits (B, K) of each row by its own modality's classifier and by the other's.

        ``own``: C_v for visible rows, C_i for infrared rows. ``cross``: the other
        modality's live classifier (full gradient); ``cross_frozen``: the same
        values with the classifier weights detached (gradient to features only);
        ``cross_ema``: the other modality's slow copy, computed without gradient.
        """
        is_visible = (modalities == int(Modality.VISIBLE))[:, None]
        visible_weight, infrared_weight = self.visible.weight, self.infrared.weight
        own = torch.where(is_visible, F.linear(features, visible_weight), F.linear(features, infrared_weight))
        cross = torch.where(is_visible, F.linear(features, infrared_weight), F.linear(features, visible_weight))
        cross_frozen = torch.where(
            is_visible, F.linear(features, infrared_weight.detach()), F.linear(features, visible_weight.detach())
        )
        with torch.no_grad():
            cross_ema = torch.where(
                is_visible, F.linear(features, self.infrared_ema), F.linear(features, self.visible_ema)
            )
        return {"own": own, "cross": cross, "cross_frozen": cross_frozen, "cross_ema": cross_ema}
