"""AGW and the paper's additions to it, as methods (rows of the paper's ablation).

==================  =====================================================
``agw``             AGW baseline: two-stream ResNet, non-local, GeM, BNNeck; ID + WRT
``agw_fgfl``        + FGFL: 6 horizontal part features, each with its classifier
``agw_fgfl_cmimpl`` + CMIMPL: modality-specific classifiers with cross prediction (the paper's model)
==================  =====================================================

All three are one network (vireid.models.network) and one loss (vireid.losses.ReIDLoss) with
different switches; ``model.parts`` and ``model.cmimpl`` set in a config win over the method's
values. Their keys: AGWModelConfig (vireid.models.network) and AGWLossConfig
(vireid.losses.composite). CAJ (vireid.methods.caj) trains the same network with its own recipe.

Test embeddings: ``global`` (the BNNeck feature, or the GeM feature before it with
``test.after_bn: false``), ``parts`` (the part features, each L2-normalised, concatenated) and
``both`` (global and parts, each block L2-normalised), the last two where the network has parts.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vireid.config import ConfigError, ExperimentConfig, InferenceConfig, TrainConfig
from vireid.losses import ReIDLoss
from vireid.losses.composite import AGWLossConfig
from vireid.method import Method, NameRules, ParameterGroup, ReferenceFormat, register_method
from vireid.models.backbone import REFERENCE_RESNETS, reference_backbone_names
from vireid.models.network import AGWModelConfig, CrossModalityNet, ModelOutput, build_model


class CrossModalityMethod(Method):
    """A method of the two-stream network and ReIDLoss; its variants differ in their recipe (``defaults``)."""

    model_config = AGWModelConfig
    loss_config = AGWLossConfig

    def __init__(
        self,
        name: str,
        description: str,
        defaults: dict[str, dict[str, Any]],
        reference_formats: tuple[ReferenceFormat, ...] = (),
    ):
        self.name, self.description, self.defaults = name, description, defaults
        self.reference_formats = reference_formats

    def build_model(self, config: ExperimentConfig, num_classes: int, load_weights: bool = True) -> CrossModalityNet:
        """The two-stream network of ``config.model`` (vireid.models.network.build_model)."""
        return build_model(config.model, num_classes, load_weights)

    def build_loss(self, config: ExperimentConfig, num_classes: int, model: nn.Module) -> ReIDLoss:
        """ReIDLoss of ``config.loss``."""
        return ReIDLoss(config.loss)

    def loss_terms(self, config: ExperimentConfig) -> tuple[str, ...]:
        """The terms id and triplet, then part_id and part_triplet with parts, then msid and cmp with CMIMPL."""
        parts = ("part_id", "part_triplet") if config.model.parts else ()
        return ("id", "triplet", *parts, *(("msid", "cmp") if config.model.cmimpl else ()))

    def parameter_groups(self, model: CrossModalityNet, loss: nn.Module, train: TrainConfig) -> list[ParameterGroup]:
        """The pretrained backbone at ``train.backbone_lr``, every new layer (heads, parts...) at ``train.lr``."""
        backbone = [p for p in model.backbone.parameters() if p.requires_grad]
        backbone_ids = {id(p) for p in backbone}
        new_layers = [p for p in model.parameters() if p.requires_grad and id(p) not in backbone_ids]
        return [ParameterGroup("backbone", backbone, train.backbone_lr), ParameterGroup("new", new_layers, train.lr)]

    def embeddings(self, config: ExperimentConfig) -> dict[str, str]:
        """``global``, and ``parts`` and ``both`` where the network has parts."""
        embeddings = {"global": "the global feature (after the BNNeck; test.after_bn=false: before it)"}
        if config.model.parts:
            embeddings["parts"] = f"the {config.model.parts} part features, each L2-normalised, concatenated"
            embeddings["both"] = "global and parts, each block L2-normalised, concatenated"
        return embeddings

    def embed(self, output: ModelOutput, name: str, test: InferenceConfig) -> torch.Tensor:
        """The (B, D) embedding ``name``: its blocks, each L2-normalised, concatenated."""
        blocks = []
        if name in ("global", "both"):
            blocks.append(F.normalize(output.global_feature if test.after_bn else output.pooled, dim=1))
        if name in ("parts", "both"):
            parts = output.part_features if test.after_bn else output.part_pooled  # (B, P, d)
            blocks.append(F.normalize(parts, dim=2).flatten(1))
        return torch.cat(blocks, dim=1)

    def check(self, config: ExperimentConfig) -> None:
        """A ConfigError where ``test.feature`` asks for parts of a network without parts."""
        if config.test.feature in ("parts", "both") and config.model.parts == 0:
            raise ConfigError(
                f"test.feature: {config.test.feature!r} needs a model with parts (model.parts > 0); "
                "this one has none, use test.feature=global"
            )

    def signature(self, config: ExperimentConfig) -> dict[str, Any]:
        """The backbone, the number of parts and the part features' dimension."""
        model = config.model
        return {"backbone": model.backbone, "parts": model.parts, "part_dim": model.part_dim if model.parts else 0}

    def describe(self, model: CrossModalityNet, config: ExperimentConfig) -> str:
        """The network's own description (CrossModalityNet.describe)."""
        return model.describe()

    def reference_names(self, format_name: str, config: ExperimentConfig) -> NameRules:
        """The names of the reference's ``embed_net`` (agw_reference_names)."""
        return agw_reference_names()


def agw_reference_names() -> NameRules:
    """The names of mangye16/Cross-Modal-Re-ID-baseline ``model.py``'s ``embed_net`` on vireid's AGW network.

    The reference is built with no_local='on', gm_pool='on' (ICCV21_CAJ/model.py is the same file). It holds
    three ResNet-50s: of ``visible_module.visible`` and ``thermal_module.thermal`` its forward uses
    the stems (lines 103-106, 120-123), of ``base_resnet.base`` layers 1-4 (lines 138-141). Its
    non-local blocks ``NL_2`` and ``NL_3`` follow the bottlenecks ``NL_2_idx`` = [2, 3] of layer2 and
    ``NL_3_idx`` = [3, 4, 5] of layer3 (lines 155-167): vireid's ``layer2_2`` ... ``layer3_5``, whose
    ``project`` is the reference's ``W`` and whose ``g`` is one convolution (the reference's ``g.0``).

    Returns:
        The rules that rename the reference's tensors.
    """
    non_local = [
        (f"NL_{stage}.{position}.{theirs}", f"backbone.non_local.layer{stage}_{index}.{ours}")
        for stage, indices in ((2, (2, 3)), (3, (3, 4, 5)))
        for position, index in enumerate(indices)
        for theirs, ours in (("g.0.", "g."), ("theta.", "theta."), ("phi.", "phi."), ("W.", "project."))
    ]
    head = [("bottleneck.", "global_head.bottleneck."), ("classifier.", "global_head.classifier.")]
    return NameRules(
        renamed=(*reference_backbone_names(), *non_local, *head),
        ignored=REFERENCE_RESNETS,
        classifier="global_head.classifier.weight",
    )


AGW_FORMAT = ReferenceFormat(
    "agw",
    "AGW: mangye16/Cross-Modal-Re-ID-baseline train.py's *_best.t (its README links a SYSU-MM01 all-search model)",
    "{dataset}_agw",
)


for name, parts, cmimpl, description in (
    ("agw", 0, False, "AGW baseline: two-stream ResNet, non-local blocks, GeM, BNNeck; identity + WRT triplet"),
    ("agw_fgfl", 6, False, "AGW + FGFL: 6 horizontal part features, each with its classifier"),
    ("agw_fgfl_cmimpl", 6, True, "AGW + FGFL + CMIMPL: the paper's model (modality classifiers, cross prediction)"),
):
    formats = (AGW_FORMAT,) if name == "agw" else ()
    register_method(CrossModalityMethod(name, description, {"model": {"parts": parts, "cmimpl": cmimpl}}, formats))
