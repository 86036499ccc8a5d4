"""BatchNorm statistics recomputed from training images before a checkpoint is written.

Evaluation runs BatchNorm on its running averages, which training keeps with
momentum 0.1. Early in training, or while the learning rate is high, those
averages trail the network: after 8 steps from random weights 0.9^8 = 43 % of
each is still the initial (mean 0, variance 1). The gap between those averages
and the statistics the network was trained under is small in one layer, but
AGW's non-local blocks (one inter channel, dot-product affinity divided by N)
respond to the cube of their input's scale, so five stacked blocks raise a
factor s to s^243: the paper's model from random weights, 8 steps at 64x32,
reads 10.9 at the stem, 306 after layer1 and inf after layer3 in eval mode,
where training mode (batch statistics) reads 5-30 throughout. Replacing the
running averages by the mean statistics of a few batches of training images,
computed with the current weights (Wu & Johnson 2021, "Rethinking 'Batch' in
BatchNorm", call it precise BN), closes the gap. Training itself never reads
the running averages, so the trained weights are unchanged.
"""

from __future__ import annotations

import contextlib
from typing import Iterable

import torch
from torch import nn


@torch.no_grad()
def recompute_batch_norm_statistics(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],  # ((B, 3, H, W) images, (B,) modalities) on the device
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> int:
    """Set every BatchNorm layer's running mean and variance to the mean of its batch statistics
    over ``batches``; returns the number of batches seen (0: the running averages are untouched).
    The rest of the model runs in eval mode: nothing else (such as the CMIMPL classifiers' slow
    copies) changes."""
    layers = [module for module in model.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    saved = [(layer.momentum, {name: buffer.clone() for name, buffer in layer.named_buffers()}) for layer in layers]
    was_training = model.training
    model.eval()
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # a cumulative average over the batches
        layer.train()
    seen = 0
    try:
        for images, modalities in batches:
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            autocast = (
                torch.autocast(images.device.type, dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext()
            )
            with autocast:
                model(images, modalities)
            seen += 1
    finally:
        for layer, (momentum, buffers) in zip(layers, saved):
            layer.momentum = momentum
            if not seen:
                for name, buffer in layer.named_buffers():
                    buffer.copy_(buffers[name])
        model.train(was_training)
    return seen
