"""The cross-modality re-identification network, built from its AGWModelConfig (the ``model:`` keys of the AGW methods).

Variants (each an ablation row of the paper):

=========================  ==============================================
``parts=0, cmimpl=False``  AGW baseline: global branch only
``parts=6, cmimpl=False``  + FGFL: horizontal part features
``parts=6, cmimpl=True``   + CMIMPL: the paper's model
=========================  ==============================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from vireid.config import ModelConfig
from vireid.modality import ModalityLayout, modality_layout
from vireid.models.backbone import TwoStreamResNet
from vireid.models.heads import GlobalHead, ModalityClassifiers, PartHead
from vireid.ranges import Range


@dataclass
class AGWModelConfig(ModelConfig):
    """The ``model:`` keys of the two-stream network (vireid.models.network.CrossModalityNet)."""

    backbone: Literal["resnet50", "resnet18"] = "resnet50"
    pretrained: str = "imagenet"  # "imagenet" (torchvision weights API), "none", or a path to a state-dict file
    last_stride: int = 1
    non_local: bool = True
    non_local_inter_channels: Literal["one", "half"] = "one"  # "one": the reference AGW quirk; "half": C/2
    gem_p: float = 3.0
    parts: int = 0  # FGFL horizontal stripes; 0 turns the local branch off
    part_dim: int = 512
    cmimpl: bool = False  # modality-specific classifiers with cross-modality mutual prediction
    ema_rate: float = 0.2  # update rate of the classifiers' slow copies

    RANGES: ClassVar[dict[str, Range]] = {
        "last_stride": Range(1, 2),
        "gem_p": Range(0, lowest_excluded=True),
        "parts": Range(0),
        "part_dim": Range(1),
        "ema_rate": Range(0, 1),
    }


@dataclass
class ModelOutput:
    """What one forward pass gives; the losses pick what they need.

    Features are always present; logits only in training mode.
    """

    pooled: torch.Tensor  # (B, C) global GeM feature, before the BNNeck
    global_feature: torch.Tensor  # (B, C) after the BNNeck
    part_pooled: torch.Tensor | None = None  # (B, P, part_dim) FGFL part features before their BN
    part_features: torch.Tensor | None = None  # (B, P, part_dim) after it
    global_logits: torch.Tensor | None = None  # (B, K) shared identity classifier
    part_logits: torch.Tensor | None = None  # (B, P, K)
    modality_logits: dict[str, torch.Tensor] | None = (
        None  # CMIMPL: own / cross / cross_frozen / cross_ema, each (B, K)
    )


class CrossModalityNet(nn.Module):
    def __init__(self, config: AGWModelConfig, num_classes: int):
        super().__init__()
        self.config = config
        self.num_classes = num_classes
        self.backbone = TwoStreamResNet(
            config.backbone, config.last_stride, config.non_local, config.non_local_inter_channels
        )
        channels = self.backbone.out_channels
        self.global_head = GlobalHead(channels, num_classes, config.gem_p)
        self.part_head = (
            PartHead(channels, num_classes, config.parts, config.part_dim, config.gem_p) if config.parts else None
        )
        self.modality_classifiers = (
            ModalityClassifiers(channels, num_classes, config.ema_rate) if config.cmimpl else None
        )

    def describe(self) -> str:
        """The architecture in words, for messages."""
        config = self.config
        parts = f"{config.parts} parts of {config.part_dim}" if config.parts else "no parts"
        return (
            f"({config.backbone}, {parts}, cmimpl {'on' if config.cmimpl else 'off'}, "
            f"non-local {'on' if config.non_local else 'off'}, {self.num_classes} classes)"
        )

    def forward(self, images: torch.Tensor, modalities: torch.Tensor | ModalityLayout | int) -> ModelOutput:
        """(B, 3, H, W) images of either modality, with their (B,) modality values or their
        ModalityLayout (or one int when all are of one modality: evaluation and export only)."""
        if self.training and isinstance(modalities, int):
            raise ValueError("training takes each image's modality as a (B,) tensor, not one int")
        if not isinstance(modalities, int):
            modalities = modality_layout(modalities)
        feature_map = self.backbone(images, modalities)  # (B, C, h, w)
        pooled, global_feature = self.global_head(feature_map)
        output = ModelOutput(pooled, global_feature)
        if self.part_head is not None:
            output.part_pooled, output.part_features = self.part_head(feature_map)
        if not self.training:
            return output
        output.global_logits = self.global_head.classifier(global_feature)
        if self.part_head is not None:
            output.part_logits = self.part_head.logits(output.part_features)
        if self.modality_classifiers is not None:
            self.modality_classifiers.update_ema()
            output.modality_logits = self.modality_classifiers(global_feature, modalities.tensor)
        return output


def build_model(config: AGWModelConfig, num_classes: int, load_weights: bool = True) -> CrossModalityNet:
    """The network of ``config``, its backbone initialised as ``config.pretrained`` says."""
    model = CrossModalityNet(config, num_classes)
    if load_weights:
        model.backbone.load_pretrained(config.pretrained)
    return model
