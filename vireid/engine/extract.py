"""Test-time features: the configured feature of a model for a batch or a whole split."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from vireid.config import ConfigError, ExperimentConfig, InferenceConfig, ModelConfig
from vireid.data.dataset import SplitDataset
from vireid.data.image_folder import ImageFiles, collate_readable
from vireid.data.splits import Split
from vireid.data.transforms import ResizeFilter, inference_transform
from vireid.datasets import dataset_fingerprint, get_dataset
from vireid.evaluation.feature_file import FeatureSet
from vireid.models.network import CrossModalityNet, ModelOutput
from vireid.progress import track

FEATURES = ("global", "parts", "both")


def _combine(output: ModelOutput, config: InferenceConfig) -> torch.Tensor:
    """(B, D) unnormalised test feature: global and/or parts, each block L2-normalised."""
    if config.feature not in FEATURES:
        raise ConfigError(f"test.feature must be one of {', '.join(FEATURES)}, got {config.feature!r}")
    blocks = []
    if config.feature in ("global", "both"):
        blocks.append(F.normalize(output.global_feature if config.after_bn else output.pooled, dim=1))
    if config.feature in ("parts", "both"):
        if output.part_features is None:
            raise ConfigError(
                f"test.feature={config.feature!r} needs a model with parts "
                "(model.parts > 0); this one has none, use test.feature=global"
            )
        parts = output.part_features if config.after_bn else output.part_pooled  # (B, P, d)
        blocks.append(F.normalize(parts, dim=2).flatten(1))
    return torch.cat(blocks, dim=1)


@torch.no_grad()
def batch_features(
    model: CrossModalityNet, images: torch.Tensor, modalities: torch.Tensor | int, config: InferenceConfig
) -> torch.Tensor:
    """(B, D) L2-normalised test features of a batch; with ``config.flip`` averaged with the mirrored images.
    ``modalities``: (B,) values, or one Modality value for a batch of one modality."""
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
    resize_filter: ResizeFilter = "bilinear",
) -> np.ndarray:
    """(N, D) float32 features of every image of ``split``, in order, each resized to (height, width)
    with ``resize_filter`` (``data.resize_filter``)."""
    transform = inference_transform(height, width, resize_filter)
    loader = DataLoader(SplitDataset(split, transform), batch_size=config.batch_size, num_workers=workers)
    model = model.to(device)
    chunks = [
        batch_features(model, images.to(device), modalities.to(device), config).float().cpu()
        for images, _, modalities, _ in track(loader, "extract", "batch", progress)
    ]
    return torch.cat(chunks).numpy()


def extract_image_features(
    encode: Callable[[torch.Tensor], np.ndarray],
    paths: list[str],
    height: int,
    width: int,
    batch_size: int,
    workers: int = 0,
    progress: bool = False,
) -> tuple[np.ndarray, list[int], list[str]]:
    """Features of a user's images, skipping those that cannot be read.

    ``encode`` turns a (B, 3, H, W) batch of normalised images into (B, D)
    features (a network of one modality, or an ONNX Runtime session). Returns
    the (N', D) float32 features of the N' readable images, their indices into
    ``paths``, and one message (naming the path) per skipped image.
    """
    dataset = ImageFiles(paths, inference_transform(height, width))
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_readable)
    chunks, readable, skipped = [], [], []
    for images, indices, reasons in track(loader, "extract", "batch", progress):
        skipped += reasons
        if images is not None:
            chunks.append(np.asarray(encode(images), dtype=np.float32))
            readable += indices
    if not chunks:
        return np.zeros((0, 0), dtype=np.float32), readable, skipped
    return np.concatenate(chunks), readable, skipped


def feature_signature(
    model_config: ModelConfig, test_config: InferenceConfig, height: int, width: int, dimension: int
) -> dict:
    """What makes features comparable: the network's shape and the test-time feature
    (recorded in feature files and indexes, compared before searching)."""
    return {
        "backbone": model_config.backbone,
        "parts": model_config.parts,
        "part_dim": model_config.part_dim if model_config.parts else 0,
        "feature": test_config.feature,
        "after_bn": test_config.after_bn,
        "flip": test_config.flip,
        "height": height,
        "width": width,
        "dimension": dimension,
    }


def weights_fingerprint(model: torch.nn.Module) -> str:
    """16 hex digits of a SHA-256 over every tensor of the model's state (names, shapes, values):
    two models give the same fingerprint only when their weights are the same."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        values = tensor.detach().to("cpu", torch.float64 if tensor.is_floating_point() else torch.int64).contiguous()
        digest.update(f"{name}{tuple(values.shape)}".encode())
        digest.update(values.numpy().tobytes())
    return digest.hexdigest()[:16]


def model_signature(model: CrossModalityNet, config: ExperimentConfig, dimension: int | None = None) -> dict:
    """feature_signature of a network under ``config`` (its dimension, when not given, found by
    describing one blank image), with the fingerprint of its weights and the run's name."""
    if dimension is None:
        blank = torch.zeros(1, 3, config.data.height, config.data.width, device=next(model.parameters()).device)
        dimension = batch_features(model, blank, blank.new_zeros(1, dtype=torch.long), config.test).shape[1]
    signature = feature_signature(config.model, config.test, config.data.height, config.data.width, dimension)
    return {**signature, "weights": weights_fingerprint(model), "run": config.name}


def extract_test_features(
    model: CrossModalityNet, config: ExperimentConfig, device: torch.device | str, progress: bool
) -> FeatureSet:
    """Features of every test image of ``config.data``, with the metadata the feature file records."""
    dataset = get_dataset(config.data.dataset)
    images = dataset.read_test_images(Path(config.data.root), config.data.trial)
    data = config.data
    features = extract_features(
        model, images, config.test, data.height, data.width, device, config.train.workers, progress, data.resize_filter
    )
    metadata = {
        "dataset": config.data.dataset,
        "root": str(Path(config.data.root).resolve()),
        "model": model_signature(model, config, features.shape[1]),
        "data": dataset_fingerprint(config.data.dataset, str(config.data.root)),
    }
    if dataset.one_model_per_trial:
        metadata["trial"] = config.data.trial
    return FeatureSet(features, images, metadata)
