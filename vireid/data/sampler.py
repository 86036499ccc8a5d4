"""Identity-balanced cross-modality batches: P identities x (K visible + K infrared) images.

Two draws (``train.sampler``):

``balanced``     vireid's: the identities are taken from successive random permutations, so
                 every identity appears equally often in an epoch; an identity's images are
                 drawn without replacement (with replacement only when it has fewer than K).
                 ceil(N / (P x K)) batches an epoch.
``independent``  the reference's (mangye16/Cross-Modal-Re-ID-baseline ``utils.py`` IdentitySampler,
                 lines 73-78 at commit e817a26; the same in ``ICCV21_CAJ/utils.py`` and ZYK100/LLCM
                 ``AGW/utils.py``): every batch draws its P identities afresh, without replacement
                 within the batch, and each identity's K images per modality with replacement.
                 int(N / (P x K)) + 1 batches an epoch (its line 74).

N is the image count of the larger modality (the reference's ``np.maximum(len(train_color_label),
len(train_thermal_label))``, line 73).
"""

from __future__ import annotations

import math
from typing import Iterator, Literal

import numpy as np
from torch.utils.data import Sampler

from vireid.errors import ConfigError
from vireid.modality import Modality

Draw = Literal["balanced", "independent"]


class CrossModalityBatchSampler(Sampler[list[int]]):
    """Yields batches of row indices: for each of ``identities`` labels, ``instances``
    visible and ``instances`` infrared rows, drawn as ``draw`` says (module docstring).
    Labels with rows of one modality only are never drawn (the dataset readers warn of them,
    naming their person ids). One epoch has the draw's number of batches (or ``num_batches``). Every draw comes
    from ``seed`` and the epoch (``set_epoch``), so a run is reproducible and a resumed
    one draws what the uninterrupted one would have.

    Distributed: every rank draws the same sequence of batches and takes every
    ``world_size``-th one from its ``rank``, so the ranks' batches are disjoint
    and together are the single-process epoch.
    """

    def __init__(
        self,
        labels: np.ndarray,
        modalities: np.ndarray,
        identities: int = 8,
        instances: int = 4,
        seed: int = 0,
        num_batches: int = 0,
        rank: int = 0,
        world_size: int = 1,
        draw: Draw = "balanced",
    ):
        labels, modalities = np.asarray(labels), np.asarray(modalities)
        self.rows = {
            modality: {
                int(label): np.flatnonzero((labels == label) & (modalities == modality)) for label in np.unique(labels)
            }
            for modality in (Modality.VISIBLE, Modality.INFRARED)
        }
        self.labels = np.array(
            sorted(label for label in np.unique(labels) if all(self.rows[m][int(label)].size for m in self.rows))
        )
        if self.labels.size < identities:
            one_modality = np.unique(labels).size - self.labels.size
            left_out = f" ({one_modality} more have images of one modality only)" if one_modality else ""
            raise ConfigError(
                f"train.identities_per_batch: a batch needs {identities} identities with images of "
                f"both modalities, the training data have {self.labels.size}{left_out}"
            )
        self.identities, self.instances, self.seed, self.epoch, self.draw = identities, instances, seed, 0, draw
        largest_modality = max(int((modalities == m).sum()) for m in (Modality.VISIBLE, Modality.INFRARED))
        total = num_batches or batches_per_epoch(largest_modality, identities * instances, draw)
        self.rank, self.world_size = rank, world_size
        self.total_batches = math.ceil(total / world_size) * world_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.total_batches // self.world_size

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        chosen_identities = self._identities(rng)
        for position in range(self.total_batches):
            chosen = next(chosen_identities)
            batch = []
            for modality in (Modality.VISIBLE, Modality.INFRARED):
                for label in chosen:
                    rows = self.rows[modality][int(label)]
                    replace = self.draw == "independent" or rows.size < self.instances
                    batch += rng.choice(rows, self.instances, replace=replace).tolist()
            if position % self.world_size == self.rank:
                yield batch

    def _identities(self, rng: np.random.Generator) -> Iterator[np.ndarray]:
        """The labels of each batch in turn, never one twice in a batch."""
        if self.draw == "independent":
            while True:
                yield rng.choice(self.labels, self.identities, replace=False)
        order = self.labels[:0]
        while True:
            if order.size < self.identities:  # a fresh permutation
                order = rng.permutation(self.labels)
            chosen, order = order[: self.identities], order[self.identities :]
            yield chosen


def batches_per_epoch(images: int, images_per_batch: int, draw: Draw) -> int:
    """Batches in an epoch over ``images`` (the larger modality's count) with ``draw``:
    enough to cover them (balanced), or the reference's int(N / (P x K)) + 1 (independent),
    one more than that whenever N is a multiple of P x K."""
    if draw == "independent":
        return images // images_per_batch + 1
    return math.ceil(images / images_per_batch)


class ViewBatchSampler(Sampler[list[tuple[int, int]]]):
    """The batches of ``sampler`` with each image asked for once per view of its modality
    (``views``: modality -> number of views), as (row, view) keys: every image's view 0 in the
    sampler's order, then the view-1 keys of the images that have a second view, and so on.
    CAJ's batch: P x K visible, P x K infrared, then the P x K visible images' second views."""

    def __init__(self, sampler: CrossModalityBatchSampler, modalities: np.ndarray, views: dict[int, int]):
        self.sampler, self.modalities, self.views = sampler, np.asarray(modalities), views

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    def images_per_batch(self) -> int:
        """Images in a batch: P x K x (views of a visible image + views of an infrared one)."""
        return self.sampler.identities * self.sampler.instances * sum(self.views.values())

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for batch in self.sampler:
            yield [
                (row, view)
                for view in range(max(self.views.values()))
                for row in batch
                if view < self.views[int(self.modalities[row])]
            ]
