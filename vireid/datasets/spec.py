"""What a dataset IS, in one record: its readers, its evaluation protocols and
their trials, its scoring rule, whether it trains one model per trial, and the
plan of its synthetic layout. Each dataset module fills one DatasetSpec and
registers it (vireid.datasets.registry); everything else asks the registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from vireid.data.splits import Split

if TYPE_CHECKING:
    from vireid.data.synthetic_plan import DatasetPlan

TrialRows = tuple[list[int], list[int]]
"""Rows of the test images that form one trial's query and gallery."""


@dataclass(frozen=True)
class ScoringRule:
    """How a trial is scored (vireid.evaluation.metrics applies it).

    Gallery images a query must not be matched with are removed from its
    ranking: those of camera G for a query of camera Q, for each
    ``(Q, G)`` in ``removed_camera_pairs``, and, with
    ``remove_same_person_same_camera``, the query person's images from the
    query's own camera. CMC counts only the first image of each person id in
    the ranking when ``identity_deduplicated_cmc``, else every image.
    """

    removed_camera_pairs: tuple[tuple[int, int], ...] = ()
    remove_same_person_same_camera: bool = False
    identity_deduplicated_cmc: bool = True


@dataclass(frozen=True)
class GalleryOptions:
    """How a trial's gallery is drawn, where the dataset offers a choice (SYSU-MM01)."""

    shot: str = "single"  # "single": one image per person and camera; "multi": up to 10
    draws: str = "agw"  # "agw": the reference code's random draws; "official": the authors' permutations
    permutations: np.ndarray | None = None  # the official permutations, for draws="official"
    permutation_source: str = ""  # where they were read, for messages


@dataclass(frozen=True)
class OfficialDraws:
    """A dataset's own gallery permutations (SYSU-MM01's rand_perm_cam.mat), for ``draws="official"``."""

    file: str  # relative to the dataset root
    load: Callable[[Path], np.ndarray]  # the file's path -> the permutations


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol: a named query → gallery setting of a dataset, over its trials."""

    name: str  # e.g. "sysu-all"; unique over all datasets
    mode: str  # the dataset's own name of the setting (search mode or direction)
    query: str  # what the query is, printed in every table
    gallery: str
    trials: tuple[int, ...]
    by_default: bool = True  # scored by `vireid test` without --protocol (False: an alternative reading)
    dataset: str = ""  # the dataset's name, filled in when the dataset is registered


@dataclass(frozen=True)
class SyntheticLayout:
    """How `vireid synth` writes this dataset's layout: the planner and its default size."""

    plan: Callable[[int, int, np.random.Generator], DatasetPlan]  # (identities, images per id, rng) -> every file
    identities: int
    images_per_id: int  # in each modality


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: readers, protocols, scoring, and the switches the engine needs.

    ``read_training_split(root, trial)`` returns the training images with
    labels 0..K-1, ``read_test_images(root, trial)`` every test image the
    protocols draw from; ``trial`` matters only where ``one_model_per_trial``
    (RegDB's trials are different train/test splits, each with its own model).
    ``select_trial_rows(test_images, mode, trial, options)`` picks the rows of a
    trial's query and gallery. ``official_draws`` is set where the gallery
    options (GalleryOptions: single/multi-shot, reference or official draws)
    apply, SYSU-MM01's. ``validation_ids(root)`` lists the training identities the
    dataset sets aside for validation (SYSU-MM01's exp/val_id.txt), which the
    ``validation-map`` model selection holds out of training.
    """

    name: str  # the config value data.dataset
    title: str  # the dataset's published name, for messages
    read_training_split: Callable[[Path, int], Split]
    read_test_images: Callable[[Path, int], Split]
    protocols: tuple[Protocol, ...]
    select_trial_rows: Callable[[Split, str, int, GalleryOptions], TrialRows]
    scoring: ScoringRule
    one_model_per_trial: bool = False
    official_draws: OfficialDraws | None = None
    synthetic: SyntheticLayout | None = None
    validation_ids: Callable[[Path], list[int]] | None = None  # the dataset's own held-out ids, if it has them

    @property
    def protocol_names(self) -> tuple[str, ...]:
        return tuple(protocol.name for protocol in self.protocols)


__all__ = ["DatasetSpec", "GalleryOptions", "OfficialDraws", "Protocol", "ScoringRule", "SyntheticLayout", "TrialRows"]
