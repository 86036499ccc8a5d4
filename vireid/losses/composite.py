"""The training objective: L = L_global + L_local + alpha * L_msid + beta * L_cmp, every term logged."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from vireid.config import LossConfig
from vireid.losses.identity import identity_loss
from vireid.losses.mutual import cross_modality_loss, modality_specific_identity_loss
from vireid.losses.triplet import adaptive_weighted_triplet, weighted_regularized_triplet
from vireid.modality import ModalityLayout
from vireid.models.network import ModelOutput
from vireid.ranges import Range


@dataclass
class AGWLossConfig(LossConfig):
    """The ``loss:`` keys of vireid.losses.ReIDLoss."""

    label_smoothing: float = 0.0
    id_weight: float = 1.0  # global identity loss
    triplet_weight: float = 1.0  # global weighted regularised triplet
    part_id_weight: float = 1.0
    part_triplet_weight: float = 1.0
    alpha: float = 1.2  # weight of L_msid (modality-specific identity loss)
    beta: float = 0.4  # weight of L_cmp (cross-modality mutual prediction)
    cross_loss: Literal["hard", "soft", "ce", "both"] = "hard"  # see vireid.losses.mutual
    triplet: Literal["wrt", "adp"] = "wrt"  # AGW's weighted regularised triplet, or CAJ's adaptive form
    adp_alpha: float = 1.0  # adp: sharpness of the softmax weights of the distances
    adp_gamma: float = 1.0  # adp: scale of the squared difference
    adp_square: bool = True  # adp: the "enhanced squared difference" (False: softplus of the plain difference)

    RANGES: ClassVar[dict[str, Range]] = {
        "label_smoothing": Range(0, 1, highest_excluded=True),
        **{name: Range(0) for name in ("id_weight", "triplet_weight", "part_id_weight", "part_triplet_weight")},
        "alpha": Range(0),
        "beta": Range(0),
        "adp_alpha": Range(0),
        "adp_gamma": Range(0),
    }


class ReIDLoss(nn.Module):
    """Computes each loss term the model's outputs allow, and their weighted sum.

    Returns a dict: one entry per term (unweighted, for logging) and ``total``,
    the weighted sum to back-propagate. Terms: ``id`` and ``triplet`` (global
    branch), ``part_id`` (mean over parts) and ``part_triplet`` (on the
    concatenated parts before their BN) with FGFL, ``msid`` and ``cmp`` with CMIMPL. The triplet
    terms take ``loss.triplet``'s form: AGW's WRT, or CAJ's ADP.
    """

    def __init__(self, config: AGWLossConfig):
        super().__init__()
        self.config = config

    def weights(self) -> dict[str, float]:
        config = self.config
        return {
            "id": config.id_weight,
            "triplet": config.triplet_weight,
            "part_id": config.part_id_weight,
            "part_triplet": config.part_triplet_weight,
            "msid": config.alpha,
            "cmp": config.beta,
        }

    def triplet(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        config = self.config
        if config.triplet == "adp":
            return adaptive_weighted_triplet(features, labels, config.adp_alpha, config.adp_gamma, config.adp_square)
        return weighted_regularized_triplet(features, labels)

    def forward(
        self, output: ModelOutput, labels: torch.Tensor, modalities: torch.Tensor | ModalityLayout
    ) -> dict[str, torch.Tensor]:
        smoothing = self.config.label_smoothing
        terms = {
            "id": identity_loss(output.global_logits, labels, smoothing),
            "triplet": self.triplet(output.pooled, labels),
        }
        if output.part_logits is not None:
            parts = output.part_logits.shape[1]
            terms["part_id"] = (
                sum(identity_loss(output.part_logits[:, index], labels, smoothing) for index in range(parts)) / parts
            )
            terms["part_triplet"] = self.triplet(output.part_pooled.flatten(1), labels)
        if output.modality_logits is not None:
            terms["msid"] = modality_specific_identity_loss(output.modality_logits, labels, modalities, smoothing)
            terms["cmp"] = cross_modality_loss(
                output.modality_logits, labels, modalities, self.config.cross_loss, smoothing
            )
        weights = self.weights()
        terms["total"] = sum(weights[name] * value for name, value in terms.items())
        return terms
