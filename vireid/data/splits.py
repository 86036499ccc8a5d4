"""The common record every dataset reader returns: images with their person id,
camera id and modality, in a fixed order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np

from vireid.modality import Modality


@dataclass(frozen=True)
class Split:
    """An ordered list of images.

    ``paths`` are the image paths (strings) in protocol order; the arrays run
    parallel to them. ``labels`` holds training labels re-indexed 0..K-1 in
    ascending person-id order, or is None for test splits.
    """

    paths: tuple[str, ...]
    person_ids: np.ndarray  # (N,) int64
    camera_ids: np.ndarray  # (N,) int64
    modalities: np.ndarray  # (N,) int8, values of Modality
    labels: np.ndarray | None = None  # (N,) int64 or None

    def __post_init__(self) -> None:
        object.__setattr__(self, "paths", tuple(str(path) for path in self.paths))
        object.__setattr__(self, "person_ids", np.asarray(self.person_ids, dtype=np.int64).reshape(-1))
        object.__setattr__(self, "camera_ids", np.asarray(self.camera_ids, dtype=np.int64).reshape(-1))
        object.__setattr__(self, "modalities", np.asarray(self.modalities, dtype=np.int8).reshape(-1))
        if self.labels is not None:
            object.__setattr__(self, "labels", np.asarray(self.labels, dtype=np.int64).reshape(-1))
        lengths = {len(self.paths), len(self.person_ids), len(self.camera_ids), len(self.modalities)}
        if self.labels is not None:
            lengths.add(len(self.labels))
        if len(lengths) != 1:
            raise ValueError(f"Split fields have different lengths: {sorted(lengths)}")

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def num_identities(self) -> int:
        return int(np.unique(self.person_ids).size)

    def summary(self) -> str:
        """'1152 visible + 1152 infrared images of 72 identities'."""
        counts = " + ".join(
            f"{int(np.sum(self.modalities == modality))} {modality.name.lower()}" for modality in Modality
        )
        return f"{counts} images of {self.num_identities} identities"

    def subset(self, indices: Sequence[int] | np.ndarray) -> "Split":
        """The rows at ``indices``, in that order."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        return Split(
            paths=tuple(self.paths[i] for i in indices),
            person_ids=self.person_ids[indices],
            camera_ids=self.camera_ids[indices],
            modalities=self.modalities[indices],
            labels=None if self.labels is None else self.labels[indices],
        )

    def of_modality(self, modality: Modality) -> "Split":
        """The rows of one modality, order kept."""
        return self.subset(np.flatnonzero(self.modalities == int(modality)))

    @staticmethod
    def concatenate(splits: Sequence["Split"]) -> "Split":
        """The rows of several splits one after another (labels kept only if all have them)."""
        keep_labels = all(split.labels is not None for split in splits)
        return Split(
            paths=tuple(path for split in splits for path in split.paths),
            person_ids=np.concatenate([split.person_ids for split in splits]),
            camera_ids=np.concatenate([split.camera_ids for split in splits]),
            modalities=np.concatenate([split.modalities for split in splits]),
            labels=np.concatenate([split.labels for split in splits]) if keep_labels else None,
        )


class QueryGallery(NamedTuple):
    """Query and gallery of one evaluation trial."""

    query: Split
    gallery: Split


def relabel(person_ids: np.ndarray) -> np.ndarray:
    """Training labels 0..K-1, assigned in ascending person-id order."""
    _, labels = np.unique(np.asarray(person_ids), return_inverse=True)
    return labels.astype(np.int64)


def relabelled(images: Split) -> Split:
    """``images`` with training labels 0..K-1 (relabel of their person ids)."""
    return Split(images.paths, images.person_ids, images.camera_ids, images.modalities, relabel(images.person_ids))
