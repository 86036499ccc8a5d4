"""Test-time features: the configured feature of a model for a batch or a whole split."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from vireid.config import ExperimentConfig
from vireid.data.cache import image_cache
from vireid.data.dataset import SplitDataset
from vireid.data.image_folder import ImageFiles, collate_readable
from vireid.data.resident import held_on
from vireid.data.splits import Split
from vireid.data.transforms import inference_transform, normalised_batch
from vireid.datasets import dataset_fingerprint, get_dataset
from vireid.evaluation.feature_file import FeatureSet
from vireid.method import method_of
from vireid.progress import track
from vireid.signals import stop_if_terminated


@torch.no_grad()
def batch_features(
    model: nn.Module, images: torch.Tensor, modalities: torch.Tensor | int, config: ExperimentConfig
) -> torch.Tensor:
    """(B, D) test features of a batch: the method's embedding ``test.feature``, with ``test.flip``
    the sum of that of the image and of its mirror image; L2-normalised where ``test.distance`` is
    cosine, as they are for dot (DEEN's test.py sums the two views' features and scores their dot
    product). ``modalities``: (B,) values, or one Modality value for a batch of one modality."""
    model.eval()
    method, test = method_of(config), config.test
    features = method.embed(model(images, modalities), test.feature, test)
    if test.flip:
        features = features + method.embed(model(images.flip(3), modalities), test.feature, test)
    return F.normalize(features, dim=1) if test.distance == "cosine" else features


def extract_features(
    model: nn.Module,
    split: Split,
    config: ExperimentConfig,
    device: str | torch.device = "cpu",
    workers: int = 0,
    progress: bool = False,
    decoded: torch.Tensor | None = None,
    decoded_rows: np.ndarray | None = None,
) -> np.ndarray:
    """(N, D) float32 features of every image of ``split``, in order, each resized to data.height x
    data.width with ``data.resize_filter``; or, given ``decoded``, the (M, H, W, 3) uint8 images
    already at that size (HeldTestImages), the split's at ``decoded_rows`` of them (default: all M,
    in order), read from there: the same features, to the bit."""
    data = config.data
    if decoded is None:
        transform = inference_transform(data.height, data.width, data.resize_filter)
        loader = DataLoader(SplitDataset(split, transform), batch_size=config.test.batch_size, num_workers=workers)
    else:
        rows = np.arange(len(decoded)) if decoded_rows is None else decoded_rows
        modalities = torch.as_tensor(np.asarray(split.modalities))
        loader = _decoded_batches(decoded, rows, modalities, config.test.batch_size)
    model = model.to(device)
    chunks = []
    for images, _, modalities, _ in track(loader, "extract", "batch", progress):
        stop_if_terminated()  # a SIGTERM kept while the loader started its workers
        chunks.append(batch_features(model, images.to(device), modalities.to(device), config).float().cpu())
    return torch.cat(chunks).numpy()


def _decoded_batches(
    decoded: torch.Tensor, rows: np.ndarray, modalities: torch.Tensor, batch_size: int
) -> Iterator[tuple[torch.Tensor, None, torch.Tensor, None]]:
    """The loader's batches (images, -, modalities, -) of the decoded images at ``rows``, gathered and
    normalised where they are, a batch at a time."""
    for start in range(0, len(rows), batch_size):
        batch_rows = torch.as_tensor(rows[start : start + batch_size], device=decoded.device)
        yield normalised_batch(decoded[batch_rows]), None, modalities[start : start + batch_size], None


@dataclass(frozen=True)
class HeldTestImages:
    """The test images of a dataset, listed once (and decoded once, with train.cache_dir) for the
    evaluations of a training run."""

    split: Split  # every test image, as read_test_images gives them
    decoded: torch.Tensor | None  # (N, H, W, 3) uint8 at the training size, where evaluated; None: files read


def held_test_images(config: ExperimentConfig, device: torch.device, progress: bool) -> HeldTestImages:
    """``config.data``'s test images; with ``train.cache_dir`` decoded into the decoded-image cache
    (built on first use, reused by later runs) and held on ``device``."""
    data = config.data
    split = get_dataset(data.dataset).read_test_images(Path(data.root), data.trial)
    if not config.train.cache_dir:
        return HeldTestImages(split, None)
    decoded = image_cache(split, data.height, data.width, config.train.cache_dir, progress, data.resize_filter)
    return HeldTestImages(split, held_on(decoded, device))


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
        stop_if_terminated()
        skipped += reasons
        if images is not None:
            chunks.append(np.asarray(encode(images), dtype=np.float32))
            readable += indices
    if not chunks:
        return np.zeros((0, 0), dtype=np.float32), readable, skipped
    return np.concatenate(chunks), readable, skipped


def feature_signature(config: ExperimentConfig, dimension: int) -> dict:
    """What makes features comparable: the network's shape (its method's signature) and the test-time
    feature (recorded in feature files and indexes, compared before searching)."""
    test, data = config.test, config.data
    return {
        **method_of(config).signature(config),
        "feature": test.feature,
        "after_bn": test.after_bn,
        "flip": test.flip,
        "distance": test.distance,
        "height": data.height,
        "width": data.width,
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


def model_signature(model: nn.Module, config: ExperimentConfig, dimension: int | None = None) -> dict:
    """feature_signature of a network under ``config`` (its dimension, when not given, found by
    describing one blank image), with the fingerprint of its weights and the run's name."""
    if dimension is None:
        blank = torch.zeros(1, 3, config.data.height, config.data.width, device=next(model.parameters()).device)
        dimension = batch_features(model, blank, blank.new_zeros(1, dtype=torch.long), config).shape[1]
    signature = feature_signature(config, dimension)
    return {**signature, "weights": weights_fingerprint(model), "run": config.name}


def extract_test_features(
    model: nn.Module,
    config: ExperimentConfig,
    device: torch.device | str,
    progress: bool,
    held: HeldTestImages | None = None,
    rows: np.ndarray | None = None,
) -> FeatureSet:
    """Features of the test images of ``config.data``, with the metadata the feature file records:
    every image, or those at ``rows`` of them (a training run's evaluations: the rows its trials
    score, vireid.evaluation.protocols.scored_rows); listed (and decoded) in ``held`` where given."""
    dataset = get_dataset(config.data.dataset)
    root, trial = Path(config.data.root), config.data.trial
    every_image = held.split if held is not None else dataset.read_test_images(root, trial)
    images = every_image if rows is None else every_image.subset(rows)
    if held is None or held.decoded is None:
        features = extract_features(model, images, config, device, config.train.workers, progress)
    else:
        features = extract_features(
            model, images, config, device, progress=progress, decoded=held.decoded, decoded_rows=rows
        )
    metadata = {
        "dataset": config.data.dataset,
        "root": str(root.resolve()),
        "model": model_signature(model, config, features.shape[1]),
        "data": dataset_fingerprint(config.data.dataset, str(config.data.root)),
    }
    own_trial = dataset.model_trial(trial)
    if own_trial is not None:
        metadata["trial"] = own_trial
    return FeatureSet(features, images, metadata)
