"""A torch Dataset over a Split: image tensor, label (or person id), modality, row index."""
from __future__ import annotations

from typing import Callable

import torch
from torch.utils.data import Dataset

from vireid.data.images import load_image
from vireid.data.splits import Split


class SplitDataset(Dataset):
    def __init__(self, split: Split, transform: Callable):
        self.split = split
        self.transform = transform
        self.targets = split.labels if split.labels is not None else split.person_ids

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int, int]:
        image = self.transform(load_image(self.split.paths[index]))
        return image, int(self.targets[index]), int(self.split.modalities[index]), index
