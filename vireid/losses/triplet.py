"""Triplet losses: AGW's weighted regularised triplet (WRT), CAJ's adaptive weighted form (ADP) and
the batch-hard triplet (DEEN, the strong baseline)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def euclidean_distances(features: torch.Tensor, others: torch.Tensor | None = None) -> torch.Tensor:
    """(B, D) [and (M, D)] -> (B, B) [(B, M)] Euclidean distances between the rows (of the two sets),
    as AGW's and DEEN's ``pdist_torch`` compute them (squares clamped at 1e-12), in fp32 whatever the
    autocast: in bf16 the distances of 2048-d features near 10 err by about 1, and in fp16 squared
    norms past 65504 overflow."""
    with torch.autocast(features.device.type, enabled=False):
        features = features.float()
        squares = features.pow(2).sum(dim=1, keepdim=True)
        if others is None:
            return (squares + squares.T - 2 * features @ features.T).clamp(min=1e-12).sqrt()
        others = others.float()
        other_squares = others.pow(2).sum(dim=1, keepdim=True)
        return (squares + other_squares.T - 2 * features @ others.T).clamp(min=1e-12).sqrt()


def batch_hard_triplet(features: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """The batch-hard triplet (Hermans et al. 2017; DEEN's ``OriTripletLoss``, the strong baseline's
    ``TripletLoss``): each anchor's farthest positive and nearest negative, hinge at ``margin``, batch mean."""
    distances = euclidean_distances(features)  # (B, B)
    same = labels[:, None] == labels[None, :]
    hardest_positive = distances.masked_fill(~same, float("-inf")).amax(dim=1)
    hardest_negative = distances.masked_fill(same, float("inf")).amin(dim=1)
    return F.relu(hardest_positive - hardest_negative + margin).mean()


def _masked_softmax(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax of ``values`` over the entries where ``mask`` is 1, per row (AGW's softmax_weights)."""
    row_max = (values * mask).max(dim=1, keepdim=True).values
    exponentials = torch.exp(values - row_max) * mask
    return exponentials / (exponentials.sum(dim=1, keepdim=True) + 1e-6)


def _weighted_extremes(
    features: torch.Tensor, labels: torch.Tensor, alpha: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,) softmax-weighted positive distance (weights softmax(alpha d) over the positives, the
    anchor itself included) and softmax-weighted negative distance (softmax(-alpha d) over the negatives)."""
    distances = euclidean_distances(features)
    same = labels[:, None] == labels[None, :]
    positive, negative = same.float(), (~same).float()
    positive_distances, negative_distances = distances * positive, distances * negative
    furthest_positive = (positive_distances * _masked_softmax(alpha * positive_distances, positive)).sum(dim=1)
    closest_negative = (negative_distances * _masked_softmax(-alpha * negative_distances, negative)).sum(dim=1)
    return furthest_positive, closest_negative


def weighted_regularized_triplet(features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """softplus(weighted positive distance - weighted negative distance), batch mean.

    For anchor i, positives (same label, i itself included) are weighted by
    softmax(d) and negatives by softmax(-d) over their sets; no margin.
    """
    furthest_positive, closest_negative = _weighted_extremes(features, labels)
    return F.softplus(furthest_positive - closest_negative).mean()


def adaptive_weighted_triplet(
    features: torch.Tensor, labels: torch.Tensor, alpha: float = 1.0, gamma: float = 1.0, square: bool = True
) -> torch.Tensor:
    """CAJ's triplet (``TripletLoss_ADP``): the weighted distances with softmax(alpha d) weights, then
    with ``square`` the "enhanced squared difference": for d = positive - negative,
    softplus(gamma d^2) where d > 0 (a violated triplet) and softplus(-gamma d^2) where not,
    gamma d^2 clamped at 88; without it softplus(-gamma (negative - positive)). Batch mean.
    alpha = gamma = 1 without ``square`` is the weighted regularised triplet."""
    furthest_positive, closest_negative = _weighted_extremes(features, labels, alpha)
    difference = furthest_positive - closest_negative
    if not square:
        return F.softplus(gamma * difference).mean()
    squared = (gamma * difference.pow(2)).clamp(max=88)
    return F.softplus(torch.where(difference > 0, squared, -squared)).mean()
