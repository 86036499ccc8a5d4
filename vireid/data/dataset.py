"""A torch Dataset over a Split: image tensor, label (or person id), modality, row index."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from vireid.data.images import load_image
from vireid.data.splits import Split


class SplitDataset(Dataset):
    """``transform``: one for every image, or per modality one per view (vireid.data.transforms.
    training_views), an item then being asked for as (row, view). ``decoded``: optional (N, H, W, 3)
    uint8 images of the split (vireid.data.cache), used instead of decoding the files. Without a
    ``transform`` the decoded image itself is returned as an (H, W, 3) uint8 tensor, for
    augmentation on the device."""

    def __init__(
        self,
        split: Split,
        transform: Callable | Mapping[int, Sequence[Callable]] | None,
        decoded: np.ndarray | None = None,
    ):
        if transform is None and decoded is None:
            raise ValueError("SplitDataset needs a transform, or decoded images to return as they are")
        self.split = split
        self.transform = transform
        self.decoded = decoded
        self.targets = split.labels if split.labels is not None else split.person_ids

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int, int, int]:
        index, view = key if isinstance(key, tuple) else (key, 0)
        modality = int(self.split.modalities[index])
        transform = self.transform[modality][view] if isinstance(self.transform, Mapping) else self.transform
        if transform is None:
            image = torch.from_numpy(np.array(self.decoded[index]))  # (H, W, 3) uint8, copied out of the map
        elif self.decoded is not None:
            image = transform(Image.fromarray(np.asarray(self.decoded[index])))
        else:
            image = transform(load_image(self.split.paths[index]))
        return image, int(self.targets[index]), modality, index
