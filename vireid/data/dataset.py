"""A torch Dataset over a Split: image tensor, label (or person id), modality, row index."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from vireid.data.images import load_image
from vireid.data.splits import Split


class SplitDataset(Dataset):
    """``decoded``: optional (N, H, W, 3) uint8 images of the split (vireid.data.cache),
    used instead of decoding the files."""

    def __init__(self, split: Split, transform: Callable, decoded: np.ndarray | None = None):
        self.split = split
        self.transform = transform
        self.decoded = decoded
        self.targets = split.labels if split.labels is not None else split.person_ids

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int, int]:
        source = Image.fromarray(np.asarray(self.decoded[index])) if self.decoded is not None else load_image(self.split.paths[index])
        image = self.transform(source)
        return image, int(self.targets[index]), int(self.split.modalities[index]), index
