"""Training batches without a loader: the decoded training set kept on the training device.

With ``train.augment_on: device`` a batch is only bytes gathered from the decoded-image cache
(vireid.data.cache) and augmented on the device (vireid.data.device_augment). Where the whole cache
fits on the device (SYSU-MM01 at 288x144 is about 3 GB of uint8), it is uploaded once and every
batch is gathered there by index: no worker process, no host-to-device copy per step.
``train.resident`` chooses (auto: on a GPU, when the set takes at most a quarter of its free memory).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from vireid.config import ConfigError, TrainConfig
from vireid.data.sampler import ViewBatchSampler
from vireid.data.splits import Split

UPLOAD_ROWS = 4096
"""Images copied to the device at a time (about 0.5 GB at 288x144)."""

RESIDENT_SHARE = 0.25
"""The most of a GPU's free memory that train.resident auto lets the decoded training set take."""


def resident_on(config: TrainConfig, decoded: np.ndarray | None, device: torch.device) -> bool:
    """Whether the decoded set lives on ``device`` for this run (``train.resident``)."""
    if config.resident == "never" or (config.resident == "auto" and device.type != "cuda"):
        return False
    if config.augment_on != "device":
        if config.resident == "always":
            raise ConfigError(
                "train.resident: always gathers batches of decoded images on the device; it needs "
                "train.augment_on: device (and train.cache_dir)"
            )
        return False
    if config.resident == "always":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return decoded.nbytes <= RESIDENT_SHARE * free


def held_on(decoded: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """The (N, H, W, 3) uint8 images of a decoded-image cache as a tensor on ``device``, copied out of
    the read-only map a slice at a time (no second copy of the whole set in host memory)."""
    held = torch.empty(decoded.shape, dtype=torch.uint8, device=device)
    for start in range(0, len(decoded), UPLOAD_ROWS):
        held[start : start + UPLOAD_ROWS] = torch.from_numpy(np.array(decoded[start : start + UPLOAD_ROWS]))
    return held


class ResidentBatches:
    """The batches of ``sampler`` gathered from ``decoded`` images held on ``device``.

    Yields what the training loader yields with ``train.augment_on: device``: (B, H, W, 3) uint8
    images (here already on the device), (B,) labels and (B,) modalities on the host, (B,) rows;
    and leaves ``generator`` as the loader does.
    """

    def __init__(
        self,
        decoded: np.ndarray,
        split: Split,
        sampler: ViewBatchSampler,
        generator: torch.Generator,
        device: torch.device,
    ):
        self.generator = generator  # the loader's: the device augmentation draws from it too
        self.images = held_on(decoded, device)  # (N, H, W, 3) uint8
        self.labels = torch.as_tensor(np.asarray(split.labels), dtype=torch.int64)
        self.modalities = torch.as_tensor(np.asarray(split.modalities), dtype=torch.int64)
        self.sampler = sampler

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
        # A DataLoader draws its workers' base seed from its generator as an epoch's iteration begins
        # (torch/utils/data/dataloader.py, _BaseDataLoaderIter.__init__): the same draw here leaves
        # the generator where the loader leaves it, so the device augmentation draws the loader
        # path's offsets and flips and both paths train to the same numbers.
        torch.empty((), dtype=torch.int64).random_(generator=self.generator)
        for keys in self.sampler:
            rows = torch.tensor([row for row, _ in keys])  # every view of a row is the same bytes
            yield self.images[rows.to(self.images.device)], self.labels[rows], self.modalities[rows], rows
