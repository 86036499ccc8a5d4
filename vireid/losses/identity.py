"""Identity (classification) loss: cross-entropy, optionally label-smoothed."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def identity_loss(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy of (B, K) logits; 0 for an empty batch."""
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
