"""The strong baseline of Luo et al. 2019 ("Bag of Tricks and a Strong Baseline for Deep Person
Re-identification") as a vireid method, in one file outside the package.

Use it with ``--plugin examples/bot_method.py`` on any command, with ``plugins:`` in a config
(``examples/bot_sysu.yaml``), or from an installed distribution's entry point in the group
``vireid.methods``. Then ``model.method: bot`` names it:

    vireid train examples/bot_sysu.yaml --set data.root=/data/SYSU-MM01
    vireid train my_bot.yaml --plugin examples/bot_method.py  # a config of your own with model.method: bot

What it is, as the public code michuanhaohao/reid-strong-baseline builds it (``configs/
softmax_triplet_with_center.yml``):

- one ResNet-50 for both modalities (a single stream: the modality of an image is ignored), last
  stride 1, global average pooling, a BNNeck (BatchNorm1d without shift) and a bias-free classifier
  (``modeling/baseline.py`` lines 135-165);
- identity loss with label smoothing 0.1 on the classifier, batch-hard triplet (margin 0.3) and
  centre loss (weight 0.0005) on the pooled feature before the BNNeck;
- the centres trained by their own plain SGD at learning rate 0.5 on the unweighted centre loss's
  gradient (``engine/trainer.py`` lines 87-91 scale the weighted gradient back by 1/0.0005);
- Adam at 3.5e-4 with weight decay 5e-4 on everything else, 120 epochs, x0.1 after epochs 40 and
  70, 10 warm-up epochs; 256x128 images, flip, padding 10, random erasing 0.5;
- the test feature after the BNNeck, without flip.

One difference: vireid's warm-up rises linearly as lr x (epoch + 1) / 10; the reference's
(``solver/lr_scheduler.py`` lines 44-53) rises from lr x 0.01 as lr x (0.01 + 0.99 x epoch / 10).
A batch is vireid's cross-modality one: 8 identities x (4 visible + 4 infrared), 64 images as the
reference's 16 x 4.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal, NamedTuple

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from vireid.config import ExperimentConfig, InferenceConfig, LossConfig, ModelConfig, TrainConfig
from vireid.losses.identity import identity_loss
from vireid.losses.triplet import batch_hard_triplet
from vireid.method import Method, ParameterGroup, register_method
from vireid.models.backbone import WeightsError, imagenet_state_dict
from vireid.ranges import Range


@dataclass
class BoTModelConfig(ModelConfig):
    """The ``model:`` keys of the strong baseline."""

    backbone: Literal["resnet50", "resnet18"] = "resnet50"  # resnet18: a small stand-in for tests
    pretrained: str = "imagenet"  # "imagenet", "none", or a torchvision state-dict file
    last_stride: int = 1

    RANGES: ClassVar[dict[str, Range]] = {"last_stride": Range(1, 2)}


@dataclass
class BoTLossConfig(LossConfig):
    """The ``loss:`` keys of the strong baseline."""

    label_smoothing: float = 0.1
    triplet_margin: float = 0.3
    center_weight: float = 0.0005
    center_lr: float = 0.5  # the centres' own plain SGD

    RANGES: ClassVar[dict[str, Range]] = {
        "label_smoothing": Range(0, 1, highest_excluded=True),
        "triplet_margin": Range(0),
        "center_weight": Range(0, lowest_excluded=True),
        "center_lr": Range(0, lowest_excluded=True),
    }


BODY = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
"""The torchvision ResNet modules the network keeps, in order (its pooling and fc are replaced)."""


class BoTOutput(NamedTuple):
    pooled: torch.Tensor  # (B, C) the pooled feature, before the BNNeck: the metric losses' input
    feature: torch.Tensor  # (B, C) after the BNNeck: the test feature
    logits: torch.Tensor  # (B, num_classes)


class StrongBaseline(nn.Module):
    """ResNet body -> global average pooling -> BNNeck -> bias-free classifier."""

    def __init__(self, depth: str, last_stride: int, num_classes: int):
        super().__init__()
        resnet = getattr(torchvision.models, depth)(weights=None)
        if last_stride == 1:
            first = resnet.layer4[0]
            (first.conv2 if hasattr(first, "conv3") else first.conv1).stride = (1, 1)
            first.downsample[0].stride = (1, 1)
        self.body = nn.Sequential(*(getattr(resnet, name) for name in BODY))
        channels = resnet.fc.in_features
        self.bottleneck = nn.BatchNorm1d(channels)  # weight 1, bias 0: the reference's initialisation
        self.bottleneck.bias.requires_grad_(False)  # no shift
        self.classifier = nn.Linear(channels, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)
        self.depth = depth

    def load_imagenet(self, source: str) -> None:
        """The body from torchvision's ImageNet ResNet (``source``: "imagenet" or a state-dict file)."""
        state, origin = imagenet_state_dict(self.depth, source)
        position = {name: str(index) for index, name in enumerate(BODY)}  # conv1.weight -> 0.weight, ...
        body = {
            f"{position[layer]}.{rest}": tensor
            for layer, rest, tensor in ((*name.split(".", 1), tensor) for name, tensor in state.items())
            if layer in position
        }
        own = self.body.state_dict()
        unfit = [
            name
            for name, tensor in own.items()
            if not name.endswith("num_batches_tracked") and (name not in body or body[name].shape != tensor.shape)
        ]
        if unfit:
            raise WeightsError(
                f"{origin}: expected a torchvision {self.depth} state dict; {len(unfit)} tensors do not fit"
            )
        self.body.load_state_dict({name: body[name] for name in own if name in body}, strict=False)

    def forward(self, images: torch.Tensor, modalities: torch.Tensor | int) -> BoTOutput:
        """(B, 3, H, W) images of any modality (one stream for both) -> BoTOutput."""
        pooled = F.adaptive_avg_pool2d(self.body(images), 1).flatten(1)
        feature = self.bottleneck(pooled)
        return BoTOutput(pooled, feature, self.classifier(feature))


def center_loss(features: torch.Tensor, centers: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean squared distance of each feature to its class centre, as ``layers/center_loss.py`` lines
    36-48 compute it: the (B, classes) squared distances, all but each feature's own class zeroed,
    clamped to [1e-12, 1e12] (the zeros too), summed, over B. A product with the class mask, not an
    index: the backward of ``centers[labels]`` adds rows in an order that varies between runs on
    several threads, and a run would not repeat itself."""
    features = features.float()
    squared = features.pow(2).sum(dim=1, keepdim=True) + centers.pow(2).sum(dim=1) - 2 * features @ centers.T
    own_class = labels[:, None] == torch.arange(centers.shape[0], device=labels.device)  # (B, classes)
    return (squared * own_class).clamp(min=1e-12, max=1e12).sum() / features.shape[0]


class BoTLoss(nn.Module):
    """Identity (label smoothing) + batch-hard triplet + weighted centre loss; the centres are its parameters."""

    def __init__(self, config: BoTLossConfig, num_classes: int, feature_dim: int):
        super().__init__()
        self.config = config
        self.centers = nn.Parameter(torch.randn(num_classes, feature_dim))  # the reference's initialisation

    def forward(self, output: BoTOutput, labels: torch.Tensor, modalities: torch.Tensor) -> dict[str, torch.Tensor]:
        config = self.config
        identity = identity_loss(output.logits, labels, config.label_smoothing)
        triplet = batch_hard_triplet(output.pooled, labels, config.triplet_margin)
        # The network learns from the weighted centre loss, the centres from the unweighted one: the
        # reference's gradient, scaled back by 1 / center_weight for the centres' own optimizer.
        center = center_loss(output.pooled, self.centers.detach(), labels)  # its gradient reaches the network
        for_centres = center_loss(output.pooled.detach(), self.centers, labels)  # and this one the centres
        total = identity + triplet + config.center_weight * center + (for_centres - for_centres.detach())  # + 0
        return {"id": identity, "triplet": triplet, "center": center, "total": total}


class BagOfTricks(Method):
    name = "bot"
    description = "BoT strong baseline (Luo et al. 2019): one ResNet-50 for both modalities, BNNeck, centre loss"
    model_config = BoTModelConfig
    loss_config = BoTLossConfig
    defaults: dict[str, dict[str, Any]] = {
        "data": {"height": 256, "width": 128},
        "train": {
            "epochs": 120,
            "optimizer": "adam",
            "lr": 3.5e-4,
            "weight_decay": 5e-4,
            "warmup_epochs": 10,
            "milestones": [40, 70],
            "gamma": 0.1,
            "identities_per_batch": 8,
            "instances_per_modality": 4,
            "padding": 10,
            "random_erasing": 0.5,
            "erasing": "reid",
        },
        "test": {"flip": False},
    }

    def build_model(self, config: ExperimentConfig, num_classes: int, load_weights: bool = True) -> StrongBaseline:
        model = StrongBaseline(config.model.backbone, config.model.last_stride, num_classes)
        if load_weights and config.model.pretrained != "none":
            model.load_imagenet(config.model.pretrained)
        return model

    def build_loss(self, config: ExperimentConfig, num_classes: int, model: nn.Module) -> BoTLoss:
        return BoTLoss(config.loss, num_classes, model.classifier.in_features)

    def loss_terms(self, config: ExperimentConfig) -> tuple[str, ...]:
        return ("id", "triplet", "center")

    def parameter_groups(self, model: nn.Module, loss: nn.Module, train: TrainConfig) -> list[ParameterGroup]:
        network = [parameter for parameter in model.parameters() if parameter.requires_grad]
        return [
            ParameterGroup("network", network, train.lr),
            ParameterGroup("centers", [loss.centers], loss.config.center_lr, own_sgd=True),
        ]

    def embeddings(self, config: ExperimentConfig) -> dict[str, str]:
        return {"global": "after the BNNeck (the reference's test feature); before it with test.after_bn=false"}

    def embed(self, output: BoTOutput, name: str, test: InferenceConfig) -> torch.Tensor:
        return output.feature if test.after_bn else output.pooled


register_method(BagOfTricks())
