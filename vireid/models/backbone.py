"""Two-stream ResNet: a stem per modality, a shared body, AGW's non-local blocks.

The stem (conv1, bn1, relu, maxpool) is separate for visible and infrared
images; layer1..layer4 are shared. Layer4 keeps stride 1 (an 18x9 map for a
288x144 input). Non-local blocks follow the last 2 bottlenecks of layer2 and
the last 3 of layer3. Only the modules the forward pass uses exist, so the
parameter count is that of the network that runs.
"""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import torch
import torchvision
from torch import nn

from vireid.errors import UserError
from vireid.modality import ModalityLayout, modality_layout
from vireid.models.non_local import NonLocalBlock
from vireid.serialization import read_torch_file

DEPTHS = ("resnet50", "resnet18")
STAGES = ("layer1", "layer2", "layer3", "layer4")
NON_LOCAL_BLOCKS = {"layer2": 2, "layer3": 3}
"""How many of the last blocks of a stage are followed by a non-local block (AGW)."""


class WeightsError(UserError):
    """A pretrained-weights file that is missing, unreadable or of another architecture."""


REFERENCE_RESNETS = ("visible_module.visible.", "thermal_module.thermal.", "base_resnet.base.")
"""The two-stream layout of the reference repositories (AGW's model.py, which CAJ's and DEEN's keep):
three whole ResNets under these names, of which the forward uses the stems of the first two (visible,
thermal) and the stages of the third; every other tensor of them is an unused copy."""


def reference_backbone_names(stages: int = 4) -> list[tuple[str, str]]:
    """(reference prefix, network prefix) pairs of a two-stream backbone ``backbone`` ending at stage
    ``stages``: each modality's stem from its ResNet, the stages from the shared one."""
    visible, thermal, shared = REFERENCE_RESNETS
    stems = [
        (f"{module}{part}.", f"backbone.stems.{modality}.{part}.")
        for modality, module in enumerate((visible, thermal))
        for part in ("conv1", "bn1")
    ]
    return stems + [(f"{shared}{name}.", f"backbone.{name}.") for name in STAGES[:stages]]


def stage_channels(stage: nn.Sequential) -> int:
    """The channels a ResNet stage outputs (its last block's last BatchNorm)."""
    last = stage[-1]
    return (last.bn3 if hasattr(last, "bn3") else last.bn2).num_features


class TwoStreamResNet(nn.Module):
    def __init__(
        self,
        depth: str = "resnet50",
        last_stride: int = 1,
        non_local: bool = True,
        non_local_inter_channels: str = "one",
        stages: int = 4,
    ):
        """``stages``: how many of layer1..layer4 the network runs (3: it ends at layer3, and holds no layer4)."""
        super().__init__()
        if depth not in DEPTHS:
            raise UserError(f"model.backbone: expected one of {', '.join(DEPTHS)}, got {depth!r}")
        base = getattr(torchvision.models, depth)(weights=None)
        stem = nn.Sequential()
        stem.add_module("conv1", base.conv1)
        stem.add_module("bn1", base.bn1)
        stem.add_module("relu", base.relu)
        stem.add_module("maxpool", base.maxpool)
        self.stems = nn.ModuleList([stem, copy.deepcopy(stem)])  # indexed by Modality
        self.layer1, self.layer2, self.layer3 = base.layer1, base.layer2, base.layer3
        if stages == 4:
            self.layer4 = base.layer4
        if stages == 4 and last_stride == 1:
            first = self.layer4[0]
            (first.conv2 if hasattr(first, "conv3") else first.conv1).stride = (1, 1)
            first.downsample[0].stride = (1, 1)
        self.non_local = nn.ModuleDict()
        if non_local:
            for stage_name, count in NON_LOCAL_BLOCKS.items():
                stage = getattr(self, stage_name)
                channels = stage_channels(stage)
                inter = 1 if non_local_inter_channels == "one" else channels // 2
                for index in range(max(0, len(stage) - count), len(stage)):
                    self.non_local[f"{stage_name}_{index}"] = NonLocalBlock(channels, inter)
        self.stage_names = STAGES[:stages]
        self.out_channels = stage_channels(getattr(self, self.stage_names[-1]))
        self.depth = depth

    def _stage(self, name: str, x: torch.Tensor) -> torch.Tensor:
        for index, block in enumerate(getattr(self, name)):
            x = block(x)
            key = f"{name}_{index}"
            if key in self.non_local:
                x = self.non_local[key](x)
        return x

    def forward(self, images: torch.Tensor, modalities: torch.Tensor | ModalityLayout | int) -> torch.Tensor:
        """(B, 3, H, W) images and their (B,) modalities -> (B, C, H/16, W/16) feature map.

        ``modalities`` as a ModalityLayout routes each modality's rows by slicing, without
        reading the device; as one int, every image is of that modality (no routing: what
        an exported graph needs).
        """
        return self._body(self.stem(images, modalities))

    def stem(self, images: torch.Tensor, modalities: torch.Tensor | ModalityLayout | int) -> torch.Tensor:
        """(B, 3, H, W) images -> (B, 64, H/4, W/4): each through the stem of its modality, in batch order.

        Each stem sees all of its modality's rows at once (its BatchNorm's statistics are theirs).
        """
        if isinstance(modalities, int):
            return self.stems[modalities](images)
        layout = modality_layout(modalities)
        return layout.put_back(
            {modality: self.stems[modality](layout.take(images, modality)) for modality in layout.modalities()}
        )

    def _body(self, x: torch.Tensor) -> torch.Tensor:
        """The shared layers: stem output -> (B, C, H/16, W/16) feature map."""
        x = self.layer1(x)
        x = self._stage("layer2", x)
        x = self._stage("layer3", x)
        return self.layer4(x)

    def torchvision_names(self) -> dict[str, str]:
        """Our parameter/buffer name -> the torchvision ResNet name it is initialised from."""
        names = {}
        for name in self.state_dict():
            if name.endswith("num_batches_tracked"):
                continue  # a counter, absent from older torchvision files
            if name.startswith("stems."):
                names[name] = name.split(".", 2)[2]  # stems.<m>.conv1.weight -> conv1.weight
            elif name.startswith("layer"):
                names[name] = name
        return names

    def load_pretrained(self, source: str) -> None:
        """Initialise from ImageNet weights: ``"imagenet"`` (torchvision's weights API,
        downloads when online), ``"none"``, or the path of a torchvision state-dict file."""
        if source == "none":
            return
        state, origin = imagenet_state_dict(self.depth, source)
        own = self.state_dict()
        names = self.torchvision_names()
        missing = sorted({theirs for theirs in names.values() if theirs not in state})
        wrong_shape = [
            f"{theirs}: file {tuple(state[theirs].shape)}, model {tuple(own[ours].shape)}"
            for ours, theirs in names.items()
            if theirs in state and state[theirs].shape != own[ours].shape
        ]
        if missing or wrong_shape:
            details = []
            if missing:
                details.append(f"{len(missing)} tensors missing (e.g. {', '.join(missing[:3])})")
            if wrong_shape:
                details.append(f"{len(wrong_shape)} of another shape (e.g. {'; '.join(wrong_shape[:2])})")
            raise WeightsError(f"{origin}: expected a torchvision {self.depth} state dict; " + ", ".join(details))
        self.load_state_dict({ours: state[theirs] for ours, theirs in names.items()}, strict=False)


def imagenet_state_dict(depth: str, source: str) -> tuple[dict[str, torch.Tensor], str]:
    """The torchvision ResNet ``depth``'s ImageNet state dict and where it was read: ``source``
    ``"imagenet"`` (torchvision's weights API, downloading when online; a cached file that would run
    code is refused) or the path of a state-dict file. Read without running code; a WeightsError says
    what went wrong. For every network built on a torchvision ResNet, plugins' included."""
    if source != "imagenet":
        return _read_state_dict(Path(source)), source
    weights = torchvision.models.get_model_weights(depth).IMAGENET1K_V1
    try:
        state = weights.get_state_dict(progress=True, check_hash=True, weights_only=True)
    except pickle.UnpicklingError:  # a file in torch's download cache that would run code: nothing ran
        raise WeightsError(
            f"model.pretrained=imagenet: refused the cached ImageNet weights of {depth} in "
            f"{Path(torch.hub.get_dir()) / 'checkpoints'}: the file holds more than tensors (reading it "
            f"could run any code); delete it to download it again"
        ) from None
    except OSError as error:  # URLError, connection and SSL errors: no network, or a blocked one
        raise WeightsError(
            f"model.pretrained=imagenet: the ImageNet weights of {depth} could not be downloaded "
            f"({error}); give a local copy with --pretrained FILE (made where the network is reachable: "
            f"torch.save(torchvision.models.{depth}(weights='IMAGENET1K_V1').state_dict(), FILE)) "
            f"or train from scratch with --set model.pretrained=none"
        ) from error
    return state, f"torchvision {depth} {weights}"


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    state = read_torch_file(path, "a torchvision state dict saved with torch.save", WeightsError)
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise WeightsError(f"{path}: expected a state dict (parameter name -> tensor), found {type(state).__name__}")
    return state
