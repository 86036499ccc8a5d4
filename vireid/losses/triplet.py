"""AGW's weighted regularised triplet (WRT) loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def euclidean_distances(features: torch.Tensor) -> torch.Tensor:
    """(B, D) -> (B, B) Euclidean distances, as AGW computes them (squares clamped at 1e-12)."""
    squares = features.pow(2).sum(dim=1, keepdim=True)
    return (squares + squares.T - 2 * features @ features.T).clamp(min=1e-12).sqrt()


def _masked_softmax(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax of ``values`` over the entries where ``mask`` is 1, per row (AGW's softmax_weights)."""
    row_max = (values * mask).max(dim=1, keepdim=True).values
    exponentials = torch.exp(values - row_max) * mask
    return exponentials / (exponentials.sum(dim=1, keepdim=True) + 1e-6)


def weighted_regularized_triplet(features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """softplus(weighted positive distance - weighted negative distance), batch mean.

    For anchor i, positives (same label, i itself included) are weighted by
    softmax(d) and negatives by softmax(-d) over their sets; no margin.
    """
    distances = euclidean_distances(features.float())
    same = labels[:, None] == labels[None, :]
    positive, negative = same.float(), (~same).float()
    positive_distances, negative_distances = distances * positive, distances * negative
    furthest_positive = (positive_distances * _masked_softmax(positive_distances, positive)).sum(dim=1)
    closest_negative = (negative_distances * _masked_softmax(-negative_distances, negative)).sum(dim=1)
    return F.softplus(furthest_positive - closest_negative).mean()
