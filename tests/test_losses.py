"""Losses against independent computations: WRT by a double loop, KL and EMA by hand,
the weighted sum, and where CMIMPL's gradients go."""

from __future__ import annotations

import math

import pytest
import torch

from vireid.losses import (
    ReIDLoss,
    cross_modality_loss,
    identity_loss,
    modality_specific_identity_loss,
    weighted_regularized_triplet,
)
from vireid.losses.composite import AGWLossConfig as LossConfig
from vireid.models.heads import ModalityClassifiers
from vireid.models.network import AGWModelConfig as ModelConfig
from vireid.models.network import build_model


def _wrt_double_loop(features: torch.Tensor, labels: list[int]) -> float:
    """AGW's WRT written out: softmax-weighted furthest positive and closest negative per anchor."""
    n = len(labels)
    distance = [
        [
            math.sqrt(max(sum((features[i][k] - features[j][k]) ** 2 for k in range(len(features[i]))), 1e-12))
            for j in range(n)
        ]
        for i in range(n)
    ]
    total = 0.0
    for i in range(n):
        positives = [distance[i][j] for j in range(n) if labels[j] == labels[i]]  # i itself included
        negatives = [distance[i][j] for j in range(n) if labels[j] != labels[i]]
        positive_max, negative_max = max(positives), max(-d for d in negatives)
        positive_weights = [math.exp(d - positive_max) for d in positives]
        negative_weights = [math.exp(-d - negative_max) for d in negatives]
        furthest = sum(w * d for w, d in zip(positive_weights, positives)) / (sum(positive_weights) + 1e-6)
        closest = sum(w * d for w, d in zip(negative_weights, negatives)) / (sum(negative_weights) + 1e-6)
        total += math.log1p(math.exp(furthest - closest))
    return total / n


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weighted_regularized_triplet_matches_a_double_loop(seed):
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(9, 5, generator=generator, dtype=torch.float64)
    labels = [0, 0, 1, 1, 1, 2, 2, 3, 3]
    expected = _wrt_double_loop(features.tolist(), labels)
    result = weighted_regularized_triplet(features, torch.tensor(labels))
    assert result.item() == pytest.approx(expected, rel=1e-5)


def test_weighted_regularized_triplet_rewards_separated_identities():
    labels = torch.tensor([0, 0, 1, 1])
    tight = torch.tensor([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
    mixed = torch.tensor([[0.0, 0.0], [5.0, 5.0], [0.1, 0.0], [5.1, 5.0]])
    assert weighted_regularized_triplet(tight, labels) < 0.01 < weighted_regularized_triplet(mixed, labels)


def test_identity_loss_with_label_smoothing():
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    log_probabilities = torch.log_softmax(logits, dim=1)[0]
    smoothed_target = torch.tensor([0.9 + 0.1 / 3, 0.1 / 3, 0.1 / 3])
    expected = -(smoothed_target * log_probabilities).sum()
    assert identity_loss(logits, torch.tensor([0]), 0.1).item() == pytest.approx(expected.item())
    assert identity_loss(logits[:0], torch.tensor([], dtype=torch.long)).item() == 0


def test_msid_is_one_cross_entropy_per_modality():
    own = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    labels, modalities = torch.tensor([0, 1, 0]), torch.tensor([0, 1, 1])
    visible = -math.log(math.exp(2) / (math.exp(2) + 1))
    infrared = (-math.log(math.e / (1 + math.e)) - math.log(0.5)) / 2
    result = modality_specific_identity_loss({"own": own}, labels, modalities)
    assert result.item() == pytest.approx(visible + infrared)


def test_soft_cross_loss_is_kl_of_own_from_slow_prediction():
    own = torch.tensor([[0.0, math.log(3.0)]])  # p = (1/4, 3/4)
    slow = torch.tensor([[0.0, 0.0]])  # p~ = (1/2, 1/2)
    expected = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    logits = {"own": own, "cross_ema": slow}
    assert cross_modality_loss(logits, torch.tensor([1]), torch.tensor([0]), "soft").item() == pytest.approx(expected)


def test_hard_and_ce_forms_score_the_other_modalitys_classifier():
    logits = {"cross_frozen": torch.tensor([[1.0, 0.0]]), "cross": torch.tensor([[1.0, 0.0]])}
    expected = -math.log(1 / (1 + math.e))  # label 1 under logits (1, 0)
    for form in ("hard", "ce"):
        assert cross_modality_loss(logits, torch.tensor([1]), torch.tensor([1]), form).item() == pytest.approx(expected)
    with pytest.raises(ValueError, match="cross_loss"):
        cross_modality_loss(logits, torch.tensor([1]), torch.tensor([1]), "kl")


def test_ema_update_by_hand():
    heads = ModalityClassifiers(features=2, num_classes=1, ema_rate=0.2)
    with torch.no_grad():
        heads.visible.weight.fill_(1.0)
        heads.visible_ema.fill_(0.0)
    heads.update_ema()
    torch.testing.assert_close(heads.visible_ema, torch.full((1, 2), 0.2))
    heads.update_ema()
    torch.testing.assert_close(heads.visible_ema, torch.full((1, 2), 0.36))  # 0.8 * 0.2 + 0.2 * 1


def _tiny(parts: int, cmimpl: bool):
    torch.manual_seed(0)
    return build_model(ModelConfig(backbone="resnet18", pretrained="none", parts=parts, part_dim=16, cmimpl=cmimpl), 4)


def _batch():
    torch.manual_seed(1)
    return torch.randn(8, 3, 64, 32), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]), torch.tensor([0, 1] * 4)


def test_alpha_beta_zero_equals_the_fgfl_model():
    full, fgfl = _tiny(4, True).train(), _tiny(4, False).train()
    fgfl.load_state_dict({k: v for k, v in full.state_dict().items() if not k.startswith("modality_classifiers")})
    images, labels, modalities = _batch()
    full_losses = ReIDLoss(LossConfig(alpha=0.0, beta=0.0))(full(images, modalities), labels, modalities)
    fgfl_losses = ReIDLoss(LossConfig())(fgfl(images, modalities), labels, modalities)
    assert full_losses["total"].item() == pytest.approx(fgfl_losses["total"].item(), rel=1e-6)
    assert full_losses["msid"] > 0 and full_losses["cmp"] > 0  # present but weighted out
    assert set(fgfl_losses) == {"id", "triplet", "part_id", "part_triplet", "total"}


def test_total_is_the_weighted_sum():
    model = _tiny(4, True).train()
    images, labels, modalities = _batch()
    config = LossConfig(
        id_weight=0.5, triplet_weight=2.0, part_id_weight=0.3, part_triplet_weight=0.7, alpha=1.2, beta=0.4
    )
    losses = ReIDLoss(config)(model(images, modalities), labels, modalities)
    expected = (
        0.5 * losses["id"]
        + 2.0 * losses["triplet"]
        + 0.3 * losses["part_id"]
        + 0.7 * losses["part_triplet"]
        + 1.2 * losses["msid"]
        + 0.4 * losses["cmp"]
    )
    assert losses["total"].item() == pytest.approx(expected.item(), rel=1e-6)


def _cmp_gradients(form: str) -> dict[str, bool]:
    model = _tiny(0, True).train()
    images, labels, modalities = _batch()
    losses = ReIDLoss(LossConfig(cross_loss=form))(model(images, modalities), labels, modalities)
    losses["cmp"].backward()
    heads = model.modality_classifiers
    return {
        "backbone": model.backbone.layer4[1].conv2.weight.grad is not None
        and model.backbone.layer4[1].conv2.weight.grad.abs().sum() > 0,
        "live": heads.visible.weight.grad is not None and heads.visible.weight.grad.abs().sum() > 0,
        "ema": heads.visible_ema.requires_grad or heads.visible_ema.grad is not None,
    }


def test_soft_cross_loss_reaches_backbone_and_live_classifiers_never_the_slow_copies():
    assert _cmp_gradients("soft") == {"backbone": True, "live": True, "ema": False}


def test_hard_cross_loss_moves_only_the_features():
    assert _cmp_gradients("hard") == {"backbone": True, "live": False, "ema": False}


def test_ce_cross_loss_also_trains_the_classifiers():
    assert _cmp_gradients("ce") == {"backbone": True, "live": True, "ema": False}


def test_triplet_distances_are_fp32_under_autocast():
    """bf16 matmuls of 2048-d features put the distances off by about 1; the loss computes them in fp32."""
    features = torch.randn(8, 2048, generator=torch.Generator().manual_seed(4)) + 3
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    exact = weighted_regularized_triplet(features, labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = weighted_regularized_triplet(features.bfloat16().float(), labels)
    rounded_input = weighted_regularized_triplet(features.bfloat16().float(), labels)
    assert under_autocast.dtype == torch.float32
    assert under_autocast.item() == pytest.approx(rounded_input.item(), rel=1e-6)  # only the input's rounding
    assert under_autocast.item() == pytest.approx(exact.item(), rel=1e-2)
