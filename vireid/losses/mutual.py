"""CMIMPL losses: modality-specific identity (L_msid) and cross-modality mutual prediction (L_cmp).

Cross forms (``cross_loss``):

- ``hard`` (default): each classifier predicts the identities of the OTHER
  modality's features with its weights detached,
  CE(sg(C_i)(f_v), y_v) + CE(sg(C_v)(f_i), y_i): only the features move towards
  the other modality's decision space.
- ``soft``: KL(p || p~), p = softmax of the own-modality classifier, p~ = softmax
  of the other modality's slow (EMA) copy, batch mean; gradient through p only.
- ``ce``: CE(C_i(f_v), y_v) + CE(C_v(f_i), y_i) with full gradient (the ablation
  in which the cross predictions also train the classifiers).
- ``both``: hard + soft.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vireid.losses.identity import identity_loss
from vireid.modality import Modality, ModalityLayout, modality_layout

CROSS_FORMS = ("hard", "soft", "ce", "both")


def _per_modality_identity(
    logits: torch.Tensor, labels: torch.Tensor, modalities: torch.Tensor | ModalityLayout, label_smoothing: float
) -> torch.Tensor:
    """CE over the visible rows + CE over the infrared rows (each a mean over its rows)."""
    layout = modality_layout(modalities)
    visible, infrared = int(Modality.VISIBLE), int(Modality.INFRARED)
    return identity_loss(layout.take(logits, visible), layout.take(labels, visible), label_smoothing) + identity_loss(
        layout.take(logits, infrared), layout.take(labels, infrared), label_smoothing
    )


def modality_specific_identity_loss(
    modality_logits: dict[str, torch.Tensor],
    labels: torch.Tensor,
    modalities: torch.Tensor | ModalityLayout,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """L_msid = CE(C_v(f_v), y_v) + CE(C_i(f_i), y_i)."""
    return _per_modality_identity(modality_logits["own"], labels, modalities, label_smoothing)


def mutual_prediction_divergence(own_logits: torch.Tensor, slow_cross_logits: torch.Tensor) -> torch.Tensor:
    """KL(p || p~) summed over classes, averaged over the batch; p~ carries no gradient."""
    own_probabilities = F.softmax(own_logits.float(), dim=1)
    slow_log_probabilities = F.log_softmax(slow_cross_logits.detach().float(), dim=1)
    return F.kl_div(slow_log_probabilities, own_probabilities, reduction="batchmean")


def cross_modality_loss(
    modality_logits: dict[str, torch.Tensor],
    labels: torch.Tensor,
    modalities: torch.Tensor | ModalityLayout,
    form: str = "hard",
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """L_cmp in one of the forms of CROSS_FORMS."""
    if form not in CROSS_FORMS:
        raise ValueError(f"loss.cross_loss must be one of {', '.join(CROSS_FORMS)}, got {form!r}")
    terms = []
    if form in ("hard", "both"):
        terms.append(_per_modality_identity(modality_logits["cross_frozen"], labels, modalities, label_smoothing))
    if form in ("soft", "both"):
        terms.append(mutual_prediction_divergence(modality_logits["own"], modality_logits["cross_ema"]))
    if form == "ce":
        terms.append(_per_modality_identity(modality_logits["cross"], labels, modalities, label_smoothing))
    return sum(terms[1:], terms[0])
