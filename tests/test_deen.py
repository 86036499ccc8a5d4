"""DEEN: its parameters against an independent count, its shapes, the MFA and DEE arithmetic and
the CPM and ORT losses on hand-computed cases, the test feature, the configs against the
reference's train.py, and runs through the commands (train, test, extract, export, search, resume)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from command_walk import extract_export_search, reference_learning_rate
from PIL import Image

from vireid.cli import main
from vireid.config import find_config
from vireid.data.transforms import train_transform
from vireid.engine.checkpoint import load_checkpoint
from vireid.engine.extract import batch_features
from vireid.engine.trainer import build_run, learning_rate_factor, train
from vireid.errors import ConfigError
from vireid.method import method_of, parameter_counts
from vireid.methods.deen import (
    ChannelNonLocal,
    DEENLoss,
    DEENLossConfig,
    DEENOutput,
    DiverseEmbeddingExpansion,
    PositionNonLocal,
    center_guided_pair_mining,
    orthogonal_loss,
)
from vireid.modality import Modality
from vireid.recipe import build_loss, build_model, load_config
from vireid.retrieval.export import FeatureModel

SMALL = ["model.method=deen", "model.backbone=resnet18", "model.pretrained=none", "data.height=64", "data.width=32"]


def _small(*overrides: str, classes: int = 7):
    torch.manual_seed(0)
    config = load_config(None, [*SMALL, *overrides])
    return config, build_model(config, classes, load_weights=False)


# --- the network -----------------------------------------------------------------------------------


def _mfa_parameters(high: int, low: int) -> int:
    """CNL (g, theta, phi, W conv at ``low`` channels, W's BatchNorm) + PNL (the same at low / 2)."""
    reduced = low // 2
    cnl = (low * low + low) + (high * low + low) + (low * low + low) + (low * high + high) + 2 * high
    pnl = (low * reduced + reduced) + (high * reduced + reduced) + (low * reduced + reduced)
    return cnl + pnl + (reduced * high + high) + 2 * high


def _dee_parameters(channels: int) -> int:
    """Two branches: three bias-free 3x3 convolutions to channels / 4, a 1x1 convolution back."""
    quarter = channels // 4
    return 2 * (3 * channels * quarter * 9 + quarter * channels + channels)


def _resnet50_parameters(without: tuple[str, ...] = ()) -> int:
    resnet = torchvision.models.resnet50(weights=None)
    return sum(p.numel() for name, p in resnet.named_parameters() if name.split(".")[0] not in ("fc", *without))


SECOND_STEM = 64 * 3 * 7 * 7 + 2 * 64  # the infrared modality's conv1 and bn1


def test_resnet50_deen_has_exactly_the_parameters_its_forward_uses():
    config = load_config(None, ["model.method=deen", "model.pretrained=none"])
    counts = parameter_counts(build_model(config, 395, load_weights=False))
    mfa = _mfa_parameters(256, 64) + _mfa_parameters(512, 256) + _mfa_parameters(1024, 512)
    expected = _resnet50_parameters() + SECOND_STEM + mfa + _dee_parameters(1024) + 2 * 2048 + 2048 * 395
    assert expected == 42_037_792  # the README's model table
    assert counts == {"total": expected, "trainable": expected - 2048, "frozen": 2048}  # the BNNeck's shift


def test_regdb_network_puts_dee_after_layer2_and_ends_at_layer3():
    config = load_config(None, ["model.method=deen", "model.pretrained=none", "model.dee_after=layer2"])
    model = build_model(config, 206, load_weights=False)
    mfa = _mfa_parameters(256, 64) + _mfa_parameters(512, 256)
    expected = _resnet50_parameters(without=("layer4",)) + SECOND_STEM + mfa + _dee_parameters(512)
    assert parameter_counts(model)["total"] == expected + 2 * 1024 + 1024 * 206 == 13_094_176
    assert model.backbone.stage_names == ("layer1", "layer2", "layer3") and not hasattr(model.backbone, "layer4")
    assert len(model.mfa) == 2 and model.backbone.out_channels == 1024


@pytest.mark.parametrize("dee_after, channels", [("layer3", 512), ("layer2", 256)])
def test_training_gives_three_rows_per_image_and_the_test_six_blocks(dee_after, channels):
    config, model = _small(f"model.dee_after={dee_after}")
    images, modalities = torch.randn(4, 3, 64, 32), torch.tensor([0, 1, 1, 0])
    output = model.train()(images, modalities)
    assert output.pooled.shape == output.feature.shape == (12, channels)
    assert output.logits.shape == (12, 7)
    evaluation = model.eval()(images, modalities)
    assert evaluation.logits is None and evaluation.pooled.shape == (12, channels)
    method = method_of(config)
    assert method.embed(evaluation, "all", config.test).shape == (4, 6 * channels)
    assert method.embed(evaluation, "weighted", config.test).shape == (4, 6 * channels)
    assert method.embed(evaluation, "input", config.test).shape == (4, channels)
    with pytest.raises(ValueError, match="training takes each image's modality as a"):
        model.train()(images, 0)


def test_every_parameter_is_used():
    config, model = _small()
    model.train()
    with torch.no_grad():  # the non-local output BNs start at zero, which zeroes their inner gradients
        for mfa in model.mfa:
            mfa.CNL.W[1].weight.fill_(0.5)
            mfa.PNL.W[1].weight.fill_(0.5)
    labels, modalities = torch.tensor([0, 0, 1, 1, 0, 0, 1, 1]), torch.tensor([0, 1] * 4)
    output = model(torch.randn(8, 3, 64, 32), modalities)
    build_loss(config, 7, model)(output, labels, modalities)["total"].backward()
    unused = [name for name, p in model.named_parameters() if p.requires_grad and not p.grad.abs().sum() > 0]
    assert unused == []


def test_bf16_autocast_gives_finite_losses_near_fp32s():
    config, model = _small()
    loss = build_loss(config, 7, model)
    images, labels, modalities = (
        torch.randn(8, 3, 64, 32),
        torch.tensor([0, 0, 1, 1] * 2),
        torch.tensor([0] * 4 + [1] * 4),
    )
    terms = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(1)  # the same DEE dropout
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            terms[precision] = {
                name: value.item()
                for name, value in loss(model.train()(images, modalities), labels, modalities).items()
            }
    assert all(np.isfinite(value) for value in terms["bf16"].values())
    assert terms["bf16"]["total"] == pytest.approx(terms["fp32"]["total"], rel=0.05)


def test_dee_branches_average_three_dilations_then_project():
    """A single pixel of 3 in a 5x5 map: dilation 1 reaches the 3x3 around the centre, 2 every other
    pixel, 3 the centre alone; each branch averages the three and projects (weights of ones, x1 and x2)."""
    dee = DiverseEmbeddingExpansion(4, dropout=0.0)
    with torch.no_grad():
        for branch, scale in zip(dee.branches, (1.0, 2.0)):
            for convolution in branch["dilated"]:
                convolution.weight.fill_(1.0)
            branch["project"].weight.fill_(scale)
            branch["project"].bias.zero_()
    pixel = torch.zeros(1, 4, 5, 5)
    pixel[0, 0, 2, 2] = 3.0
    expected = torch.zeros(5, 5)
    expected[1:4, 1:4] += 1.0
    expected[::2, ::2] += 1.0
    expected[2, 2] += 1.0
    output = dee(pixel)
    assert output.shape == (3, 4, 5, 5)
    assert torch.equal(output[0], pixel[0])
    assert torch.equal(output[1], expected.expand(4, 5, 5))
    assert torch.equal(output[2], 2 * expected.expand(4, 5, 5))


def _set_weights(block, g: list[list[float]], phi: list[list[float]]) -> None:
    """1x1 convolutions of the given (out, in) weights for g and phi, of ones for theta and W's
    convolution, no biases, and W's BatchNorm the identity (eval mode, eps 0)."""
    block.eval()
    block.W[1].eps = 0.0
    with torch.no_grad():
        block.g.weight.copy_(torch.tensor(g)[..., None, None])
        block.phi.weight.copy_(torch.tensor(phi)[..., None, None])
        block.theta.weight.fill_(1.0)
        block.W[0].weight.fill_(1.0)
        block.W[1].weight.fill_(1.0)
        for convolution in (block.g, block.theta, block.phi, block.W[0]):
            convolution.bias.zero_()


def test_channel_non_local_divides_the_channel_attention_by_the_channel_count():
    """Low level: channels [1, 2] and [0, 1] over two positions; high level: [3, 4]; g, phi identities,
    theta copies the high map into both channels, W sums them. Energy rows [11, 4], attention / 2,
    y = [5.5, 13] per channel, W: [11, 26], plus the high map: [14, 30]."""
    block = ChannelNonLocal(high=1, low=2, stride=1)
    _set_weights(block, g=[[1.0, 0.0], [0.0, 1.0]], phi=[[1.0, 0.0], [0.0, 1.0]])
    with torch.no_grad():
        low = torch.tensor([[[[1.0, 2.0]], [[0.0, 1.0]]]])
        high = torch.tensor([[[[3.0, 4.0]]]])
        assert block(high, low).flatten().tolist() == [14.0, 30.0]


def test_position_non_local_views_its_reduced_maps_as_the_reference_does():
    """g takes the low map's first channel [5, 6], phi its second [3, 4], theta the high map [1, 2]. The
    reference views each (1, 1, 2) map as (1, 2, 1), so one 'position' holds both: energy 1*3 + 2*4 = 11,
    y = 11 x [5, 6], plus the high map: [56, 68] (attention over the two real positions would give
    [20.5, 41])."""
    block = PositionNonLocal(high=1, low=2)
    _set_weights(block, g=[[1.0, 0.0]], phi=[[0.0, 1.0]])
    with torch.no_grad():
        low = torch.tensor([[[[5.0, 6.0]], [[3.0, 4.0]]]])
        high = torch.tensor([[[[1.0, 2.0]]]])
        assert block(high, low).flatten().tolist() == [56.0, 68.0]


def test_non_local_blocks_start_as_the_identity_and_keep_the_high_levels_size():
    _, model = _small()
    model.eval()
    low, high = torch.randn(2, 128, 8, 4), torch.randn(2, 256, 4, 2)  # resnet18's layer2 -> layer3
    torch.testing.assert_close(model.mfa[2](high, low), high, rtol=0, atol=0)


# --- the losses ------------------------------------------------------------------------------------

# One-dimensional features of two identities, one image per modality: the input's visible centres
# v = [0, 2] and infrared i = [3, 6], a branch's v' = [1, 4] and i' = [5, 3]. By hand, margin 0.2:
# visible: d(i, v') = [2, 2] against d(v, v') = [1, 2]: (1.2 + 0.2) / 2 = 0.7; against v''s nearest
# other (3): 0; against v's nearest other (2): 0.2; 0.7 + (0 + 0.2) / 2 = 0.8.
# infrared: d(v, i') = [5, 1] against d(i, i') = [2, 3]: 3.2 / 2 = 1.6; against i''s nearest other
# (2): 3.2 / 2 = 1.6; against i's (3): 2.2 / 2 = 1.1; 1.6 + (1.6 + 1.1) / 2 = 2.95. CPM: (0.8 + 2.95) / 2.
LABELS, MODALITIES = torch.tensor([0, 1, 0, 1]), torch.tensor([0, 0, 1, 1])
INPUT, BRANCH = torch.tensor([[0.0], [2.0], [3.0], [6.0]]), torch.tensor([[1.0], [4.0], [5.0], [3.0]])
CPM_BY_HAND = 1.875


def test_center_guided_pair_mining_against_a_hand_computed_case():
    assert center_guided_pair_mining(INPUT, BRANCH, LABELS, MODALITIES, margin=0.2).item() == CPM_BY_HAND


def test_cpm_takes_centres_by_label_in_any_order_and_skips_identities_of_one_modality():
    """Each centre as the mean of two images (one above, one below it), the rows shuffled, and a third
    identity seen by the visible cameras only."""
    spread = torch.tensor([[-1.0], [1.0]])
    features = torch.cat([row + spread for row in INPUT] + [torch.tensor([[9.0]])])
    expanded = torch.cat([row + spread for row in BRANCH] + [torch.tensor([[9.0]])])
    labels, modalities = LABELS.repeat_interleave(2).tolist() + [2], MODALITIES.repeat_interleave(2).tolist() + [0]
    order = torch.tensor([8, 3, 0, 6, 1, 5, 2, 7, 4])
    loss = center_guided_pair_mining(
        features[order], expanded[order], torch.tensor(labels)[order], torch.tensor(modalities)[order], margin=0.2
    )
    assert loss.item() == CPM_BY_HAND


def _cpm_identity_by_identity(features, expanded, labels, modalities, margin):
    """CPM written as loss.py reads: a loop over the identities seen in both modalities, each one's
    centres the means of its rows, the hinges averaged over those identities."""
    identities = [p for p in sorted(set(labels.tolist())) if {0, 1} <= set(modalities[labels == p].tolist())]

    def centre(rows, p, modality):
        return rows[(labels == p) & (modalities == modality)].mean(dim=0)

    def hinge(values):
        return torch.stack([torch.clamp(value + margin, min=0) for value in values]).mean()

    def direction(target_modality, own_modality):
        terms = {"fixed": [], "branch": [], "input": []}
        for p in identities:
            positive = (centre(features, p, target_modality) - centre(expanded, p, own_modality)).norm()
            fixed = (centre(features, p, own_modality) - centre(expanded, p, own_modality)).norm().detach()
            nearest = {
                name: min(
                    (centre(rows, p, own_modality) - centre(rows, q, own_modality)).norm() for q in identities if q != p
                )
                for name, rows in (("branch", expanded), ("input", features))
            }
            terms["fixed"].append(positive - fixed)
            terms["branch"].append(positive - nearest["branch"])
            terms["input"].append(positive - nearest["input"])
        return hinge(terms["fixed"]) + (hinge(terms["branch"]) + hinge(terms["input"])) * 0.5

    return (direction(1, 0) + direction(0, 1)) / 2


def test_cpm_equals_an_identity_by_identity_loop_with_its_gradients():
    """Random features of 6 identities x 3 images per modality in a shuffled order, and one identity
    seen by the infrared cameras only: the fixed-size form gives the loop's loss and gradients."""
    generator = torch.Generator().manual_seed(5)
    labels = torch.cat([torch.arange(6).repeat_interleave(6), torch.tensor([6, 6])])
    modalities = torch.cat([torch.tensor([0, 0, 0, 1, 1, 1]).repeat(6), torch.tensor([1, 1])])
    order = torch.randperm(len(labels), generator=generator)
    labels, modalities = labels[order], modalities[order]
    features = torch.randn(len(labels), 8, generator=generator, requires_grad=True)
    expanded = torch.randn(len(labels), 8, generator=generator, requires_grad=True)
    loss = center_guided_pair_mining(features, expanded, labels, modalities, margin=0.3)
    expected = _cpm_identity_by_identity(features, expanded, labels, modalities, margin=0.3)
    assert expected.item() > 0.5  # hinges active: the comparison is not of zeros
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=0)
    gradients = torch.autograd.grad(loss, (features, expanded))
    expected_gradients = torch.autograd.grad(expected, (features, expanded))
    for gradient, expected_gradient in zip(gradients, expected_gradients):
        assert expected_gradient.abs().sum() > 0
        torch.testing.assert_close(gradient, expected_gradient, rtol=1e-4, atol=1e-6)


def test_cpm_holds_the_same_modality_distance_fixed():
    """The gradient on the branch's rows (v'_0, v'_1, i'_0, i'_1), by hand: each active hinge's
    distance moves by +-1 per unit, x 1/2 (the mean over two identities), x 1/2 for the two
    nearest-other terms, x 1/2 (the mean of the two directions). v'_0, v'_1: the hinges against
    d(v, v') and against v's nearest other are active, -(1/2 + 1/4) / 2 each; i'_0: against d(i, i')
    and i's nearest other, +(1/2 + 1/4) / 2, its term against i''s nearest other moving both of its
    distances alike; i'_1: that term's nearest other, +1/4 / 2. Were d(v, v') and d(i, i') not held,
    v'_0 would have -(1/2 + 1/2 + 1/4) / 2."""
    branch = BRANCH.clone().requires_grad_()
    center_guided_pair_mining(INPUT, branch, LABELS, MODALITIES, margin=0.2).backward()
    assert branch.grad.flatten().tolist() == [-0.375, -0.375, 0.375, 0.125]


def test_orthogonal_loss_is_the_branches_dot_products_over_three_times_the_batch():
    pooled = torch.tensor([[9.0, 9.0], [9.0, 9.0], [1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]])
    assert orthogonal_loss(pooled).item() == pytest.approx((1 * 5 + 2 * 6 + 3 * 7 + 4 * 8) / 6)


def test_the_loss_weighs_cpm_of_both_branches_and_ort_as_train_py():
    pooled = torch.cat([INPUT, BRANCH, BRANCH])  # both branches the hand-computed one
    logits = torch.zeros(12, 2)
    output = DEENOutput(pooled=pooled, feature=pooled, logits=logits)
    terms = DEENLoss(DEENLossConfig())(output, LABELS, MODALITIES)
    assert set(terms) == {"id", "triplet", "cpm", "ort", "total"}
    assert terms["id"].item() == pytest.approx(np.log(2))
    assert terms["cpm"].item() == 2 * CPM_BY_HAND
    assert terms["ort"].item() == pytest.approx((1 + 16 + 25 + 9) / 12)
    # the triplet over the 12 rows (labels repeated thrice), by hand: rows of identity 0 are
    # {0, 3, 1, 5, 1, 5}, of identity 1 {2, 6, 4, 3, 4, 3}; each row's farthest positive minus nearest negative
    rows = pooled.flatten().tolist()
    labels = LABELS.repeat(3).tolist()
    hinges = []
    for value, label in zip(rows, labels):
        positive = max(abs(value - other) for other, same in zip(rows, labels) if same == label)
        negative = min(abs(value - other) for other, same in zip(rows, labels) if same != label)
        hinges.append(max(0.0, positive - negative + 0.3))
    assert terms["triplet"].item() == pytest.approx(sum(hinges) / 12)
    weighted = terms["id"] + terms["triplet"] + 0.8 * terms["cpm"] + 0.01 * terms["ort"]
    assert terms["total"].item() == pytest.approx(weighted.item())


# --- the test feature ------------------------------------------------------------------------------


def _blocks(model, images, modalities) -> list[torch.Tensor]:
    """The six L2-normalised blocks of test.py: per row block (input, branch 1, branch 2), pooled then after BN."""
    output = model.eval()(images, modalities)
    return [
        F.normalize(block, dim=1)
        for pooled, feature in zip(output.pooled.chunk(3), output.feature.chunk(3))
        for block in (pooled, feature)
    ]


def test_the_test_feature_adds_the_mirror_images_blocks_without_renormalising():
    config, model = _small()
    assert (config.test.feature, config.test.flip, config.test.distance) == ("all", True, "dot")
    images, modalities = torch.randn(3, 3, 64, 32), torch.tensor([0, 1, 0])
    with torch.no_grad():
        features = batch_features(model, images, modalities, config)
        expected = torch.cat(_blocks(model, images, modalities), 1) + torch.cat(
            _blocks(model, images.flip(3), modalities), 1
        )
    torch.testing.assert_close(features, expected)
    assert (features.norm(dim=1) > 3).all()  # two sums of six unit blocks, not one unit vector


def test_dot_products_of_the_features_sum_the_blocks_cosines_and_weighted_weighs_them():
    config, model = _small("test.flip=false")
    first, second = torch.randn(2, 3, 64, 32), torch.randn(2, 3, 64, 32)
    modalities = torch.tensor([0, 1])
    with torch.no_grad():
        cosines = [
            (a * b).sum(1) for a, b in zip(_blocks(model, first, modalities), _blocks(model, second, 1 - modalities))
        ]
        scores = {}
        for name in ("all", "weighted"):
            weighted = load_config(None, [*SMALL, "test.flip=false", f"test.feature={name}"])
            scores[name] = (
                batch_features(model, first, modalities, weighted)
                * batch_features(model, second, 1 - modalities, weighted)
            ).sum(1)
    torch.testing.assert_close(scores["all"], sum(cosines))
    torch.testing.assert_close(scores["weighted"], 0.1 * sum(cosines[0::2]) + 0.9 * sum(cosines[1::2]))
    assert config.test.distance == "dot"


# --- weights and recipe ----------------------------------------------------------------------------


def test_a_torchvision_file_initialises_the_stems_and_the_three_stages_of_the_regdb_network(tmp_path):
    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    config = load_config(None, [*SMALL, "model.dee_after=layer2", f"model.pretrained={tmp_path / 'resnet18.pth'}"])
    model = build_model(config, 7)
    for stem in model.backbone.stems:
        torch.testing.assert_close(stem.conv1.weight, reference.conv1.weight, rtol=0, atol=0)
    torch.testing.assert_close(model.backbone.layer3[1].conv2.weight, reference.layer3[1].conv2.weight, rtol=0, atol=0)


@pytest.mark.parametrize("dataset", ["sysu", "regdb", "llcm"])
def test_deen_configs_follow_the_references_train_py(dataset):
    config = load_config(f"{dataset}_deen")
    data, train_config, test, loss = config.data, config.train, config.test, config.loss
    assert (config.model.method, config.model.backbone, config.model.last_stride) == ("deen", "resnet50", 1)
    assert (data.dataset, data.height, data.width, data.resize_filter) == (dataset, 384, 144, "lanczos")
    assert (train_config.optimizer, train_config.momentum, train_config.weight_decay) == ("sgd", 0.9, 5e-4)
    assert (train_config.identities_per_batch, train_config.instances_per_modality) == (6, 4)
    assert train_config.sampler == "independent"
    assert (train_config.padding, train_config.random_grayscale) == (10, 0.5)
    assert (train_config.random_erasing, train_config.erasing) == (0.5, "reid")
    assert train_config.erasing_area == ([0.2, 0.8] if dataset == "sysu" else [0.02, 0.4])
    assert train_config.erasing_fill == [0.485, 0.456, 0.406]
    assert train_config.visible_views == train_config.infrared_views == [[]]  # one transform for both modalities
    assert (loss.triplet_margin, loss.cpm_margin, loss.cpm_weight, loss.ort_weight) == (0.3, 0.2, 0.8, 0.01)
    assert (train_config.eval_every, train_config.eval_offset, train_config.eval_last) == (1, 1, False)
    assert (train_config.eval_flip, train_config.select_on) == (False, "test-rank1")
    assert train_config.eval_protocol == {"sysu": "sysu-all", "regdb": "regdb-v2t", "llcm": "llcm-ir2vis"}[dataset]
    assert (test.feature, test.flip, test.distance) == ("all", True, "dot")
    assert train_config.epochs == 151
    if dataset == "regdb":
        assert "test.py's RegDB branch" in find_config("regdb_deen").read_text()  # the stem routing, said
    for epoch in range(151):  # train.py's adjust_learning_rate (lines 237-252): its `epoch >= 120` branch
        # comes after `epoch >= 80` and is never reached
        factor = learning_rate_factor(epoch, train_config)
        reference = reference_learning_rate(epoch, last_step=80)
        assert train_config.lr * factor == pytest.approx(reference, rel=1e-12), epoch
        assert train_config.backbone_lr * factor == pytest.approx(0.1 * reference, rel=1e-12), epoch


def test_random_grayscale_turns_about_half_the_images_gray_in_three_equal_channels():
    torch.manual_seed(0)
    colours = np.zeros((64, 32, 3), dtype=np.uint8)
    colours[..., 0], colours[..., 1], colours[..., 2] = 200, 100, 30

    def gray_share(grayscale: float, draws: int) -> float:
        transform = train_transform(64, 32, padding=0, grayscale=grayscale)
        images = [transform(Image.fromarray(colours)) for _ in range(draws)]  # normalised: undo it to compare
        return np.mean([torch.allclose(i[0] * 0.229 + 0.485, i[1] * 0.224 + 0.456, atol=1e-5) for i in images])

    assert 0.4 < gray_share(0.5, 400) < 0.6
    assert gray_share(0.0, 20) == 0.0


def test_the_device_augmentation_refuses_deens_gray_images_naming_the_key(sysu_root, tmp_path):
    overrides = [f"data.root={sysu_root}", *SMALL[1:], "train.augment_on=device", f"train.cache_dir={tmp_path / 'c'}"]
    overrides += ["train.random_erasing=0", "train.workers=0"]
    config = load_config("sysu_deen", overrides)
    assert config.train.random_grayscale == 0.5
    with pytest.raises(ConfigError, match=r"train.random_grayscale=0 and one plain view"):
        build_run(config, tmp_path / "run", None, "cpu", progress=False)
    assert not (tmp_path / "run").exists()


# --- through the commands --------------------------------------------------------------------------

SHORT = ["train.epochs=1", "train.steps_per_epoch=2", "train.eval_every=0", "train.workers=0", "train.log_every=1"]
COMMAND_SETTINGS = [*SMALL[1:], *SHORT]


def _settings(root: Path, *overrides: str) -> list[str]:
    values = (f"data.root={root}", *COMMAND_SETTINGS, *overrides)
    return [argument for value in values for argument in ("--set", value)]


@pytest.fixture(scope="module")
def deen_run(sysu_root, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("deen") / "run"
    assert main(["train", "sysu_deen", *_settings(sysu_root), "--out", str(folder), "--quiet"]) == 0
    return folder


def test_a_run_logs_deens_terms_and_tests_by_dot_products(deen_run):
    steps = [json.loads(line) for line in (deen_run / "metrics.jsonl").read_text().splitlines()]
    terms = {key for record in steps if record["kind"] == "step" for key in record} - {"kind", "epoch", "step", "lr"}
    assert terms == {"id", "triplet", "cpm", "ort", "total"}
    assert load_checkpoint(deen_run / "last.pt").method == "deen"
    assert main(["test", str(deen_run / "last.pt"), "--quiet"]) == 0
    results = json.loads((deen_run / "results.json").read_text())
    assert [result["protocol"] for result in results] == ["sysu-all", "sysu-indoor"]
    assert all(result["distance"] == "dot" for result in results)
    assert all(0 < result["mean"]["mAP"] <= 1 for result in results)


def test_the_exported_feature_keeps_a_dynamic_batch():
    """The three sources of DEE's rows are split by a view: torch.chunk would fix the batch to the example's."""
    config, model = _small()
    feature_model = FeatureModel(model, Modality.INFRARED, config)
    program = torch.export.export(
        feature_model, (torch.randn(2, 3, 64, 32),), dynamic_shapes={"images": {0: torch.export.Dim("batch")}}
    )
    images = torch.randn(3, 3, 64, 32)
    with torch.no_grad():
        torch.testing.assert_close(program.module()(images), batch_features(model, images, 1, config))


@pytest.mark.slow  # ONNX export of both modalities, 25 s: make test-slow (and CI) runs it
def test_extract_export_and_search_use_the_six_block_feature(deen_run, sysu_root, tmp_path, capsys):
    walk = extract_export_search(deen_run / "last.pt", sysu_root, tmp_path, capsys)
    assert walk.gallery_features.shape == (12, 6 * 512)
    assert np.all(np.linalg.norm(walk.gallery_features, axis=1) > 3)  # summed blocks, scored by dot products
    assert len(walk.export_differences) == 2 and max(walk.export_differences) < 1e-3  # ONNX Runtime agrees
    assert walk.onnx_width == 6 * 512
    assert len(walk.hits) == 2 and all(len(query["hits"]) == 3 for query in walk.hits)
    scores = [hit["score"] for hit in walk.hits[0]["hits"]]
    assert scores == sorted(scores, reverse=True) and scores[0] > 1  # a dot product of summed blocks


@pytest.mark.slow  # long: make test-slow (and CI) runs it
def test_a_resumed_deen_run_continues_exactly(sysu_root, tmp_path):
    """DEE's dropout and the random grayscale draw from the saved generators."""

    def config(epochs: int):
        overrides = [f"data.root={sysu_root}", *COMMAND_SETTINGS, f"train.epochs={epochs}", "train.select_on=last"]
        return load_config("sysu_deen", overrides)

    straight = train(config(2), tmp_path / "straight", progress=False)
    halfway = train(config(1), tmp_path / "split", progress=False)
    resumed = train(config(2), tmp_path / "split", resume=halfway, progress=False)
    first, second = load_checkpoint(straight), load_checkpoint(resumed)
    assert first.epoch == second.epoch == 2
    for name, tensor in first.model.items():
        assert torch.equal(tensor, second.model[name]), name
