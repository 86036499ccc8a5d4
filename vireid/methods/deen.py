"""DEEN: the diverse embedding expansion network (Zhang & Wang, CVPR 2023), as its public code builds and trains it.

The code: ZYK100/LLCM, folder ``DEEN/`` (``model.py``, ``loss.py``, ``train.py``, ``test.py``).
Line numbers below are of those files at commit 886e27c.

The network (``model.py`` ``embed_net``):

- a two-stream ResNet-50 (last stride 1): a stem (conv1, bn1, relu, maxpool) per modality, then
  shared layers (lines 40-89);
- after layer1, layer2 and layer3, an MFA block fuses the stage's output (high level) with its input
  (low level): a channel non-local step (CNL), then a position non-local step (PNL) (lines 124-203);
- DEE after the last MFA block: two branches, each three 3x3 convolutions of dilation 1, 2, 3 to a
  quarter of the channels, averaged, ReLU, a 1x1 convolution back; the input and both branches go on
  as three times the batch, through dropout 0.01 (lines 91-121);
- the last stage (layer4), average pooling, a BNNeck (no shift) and a bias-free classifier
  (lines 226-231, 258-272). On RegDB the network is shorter (lines 214-217, 250-252): DEE after layer2's MFA
  block, then layer3 ends it (no MFA3, no layer4; 1024-dimensional features): ``model.dee_after:
  layer2``.

The reference keeps three whole ResNet-50s (``visible_module``, ``thermal_module``, ``base_resnet``)
and uses only the stems of the first two and layers 1-4 of the third; here only what its forward
uses exists, so the parameter count is that of the network that runs.

The loss (``train.py`` lines 274-294, ``loss.py``): identity cross-entropy over the input's and both
branches' logits, the batch-hard triplet (``OriTripletLoss``, margin 0.3) over their pooled features,
CPM (center-guided pair mining, margin 0.2) between the input and each branch, weighted
``lambda_1`` = 0.8, and the orthogonal loss between the two branches' pooled features (computed in
``model.py`` lines 264-268), weighted ``lambda_2`` = 0.01.

The test feature (``test.py`` lines 105-160, 210-217): for the input and each branch, the pooled and
the after-BNNeck features, each L2-normalised, the flipped image's added (summed, not averaged and
renormalised), and the six blocks scored by their summed dot products (``distmat7``): the
embedding ``all`` with ``test.distance: dot``.

Where the paper and the code differ, this follows the code: the ORT loss is the dot product of the
two branches' pooled features, summed over the batch and divided by three times its size; CNL's
attention is divided by its channel count and PNL's by its position count, without a softmax; PNL
views its (B, C/2, N) maps as (B, C, N/2) (lines 175-188).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from vireid.config import ExperimentConfig, InferenceConfig, LossConfig, ModelConfig, TrainConfig
from vireid.losses.identity import identity_loss
from vireid.losses.triplet import batch_hard_triplet, euclidean_distances
from vireid.method import Method, NameRules, ParameterGroup, ReferenceFormat, register_method
from vireid.modality import ModalityLayout, modality_layout
from vireid.models.backbone import REFERENCE_RESNETS, TwoStreamResNet, reference_backbone_names, stage_channels
from vireid.ranges import Range


@dataclass
class DEENModelConfig(ModelConfig):
    """The ``model:`` keys of DEEN.

    Attributes:
        backbone: "resnet50", or "resnet18": a small stand-in for tests.
        pretrained: "imagenet", "none", or a torchvision state-dict file.
        last_stride: The last stage's stride (the reference's resnet50(last_conv_stride=1)).
        dee_after: The stage whose MFA block DEE follows: layer3 (then layer4: SYSU-MM01, LLCM) or layer2
            (then layer3 ends the network, without MFA3 and layer4: the reference's RegDB network).
        dee_dropout: DEE_module's nn.Dropout(p=0.01) over the expanded batch.
    """

    backbone: Literal["resnet50", "resnet18"] = "resnet50"  # resnet18: a small stand-in for tests
    pretrained: str = "imagenet"  # "imagenet", "none", or a torchvision state-dict file
    last_stride: int = 1  # resnet50(last_conv_stride=1)
    # the stage whose MFA block DEE follows: layer3 (then layer4: SYSU-MM01, LLCM) or layer2 (then layer3
    # ends the network, without MFA3 and layer4: the reference's RegDB network)
    dee_after: Literal["layer3", "layer2"] = "layer3"
    dee_dropout: float = 0.01  # DEE_module's nn.Dropout(p=0.01) over the expanded batch

    RANGES: ClassVar[dict[str, Range]] = {
        "last_stride": Range(1, 2),
        "dee_dropout": Range(0, 1, highest_excluded=True),
    }


@dataclass
class DEENLossConfig(LossConfig):
    """The ``loss:`` keys of DEEN (``train.py``'s arguments).

    Attributes:
        id_weight: The identity loss's weight.
        triplet_weight: The triplet loss's weight.
        triplet_margin: OriTripletLoss's margin (--margin 0.3).
        cpm_weight: The CPM loss's weight (--lambda_1 0.8).
        cpm_margin: The CPM loss's margin (CPMLoss(margin=0.2)).
        ort_weight: The ORT loss's weight (--lambda_2 0.01).
    """

    id_weight: float = 1.0
    triplet_weight: float = 1.0
    triplet_margin: float = 0.3  # --margin 0.3: OriTripletLoss
    cpm_weight: float = 0.8  # --lambda_1 0.8
    cpm_margin: float = 0.2  # CPMLoss(margin=0.2)
    ort_weight: float = 0.01  # --lambda_2 0.01

    RANGES: ClassVar[dict[str, Range]] = {
        name: Range(0)
        for name in ("id_weight", "triplet_weight", "triplet_margin", "cpm_weight", "cpm_margin", "ort_weight")
    }


def _kaiming(module: nn.Conv2d) -> nn.Conv2d:
    """The reference's weights_init_kaiming of a convolution (lines 19-29): He normal, fan in; bias untouched."""
    nn.init.kaiming_normal_(module.weight, a=0, mode="fan_in")
    return module


def _zero_batch_norm(channels: int) -> nn.BatchNorm2d:
    """A BatchNorm starting at weight 0 and bias 0, so a non-local block starts as the identity."""
    batch_norm = nn.BatchNorm2d(channels)
    nn.init.zeros_(batch_norm.weight)
    nn.init.zeros_(batch_norm.bias)
    return batch_norm


class ChannelNonLocal(nn.Module):
    """CNL (lines 124-156): attention between channels.

    The high-level map x_h (B, high, h, w) asks, the low-level map x_l (B, low, H, W) answers
    (``stride`` 2 where it is twice x_h's size).
    """

    def __init__(self, high: int, low: int, stride: int):
        super().__init__()
        self.low = low
        self.g = nn.Conv2d(low, low, 1)
        self.theta = nn.Conv2d(high, low, 1)
        self.phi = nn.Conv2d(low, low, 1, stride=stride)
        self.W = nn.Sequential(nn.Conv2d(low, high, 1, stride=stride), _zero_batch_norm(high))

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        """The (B, high, h, w) high-level map with what it gathers from the low-level map added."""
        batch = high.shape[0]
        g = self.g(low).reshape(batch, self.low, -1)  # (B, low, N)
        theta = self.theta(high).reshape(batch, self.low, -1)  # (B, low, n)
        phi = self.phi(low).reshape(batch, self.low, -1).transpose(1, 2)  # (B, n, low)
        energy = theta @ phi  # (B, low, low)
        attention = energy / energy.shape[-1]
        y = (attention @ g).reshape(batch, self.low, *low.shape[2:])  # (B, low, H, W)
        return self.W(y) + high


class PositionNonLocal(nn.Module):
    """PNL (lines 158-192): attention between positions, at half the low-level channels.

    As the reference does, each (B, low/2, N) map is viewed as (B, low, N/2): two neighbouring
    positions' reduced channels make one position of ``low`` channels.
    """

    def __init__(self, high: int, low: int, reduction: int = 2):
        super().__init__()
        self.low, self.reduced = low, low // reduction
        self.g = nn.Conv2d(low, self.reduced, 1)
        self.theta = nn.Conv2d(high, self.reduced, 1)
        self.phi = nn.Conv2d(low, self.reduced, 1)
        self.W = nn.Sequential(nn.Conv2d(self.reduced, high, 1), _zero_batch_norm(high))

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        """The (B, high, h, w) high-level map with what it gathers from the low-level map added."""
        batch = high.shape[0]
        g = self.g(low).reshape(batch, self.low, -1).transpose(1, 2)  # (B, N/2, low)
        theta = self.theta(high).reshape(batch, self.low, -1).transpose(1, 2)  # (B, n/2, low)
        phi = self.phi(low).reshape(batch, self.low, -1)  # (B, low, N/2)
        energy = theta @ phi  # (B, n/2, N/2)
        attention = energy / energy.shape[-1]
        y = (attention @ g).transpose(1, 2).reshape(batch, self.reduced, *high.shape[2:])  # (B, low/2, h, w)
        return self.W(y) + high


class MultiFeatureAggregation(nn.Module):
    """MFA (lines 194-203): CNL, then PNL, each fusing the low-level map into the high-level one."""

    def __init__(self, high: int, low: int, stride: int):
        super().__init__()
        self.CNL = ChannelNonLocal(high, low, stride)
        self.PNL = PositionNonLocal(high, low)

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        """The (B, high, h, w) high-level map fused with the low-level one: CNL, then PNL."""
        return self.PNL(self.CNL(high, low), low)


class DiverseEmbeddingExpansion(nn.Module):
    """DEE (lines 91-121): (B, C, H, W) -> (3B, C, H, W), the input then its two expansions, through dropout.

    Each expansion: three 3x3 convolutions of dilation 1, 2, 3 to C/4 channels, averaged, ReLU, a
    1x1 convolution back to C.
    """

    def __init__(self, channels: int, dropout: float):
        super().__init__()
        quarter = channels // 4
        self.branches = nn.ModuleList(
            nn.ModuleDict(
                {
                    "dilated": nn.ModuleList(
                        _kaiming(nn.Conv2d(channels, quarter, 3, padding=dilation, dilation=dilation, bias=False))
                        for dilation in (1, 2, 3)
                    ),
                    "project": _kaiming(nn.Conv2d(quarter, channels, 1)),
                }
            )
            for _ in range(2)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (3B, C, H, W): the input, then its two expansions, through dropout."""
        expanded = [x]
        for branch in self.branches:
            first, second, third = (convolution(x) for convolution in branch["dilated"])
            expanded.append(branch["project"](F.relu((first + second + third) / 3)))
        return self.dropout(torch.cat(expanded, dim=0))


@dataclass
class DEENOutput:
    """One forward pass: the rows of the input images, then those of each DEE branch (blocks of B).

    Attributes:
        pooled: (3B, C) average-pooled features, before the BNNeck.
        feature: (3B, C) features after the BNNeck.
        logits: (3B, K) classifier logits, in training only (else None).
    """

    pooled: torch.Tensor  # (3B, C) average-pooled, before the BNNeck
    feature: torch.Tensor  # (3B, C) after the BNNeck
    logits: torch.Tensor | None = None  # (3B, K), in training only


class DEENet(nn.Module):
    """The network of ``embed_net`` (lines 205-272): stems, stages with MFA blocks, DEE, last stage, BNNeck."""

    def __init__(self, config: DEENModelConfig, num_classes: int):
        super().__init__()
        self.config, self.num_classes = config, num_classes
        stages = 4 if config.dee_after == "layer3" else 3
        self.backbone = TwoStreamResNet(config.backbone, config.last_stride, non_local=False, stages=stages)
        names = self.backbone.stage_names
        stem_channels = self.backbone.stems[0].bn1.num_features
        inputs = [stem_channels, *(stage_channels(getattr(self.backbone, name)) for name in names)]
        # MFA1 keeps layer1's size (flag 0); MFA2 and MFA3 follow stride-2 stages (flag 1)
        self.mfa = nn.ModuleList(
            MultiFeatureAggregation(inputs[index + 1], inputs[index], 1 if index == 0 else 2)
            for index in range(len(names) - 1)
        )
        self.dee = DiverseEmbeddingExpansion(inputs[-2], config.dee_dropout)
        channels = self.backbone.out_channels
        self.bottleneck = nn.BatchNorm1d(channels)
        self.bottleneck.bias.requires_grad_(False)  # no shift
        nn.init.normal_(self.bottleneck.weight, 1.0, 0.01)  # weights_init_kaiming of a BatchNorm1d
        nn.init.zeros_(self.bottleneck.bias)
        self.classifier = nn.Linear(channels, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, 0, 0.001)  # weights_init_classifier

    def forward(self, images: torch.Tensor, modalities: torch.Tensor | ModalityLayout | int) -> DEENOutput:
        """The features (and, in training, the logits) of a batch, the input's rows then each DEE branch's.

        Args:
            images: (B, 3, H, W) images.
            modalities: Their (B,) modalities or ModalityLayout, or one int: all of that modality (not in
                training).

        Returns:
            (3B, C) pooled and after-BNNeck features; (3B, K) logits in training.

        Raises:
            ValueError: Where ``modalities`` is one int in training.
        """
        if self.training and isinstance(modalities, int):
            raise ValueError("training takes each image's modality as a (B,) tensor, not one int")
        low = self.backbone.stem(images, modalities)
        stage_names = self.backbone.stage_names
        for name, mfa in zip(stage_names, self.mfa):
            low = mfa(getattr(self.backbone, name)(low), low)
        feature_map = getattr(self.backbone, stage_names[-1])(self.dee(low))  # (3B, C, h, w)
        pooled = F.adaptive_avg_pool2d(feature_map, 1).flatten(1)
        feature = self.bottleneck(pooled)
        return DEENOutput(pooled, feature, self.classifier(feature) if self.training else None)


def by_source(rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(3B, ...) -> the input images' (B, ...) rows, then each DEE branch's.

    A view, not torch.chunk, whose split an exported graph would fix to the example's batch size.

    Args:
        rows: (3B, ...) rows: the input images', then each branch's.

    Returns:
        Three (B, ...) views: the input's, branch 1's, branch 2's.
    """
    return rows.unflatten(0, (3, -1)).unbind(0)


def modality_centres(
    features: torch.Tensor, same_identity: torch.Tensor, modalities: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, D) mean visible and (B, D) mean infrared feature of each row's identity.

    The reference takes the means of consecutive chunks of K rows (``loss.py`` lines 15-39), which the
    batch's order makes one identity each; here rows are grouped by label, whatever their order. A
    row whose identity has no image of a modality gets zeros for that modality's centre.

    Args:
        features: (B, D) features.
        same_identity: (B, B) whether rows i and j show the same identity.
        modalities: (B,) the rows' modalities (0 visible, 1 infrared).

    Returns:
        (B, D) float32 visible centres and (B, D) float32 infrared centres.
    """
    centres = []
    for modality in (0, 1):
        members = same_identity & (modalities[None, :] == modality)  # (B, B)
        weights = members.float() / members.sum(dim=1, keepdim=True).clamp(min=1)
        centres.append(weights @ features.float())
    return centres[0], centres[1]


def center_guided_pair_mining(
    features: torch.Tensor, expanded: torch.Tensor, labels: torch.Tensor, modalities: torch.Tensor, margin: float
) -> torch.Tensor:
    """CPMLoss (``loss.py`` lines 8-78) between the input images' (B, D) pooled features and one DEE branch's.

    With identity centres per modality, the input's visible v, infrared i and the branch's
    visible v', infrared i', for each identity p:

    the branch's visible centre is pulled towards the input's infrared one, past its distance to the
    input's visible one (held fixed) and to the nearest other identity's centre among v' and among v:
    ``h(d(i_p, v'_p) - d(v_p, v'_p)) + (h(d(i_p, v'_p) - min d(v'_p, v'_q)) + h(d(i_p, v'_p) - min d(v_p, v_q))) / 2``,
    h(x) = max(0, x + margin), each term averaged over identities; the same with the modalities swapped;
    the mean of the two.

    Only the identities with images of both modalities count (every one in a sampler batch). Each
    identity is represented by its first row, so that every tensor keeps the batch's size and nothing
    is read on the host (no ``unique``, no boolean selection): the loss compiles into one graph.

    Args:
        features: (B, D) pooled features of the input images.
        expanded: (B, D) pooled features of one DEE branch, of the same images.
        labels: (B,) the images' identities.
        modalities: (B,) their modalities (0 visible, 1 infrared).
        margin: The hinge's margin.

    Returns:
        The loss, a scalar tensor.
    """
    rows = torch.arange(len(labels), device=labels.device)
    same_identity = labels[:, None] == labels[None, :]  # (B, B)
    first_row = ~(same_identity & (rows[None, :] < rows[:, None])).any(dim=1)  # (B,) the first row of its identity
    in_both = [(same_identity & (modalities[None, :] == modality)).any(dim=1) for modality in (0, 1)]
    counted = first_row & in_both[0] & in_both[1]  # (B,) one row per identity with images of both modalities
    visible, infrared = modality_centres(features, same_identity, modalities)
    expanded_visible, expanded_infrared = modality_centres(expanded, same_identity, modalities)
    not_another = ~(counted[None, :] & ~same_identity)  # (B, B) columns that are no other counted identity

    def mean_over_identities(values: torch.Tensor) -> torch.Tensor:  # (B,) -> the mean of the counted rows
        return torch.where(counted, values, 0.0).sum() / counted.sum()

    def hinge(positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:  # nn.MarginRankingLoss(margin)
        return mean_over_identities(F.relu(positive - negative + margin))

    def nearest_other(centres: torch.Tensor) -> torch.Tensor:
        return euclidean_distances(centres).masked_fill(not_another, float("inf")).amin(dim=1)

    def pulled(target: torch.Tensor, same_input: torch.Tensor, expanded_own: torch.Tensor) -> torch.Tensor:
        positive = euclidean_distances(target, expanded_own).diagonal()
        fixed = euclidean_distances(same_input, expanded_own).diagonal().detach()
        others = hinge(positive, nearest_other(expanded_own)) + hinge(positive, nearest_other(same_input))
        return hinge(positive, fixed) + others * 0.5

    return (pulled(infrared, visible, expanded_visible) + pulled(visible, infrared, expanded_infrared)) / 2


def orthogonal_loss(pooled: torch.Tensor) -> torch.Tensor:
    """The ORT loss (``model.py`` lines 264-268).

    The dot products of the two DEE branches' pooled features of each image, summed over the batch,
    divided by the number of rows (3B).

    Args:
        pooled: (3B, C) pooled features: the input's rows, then each branch's.

    Returns:
        The loss, a scalar tensor.
    """
    _, first, second = by_source(pooled.float())
    return (first * second).sum() / pooled.shape[0]


class DEENLoss(nn.Module):
    """DEEN's loss: id + triplet + cpm_weight x (CPM(input, branch 1) + CPM(input, branch 2)) + ort_weight x ORT.

    As ``train.py`` lines 286-294 compute it; the terms it returns are unweighted, ``cpm`` being the
    sum of the two.
    """

    terms = ("id", "triplet", "cpm", "ort")

    def __init__(self, config: DEENLossConfig):
        super().__init__()
        self.config = config

    def forward(
        self, output: DEENOutput, labels: torch.Tensor, modalities: torch.Tensor | ModalityLayout
    ) -> dict[str, torch.Tensor]:
        """The unweighted terms id, triplet, cpm and ort, and ``total``, their weighted sum."""
        config = self.config
        modalities = modality_layout(modalities).tensor
        every_row = labels.repeat(3)  # the input's rows, then each branch's
        pooled = by_source(output.pooled)
        terms = {
            "id": identity_loss(output.logits, every_row),
            "triplet": batch_hard_triplet(output.pooled, every_row, config.triplet_margin),
            "cpm": sum(
                center_guided_pair_mining(pooled[0], branch, labels, modalities, config.cpm_margin)
                for branch in pooled[1:]
            ),
            "ort": orthogonal_loss(output.pooled),
        }
        weights = {
            "id": config.id_weight,
            "triplet": config.triplet_weight,
            "cpm": config.cpm_weight,
            "ort": config.ort_weight,
        }
        terms["total"] = sum(weights[name] * value for name, value in terms.items())
        return terms


WEIGHTED_POOL_SHARE = 0.1
"""test.py's ``a`` (lines 215-217): the share of the pooled features' similarities in ``distmat8``."""


def deen_reference_names(config: DEENModelConfig) -> NameRules:
    """The names of ``model.py``'s ``embed_net`` on this network.

    The reference holds three ResNet-50s: of ``visible_module.visible`` and ``thermal_module.thermal``
    its forward uses the stems (lines 49-53, 66-70), of ``base_resnet.base`` layers 1-4, or 1-3 on
    RegDB (lines 246-257); MFA1-3 (MFA1-2 on RegDB) are ``mfa.0``-``mfa.2``; DEE's ``FC11``-``FC13``
    and ``FC1`` are the first branch's three dilated convolutions and projection, ``FC21``-``FC23``
    and ``FC2`` the second's (lines 91-121).

    Args:
        config: DEEN's model keys (``dee_after`` sets the stages).

    Returns:
        The rules that rename the reference's tensors.
    """
    stages = 4 if config.dee_after == "layer3" else 3
    mfa = [(f"MFA{index + 1}.", f"mfa.{index}.") for index in range(stages - 1)]
    dee = [
        (f"DEE.FC{branch + 1}{dilation + 1}.", f"dee.branches.{branch}.dilated.{dilation}.")
        for branch in (0, 1)
        for dilation in (0, 1, 2)
    ] + [(f"DEE.FC{branch + 1}.", f"dee.branches.{branch}.project.") for branch in (0, 1)]
    head = [("bottleneck.", "bottleneck."), ("classifier.", "classifier.")]
    return NameRules(renamed=(*reference_backbone_names(stages), *mfa, *dee, *head), ignored=REFERENCE_RESNETS)


class DEENMethod(Method):
    """DEEN as a method: its network, loss, recipe (``defaults``), test embeddings and reference weights."""

    name = "deen"
    description = "DEEN: two-stream ResNet, MFA blocks, diverse embedding expansion; ID, triplet, CPM, ORT (CVPR 2023)"
    model_config = DEENModelConfig
    loss_config = DEENLossConfig
    reference_formats = (
        ReferenceFormat(
            "deen",
            "DEEN: ZYK100/LLCM DEEN/train.py's {dataset}_deen_p4_n6_lr_0.1_seed_0_best.t (no trained model is "
            "published: files of one's own training)",
            "{dataset}_deen",
        ),
    )
    defaults = {
        "data": {"height": 384, "width": 144, "resize_filter": "lanczos"},  # --img_h 384 --img_w 144, ANTIALIAS
        "train": {
            "epochs": 151,  # for epoch in range(start_epoch, 151 - start_epoch)
            "optimizer": "sgd",
            "lr": 0.1,  # bottleneck and classifier; everything else at 0.1 x lr
            "backbone_lr": 0.01,
            "warmup_epochs": 10,
            "milestones": [20, 80],  # adjust_learning_rate: x0.1 from epoch 20, x0.01 from 80
            "identities_per_batch": 6,  # --batch-size 6
            "instances_per_modality": 4,  # --num_pos 4
            "sampler": "independent",
            "padding": 10,
            "random_grayscale": 0.5,
            "random_erasing": 0.5,
            "erasing": "reid",
            "erasing_area": [0.02, 0.4],  # RegDB's and LLCM's; SYSU-MM01's 0.2-0.8 in sysu_deen.yaml
            "erasing_fill": [0.485, 0.456, 0.406],
            "eval_every": 1,  # if epoch > 0 and epoch % 1 == 0
            "eval_offset": 1,
            "eval_last": False,
            "eval_flip": False,  # train.py's test() does not flip
        },
        "test": {"feature": "all", "flip": True, "distance": "dot"},
    }

    def build_model(self, config: ExperimentConfig, num_classes: int, load_weights: bool = True) -> DEENet:
        """The DEEN network, its backbone's pretrained weights loaded where ``load_weights``."""
        model = DEENet(config.model, num_classes)
        if load_weights:
            model.backbone.load_pretrained(config.model.pretrained)
        return model

    def build_loss(self, config: ExperimentConfig, num_classes: int, model: nn.Module) -> DEENLoss:
        """DEENLoss of ``config.loss``."""
        return DEENLoss(config.loss)

    def loss_terms(self, config: ExperimentConfig) -> tuple[str, ...]:
        """The terms of DEENLoss: id, triplet, cpm and ort."""
        return DEENLoss.terms

    def parameter_groups(self, model: DEENet, loss: nn.Module, train: TrainConfig) -> list[ParameterGroup]:
        """The BNNeck and classifier at ``train.lr``, everything else at ``train.backbone_lr``.

        Everything else is the stems, stages, MFA and DEE (train.py lines 222-233: 0.1 x lr).
        """
        head = [p for module in (model.bottleneck, model.classifier) for p in module.parameters() if p.requires_grad]
        head_ids = {id(p) for p in head}
        body = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]
        return [ParameterGroup("backbone", body, train.backbone_lr), ParameterGroup("new", head, train.lr)]

    def embeddings(self, config: ExperimentConfig) -> dict[str, str]:
        """``all`` (test.py's), ``weighted`` and ``input``."""
        return {
            "all": "test.py's: the pooled and after-BN features of the input and both DEE branches, "
            "each L2-normalised, concatenated (distmat7)",
            "weighted": f"the same blocks, the pooled ones weighted {WEIGHTED_POOL_SHARE} and the after-BN ones "
            f"{1 - WEIGHTED_POOL_SHARE} in the dot product (test.py's distmat8)",
            "input": "the input images' own feature, without the DEE branches' (after the BNNeck; "
            "test.after_bn=false: before it), L2-normalised",
        }

    def embed(self, output: DEENOutput, name: str, test: InferenceConfig) -> torch.Tensor:
        """The embedding ``name``: (B, 6C) for ``all`` and ``weighted``, (B, C) for ``input``."""
        pooled, feature = by_source(output.pooled), by_source(output.feature)  # input, branch 1, branch 2
        if name == "input":
            return F.normalize(feature[0] if test.after_bn else pooled[0], dim=1)
        pool_scale, feature_scale = 1.0, 1.0
        if name == "weighted":  # the square roots, so that the dot product weighs each block's similarity so
            pool_scale, feature_scale = math.sqrt(WEIGHTED_POOL_SHARE), math.sqrt(1 - WEIGHTED_POOL_SHARE)
        blocks = []
        for pooled_block, feature_block in zip(pooled, feature):
            blocks += [pool_scale * F.normalize(pooled_block, dim=1), feature_scale * F.normalize(feature_block, dim=1)]
        return torch.cat(blocks, dim=1)  # (B, 6C)

    def signature(self, config: ExperimentConfig) -> dict[str, Any]:
        """The method, the backbone and the stage DEE follows."""
        model = config.model
        return {"method": self.name, "backbone": model.backbone, "dee_after": model.dee_after}

    def reference_names(self, format_name: str, config: ExperimentConfig) -> NameRules:
        """The names of the reference's ``embed_net`` (deen_reference_names)."""
        return deen_reference_names(config.model)

    def describe(self, model: DEENet, config: ExperimentConfig) -> str:
        """The network in words: backbone, MFA blocks, where DEE sits, classes."""
        stages = model.backbone.stage_names
        return (
            f"(deen, {config.model.backbone}, MFA after {', '.join(stages[:-1])}, DEE then {stages[-1]}, "
            f"{model.num_classes} classes)"
        )


register_method(DEENMethod())
