"""AGW and the paper's additions to it, as methods (rows of the paper's ablation).

==================  =====================================================
``agw``             AGW baseline: two-stream ResNet, non-local, GeM, BNNeck; ID + WRT
``agw_fgfl``        + FGFL: 6 horizontal part features, each with its classifier
``agw_fgfl_cmimpl`` + CMIMPL: modality-specific classifiers with cross prediction (the paper's model)
==================  =====================================================

All three are one network (vireid.models.network) and one loss (vireid.losses.ReIDLoss) with
different switches; ``model.parts`` and ``model.cmimpl`` set in a config win over the method's
values. CAJ (vireid.methods.caj) trains the same network with its own recipe.

Test embeddings: ``global`` (the BNNeck feature, or the GeM feature before it with
``test.after_bn: false``), ``parts`` (the part features, each L2-normalised, concatenated) and
``both`` (global and parts, each block L2-normalised), the last two where the network has parts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from vireid.config import ConfigError, ExperimentConfig, InferenceConfig, LossConfig, ModelConfig, TrainConfig
from vireid.losses import ReIDLoss
from vireid.method import Method, ParameterGroup, register_method
from vireid.models.network import CrossModalityNet, ModelOutput, build_model
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


class CrossModalityMethod(Method):
    """A method of the two-stream network and ReIDLoss; its variants differ in their recipe (``defaults``)."""

    model_config = AGWModelConfig
    loss_config = AGWLossConfig

    def __init__(self, name: str, description: str, defaults: dict[str, dict[str, Any]]):
        self.name, self.description, self.defaults = name, description, defaults

    def build_model(self, config: ExperimentConfig, num_classes: int, load_weights: bool = True) -> CrossModalityNet:
        return build_model(config.model, num_classes, load_weights)

    def build_loss(self, config: ExperimentConfig, num_classes: int, model: nn.Module) -> ReIDLoss:
        return ReIDLoss(config.loss)

    def loss_terms(self, config: ExperimentConfig) -> tuple[str, ...]:
        parts = ("part_id", "part_triplet") if config.model.parts else ()
        return ("id", "triplet", *parts, *(("msid", "cmp") if config.model.cmimpl else ()))

    def parameter_groups(self, model: CrossModalityNet, loss: nn.Module, train: TrainConfig) -> list[ParameterGroup]:
        """The pretrained backbone at ``train.backbone_lr``, every new layer (heads, parts...) at ``train.lr``."""
        backbone = [p for p in model.backbone.parameters() if p.requires_grad]
        backbone_ids = {id(p) for p in backbone}
        new_layers = [p for p in model.parameters() if p.requires_grad and id(p) not in backbone_ids]
        return [ParameterGroup("backbone", backbone, train.backbone_lr), ParameterGroup("new", new_layers, train.lr)]

    def embeddings(self, config: ExperimentConfig) -> dict[str, str]:
        embeddings = {"global": "the global feature (after the BNNeck; test.after_bn=false: before it)"}
        if config.model.parts:
            embeddings["parts"] = f"the {config.model.parts} part features, each L2-normalised, concatenated"
            embeddings["both"] = "global and parts, each block L2-normalised, concatenated"
        return embeddings

    def embed(self, output: ModelOutput, name: str, test: InferenceConfig) -> torch.Tensor:
        blocks = []
        if name in ("global", "both"):
            blocks.append(F.normalize(output.global_feature if test.after_bn else output.pooled, dim=1))
        if name in ("parts", "both"):
            parts = output.part_features if test.after_bn else output.part_pooled  # (B, P, d)
            blocks.append(F.normalize(parts, dim=2).flatten(1))
        return torch.cat(blocks, dim=1)

    def check(self, config: ExperimentConfig) -> None:
        if config.test.feature in ("parts", "both") and config.model.parts == 0:
            raise ConfigError(
                f"test.feature: {config.test.feature!r} needs a model with parts (model.parts > 0); "
                "this one has none, use test.feature=global"
            )

    def signature(self, config: ExperimentConfig) -> dict[str, Any]:
        model = config.model
        return {"backbone": model.backbone, "parts": model.parts, "part_dim": model.part_dim if model.parts else 0}

    def describe(self, model: CrossModalityNet, config: ExperimentConfig) -> str:
        return model.describe()


for name, parts, cmimpl, description in (
    ("agw", 0, False, "AGW baseline: two-stream ResNet, non-local blocks, GeM, BNNeck; identity + WRT triplet"),
    ("agw_fgfl", 6, False, "AGW + FGFL: 6 horizontal part features, each with its classifier"),
    ("agw_fgfl_cmimpl", 6, True, "AGW + FGFL + CMIMPL: the paper's model (modality classifiers, cross prediction)"),
):
    register_method(CrossModalityMethod(name, description, {"model": {"parts": parts, "cmimpl": cmimpl}}))
