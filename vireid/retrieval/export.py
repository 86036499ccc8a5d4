"""ONNX export of the test-time feature, one file per modality, checked with ONNX Runtime.

A method's network may route each image by its modality (the two-stream
backbone selects rows for each stem: data-dependent shapes, which an exported
graph cannot hold), so an ONNX file computes the feature of ONE modality, the
network called with that modality for the whole batch: ``images (B, 3, H, W) float32``,
normalised with the ImageNet mean/std, to ``features (B, D)`` (L2-normalised where
``test.distance`` is cosine, as they are; raw where it is dot), with a dynamic batch
size B. The file's metadata records the input size, the normalisation, the modality
and the feature signature (``vireid.*`` keys).
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vireid.atomic import atomic_path
from vireid.config import ExperimentConfig
from vireid.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from vireid.engine.extract import batch_features, model_signature
from vireid.modality import Modality
from vireid.retrieval.encoders import INPUT_NAME, OUTPUT_NAME, onnx_encoder


class FeatureModel(nn.Module):
    """(B, 3, H, W) normalised images of one modality -> (B, D) test features (batch_features')."""

    def __init__(self, model: nn.Module, modality: Modality, config: ExperimentConfig):
        super().__init__()
        self.model = model.eval()
        self.modality = int(modality)
        self.config = config

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, D) test features of (B, 3, H, W) normalised images."""
        return batch_features(self.model, images, self.modality, self.config)


def export_onnx(model: nn.Module, config: ExperimentConfig, modality: Modality, out: str | Path) -> Path:
    """Write the ONNX file of ``modality``'s test feature to ``out`` (atomically).

    Args:
        model: The network; it is moved to the CPU.
        config: The experiment's config.
        modality: The modality of the images the file takes.
        out: The file to write.

    Returns:
        The path written.
    """
    feature_model = FeatureModel(model.cpu(), modality, config).eval()
    example = torch.randn(2, 3, config.data.height, config.data.width)
    exporter_log = io.StringIO()
    with contextlib.redirect_stdout(exporter_log):
        program = torch.onnx.export(
            feature_model,
            (example,),
            None,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes={"images": {0: torch.export.Dim("batch")}},  # FeatureModel.forward's argument
            dynamo=True,
        )
    signature = model_signature(feature_model.model, config)
    program.model.metadata_props.update(
        {
            "vireid.modality": Modality(modality).name.lower(),
            "vireid.input": json.dumps(
                {"height": config.data.height, "width": config.data.width, "mean": IMAGENET_MEAN, "std": IMAGENET_STD}
            ),
            "vireid.model": json.dumps(signature, sort_keys=True),
        }
    )
    with atomic_path(out) as temporary:
        program.save(temporary, external_data=False)
    return Path(out)


def max_abs_difference(
    path: str | Path,
    model: nn.Module,
    config: ExperimentConfig,
    modality: Modality,
    batch: int = 3,
    seed: int = 0,
) -> float:
    """Largest |ONNX Runtime - PyTorch| over the features of a batch of random images.

    Args:
        path: The ONNX file.
        model: The network it was exported from; it is moved to the CPU.
        config: The experiment's config.
        modality: The file's modality.
        batch: The number of random images.
        seed: The seed of the random images.

    Returns:
        The largest absolute difference.
    """
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, config.data.height, config.data.width, generator=generator)
    expected = batch_features(model.cpu(), images, int(modality), config).numpy()
    return float(np.abs(onnx_encoder(path, modality).encode(images) - expected).max())
