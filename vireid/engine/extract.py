"""Test-time features: the configured feature of a model for a batch or a whole split."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from vireid.config import InferenceConfig
from vireid.data.dataset import SplitDataset
from vireid.data.splits import Split
from vireid.data.transforms import inference_transform
from vireid.models.network import CrossModalityNet, ModelOutput

FEATURES = ("global", "parts", "both")


def _combine(output: ModelOutput, config: InferenceConfig) -> torch.Tensor:
    """(B, D) unnormalised test feature: global and/or parts, each block L2-normalised."""
    if config.feature not in FEATURES:
        raise ValueError(f"test.feature must be one of {', '.join(FEATURES)}, got {config.feature!r}")
    blocks = []
    if config.feature in ("global", "both"):
        blocks.append(F.normalize(output.global_feature if config.after_bn else output.pooled, dim=1))
    if config.feature in ("parts", "both"):
        if output.part_features is None:
            raise ValueError(f"test.feature={config.feature!r} needs a model with parts (model.parts > 0)")
        parts = output.part_features if config.after_bn else output.part_pooled  # (B, P, d)
        blocks.append(F.normalize(parts, dim=2).flatten(1))
    return torch.cat(blocks, dim=1)


@torch.no_grad()
def batch_features(model: CrossModalityNet, images: torch.Tensor, modalities: torch.Tensor, config: InferenceConfig) -> torch.Tensor:
    """(B, D) L2-normalised test features of a batch; with ``config.flip`` averaged with the mirrored images."""
    model.eval()
    features = _combine(model(images, modalities), config)
    if config.flip:
        features = features + _combine(model(images.flip(3), modalities), config)
    return F.normalize(features, dim=1)


def extract_features(
    model: CrossModalityNet,
    split: Split,
    config: InferenceConfig,
    height: int,
    width: int,
    device: str | torch.device = "cpu",
    workers: int = 0,
    progress: bool = False,
) -> np.ndarray:
    """(N, D) float32 features of every image of ``split``, in order."""
    from tqdm import tqdm

    loader = DataLoader(SplitDataset(split, inference_transform(height, width)), batch_size=config.batch_size, num_workers=workers)
    model = model.to(device)
    chunks = []
    for images, _, modalities, _ in tqdm(loader, desc="extract", unit="batch", disable=None if progress else True):
        chunks.append(batch_features(model, images.to(device), modalities.to(device), config).float().cpu())
    return torch.cat(chunks).numpy()
