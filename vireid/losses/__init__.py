"""Losses: identity cross-entropy, the weighted triplets (WRT, ADP), the batch-hard triplet,
cross-modality mutual prediction, and their weighted sum."""

from vireid.losses.composite import ReIDLoss
from vireid.losses.identity import identity_loss
from vireid.losses.mutual import cross_modality_loss, modality_specific_identity_loss
from vireid.losses.triplet import adaptive_weighted_triplet, batch_hard_triplet, weighted_regularized_triplet

__all__ = [
    "ReIDLoss",
    "adaptive_weighted_triplet",
    "batch_hard_triplet",
    "cross_modality_loss",
    "identity_loss",
    "modality_specific_identity_loss",
    "weighted_regularized_triplet",
]
