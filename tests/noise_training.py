"""The tiny model trained on batches of noise: 4 identities x 2 images in each modality at 32x16,
the visible half first (as the samplers lay batches out), from torch seed 0."""

from __future__ import annotations

from typing import Iterable, Iterator

import torch

from vireid.config import ExperimentConfig, TrainConfig
from vireid.engine.step import ForwardAndLoss, train_step
from vireid.engine.trainer import build_optimizers
from vireid.method import method_of
from vireid.modality import ModalityLayout

LABELS = torch.arange(16) % 8 // 2  # (16,) identities 0-3, two images each in each modality
LAYOUT = ModalityLayout.of(torch.tensor([0] * 8 + [1] * 8))


def noise_batches(seed: int, count: int) -> Iterator[torch.Tensor]:
    """``count`` batches of (16, 3, 32, 16) Gaussian noise, drawn one after another from one generator of ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(count):
        yield torch.randn(16, 3, 32, 16, generator=generator)


def train_on_noise(
    config: ExperimentConfig, train: TrainConfig, batches: Iterable[torch.Tensor]
) -> tuple[torch.nn.Module, list[torch.optim.Optimizer], list[dict[str, float]]]:
    """``config``'s network for 4 classes, one training step with ``train``'s optimizers per batch of
    ``batches``: (the model, its optimizers, each step's loss terms)."""
    method = method_of(config)
    torch.manual_seed(0)
    model = method.build_model(config, 4, load_weights=False).train()
    loss = method.build_loss(config, 4, model)
    optimizers = build_optimizers(method.parameter_groups(model, loss, train), train)
    scaler, forward = torch.amp.GradScaler("cpu", enabled=False), ForwardAndLoss(model, loss)
    history = [
        {name: value.item() for name, value in train_step(forward, optimizers, scaler, images, LABELS, LAYOUT).items()}
        for images in batches
    ]
    return model, optimizers, history
