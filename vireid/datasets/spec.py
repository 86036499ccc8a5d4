"""What a dataset IS, in one record.

Its readers, its evaluation protocols and their trials, its scoring rule,
whether it trains one model per trial, and the plan of its synthetic layout.
Each dataset module fills one DatasetSpec and registers it
(vireid.datasets.registry); everything else asks the registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from vireid.data.splits import Split
from vireid.errors import ConfigError, UserError

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

    Attributes:
        removed_camera_pairs: (query camera, gallery camera) pairs whose images are never matched.
        remove_same_person_same_camera: Remove the query person's images from the query's own camera.
        identity_deduplicated_cmc: CMC counts only the first image of each person id in the ranking.
    """

    removed_camera_pairs: tuple[tuple[int, int], ...] = ()
    remove_same_person_same_camera: bool = False
    identity_deduplicated_cmc: bool = True


@dataclass(frozen=True)
class GalleryOptions:
    """How a trial's gallery is drawn, where the dataset offers a choice (SYSU-MM01).

    Attributes:
        shot: "single": one image per person and camera; "multi": up to 10.
        draws: "agw": the reference code's random draws; "official": the authors' permutations.
        permutations: The official permutations, for ``draws="official"``.
        permutation_source: Where they were read, for messages.
    """

    shot: str = "single"  # "single": one image per person and camera; "multi": up to 10
    draws: str = "agw"  # "agw": the reference code's random draws; "official": the authors' permutations
    permutations: np.ndarray | None = None  # the official permutations, for draws="official"
    permutation_source: str = ""  # where they were read, for messages


@dataclass(frozen=True)
class OfficialDraws:
    """A dataset's own gallery permutations (SYSU-MM01's rand_perm_cam.mat), for ``draws="official"``.

    Attributes:
        file: The permutations' file, relative to the dataset root.
        load: The file's path -> the permutations.
    """

    file: str  # relative to the dataset root
    load: Callable[[Path], np.ndarray]  # the file's path -> the permutations


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol: a named query → gallery setting of a dataset, over its trials.

    Attributes:
        name: The protocol's name, e.g. "sysu-all"; unique over all datasets.
        mode: The dataset's own name of the setting (search mode or direction).
        query: What the query is, printed in every table.
        gallery: What the gallery is, printed in every table.
        trials: The trials' numbers.
        by_default: Scored by `vireid test` without --protocol (False: an alternative reading).
        dataset: The dataset's name, filled in when the dataset is registered.
    """

    name: str  # e.g. "sysu-all"; unique over all datasets
    mode: str  # the dataset's own name of the setting (search mode or direction)
    query: str  # what the query is, printed in every table
    gallery: str
    trials: tuple[int, ...]
    by_default: bool = True  # scored by `vireid test` without --protocol (False: an alternative reading)
    dataset: str = ""  # the dataset's name, filled in when the dataset is registered

    def checked_trials(self, trials: Sequence[int] | None, option: str = "--trials") -> list[int]:
        """``trials`` (default: all of the protocol's), each one of the protocol's, none twice.

        Args:
            trials: The trials asked for; None: all of the protocol's.
            option: The option that gave them, named in the error.

        Returns:
            The trials, as a list.

        Raises:
            UserError: Where a trial is not the protocol's, is given twice, or none is given.
        """
        trials = list(self.trials if trials is None else trials)
        unknown = sorted({trial for trial in trials if trial not in self.trials})
        if not trials or unknown or len(set(trials)) != len(trials):
            not_among = f" ({', '.join(map(str, unknown))} not among them)" if unknown else ""
            raise UserError(
                f"{option}: {self.name} has trials {self.trials[0]} to {self.trials[-1]}, "
                f"each once; got {trials or 'none'}{not_among}"
            )
        return trials


@dataclass(frozen=True)
class SyntheticLayout:
    """How `vireid synth` writes this dataset's layout: the planner and its default size.

    Attributes:
        plan: (identities, images per id, rng) -> every file.
        identities: The default number of identities.
        images_per_id: The default number of images per identity, in each modality.
    """

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

    Attributes:
        name: The config value ``data.dataset``.
        title: The dataset's published name, for messages.
        read_training_split: (root, trial) -> the training images.
        read_test_images: (root, trial) -> every test image.
        protocols: The dataset's protocols; the first is the default.
        select_trial_rows: (test_images, mode, trial, options) -> the trial's query and gallery rows.
        scoring: How a trial is scored.
        one_model_per_trial: Each trial is its own train/test split, with its own model (RegDB).
        official_draws: The dataset's own gallery permutations, where it has them.
        synthetic: How `vireid synth` writes its layout.
        validation_ids: root -> the dataset's own held-out ids, if it has them.
        training_identities: In the official training split: a released model's classifier rows.
        description: One line, for `vireid datasets`.
        source: Where it was registered from: 'built in', 'plugin FILE', 'distribution NAME' (register_dataset).
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
    training_identities: int | None = None  # in the official training split: a released model's classifier rows
    description: str = ""  # one line, for `vireid datasets`
    source: str = ""  # where it was registered from: 'built in', 'plugin FILE', 'distribution NAME' (register_dataset)

    @property
    def protocol_names(self) -> tuple[str, ...]:
        """The names of the dataset's protocols, in order."""
        return tuple(protocol.name for protocol in self.protocols)

    @property
    def default_protocol(self) -> Protocol:
        """The protocol training evaluates and selects on unless ``train.eval_protocol`` names another."""
        return self.protocols[0]

    def check_trial(self, trial: int) -> None:
        """A ConfigError unless ``data.trial`` = ``trial`` names a split this dataset has.

        Any trial is accepted where one model serves every trial: they share one split.

        Args:
            trial: The ``data.trial`` value.

        Raises:
            ConfigError: Where the dataset trains one model per trial and has no such trial.
        """
        trials = self.default_protocol.trials
        if self.one_model_per_trial and trial not in trials:
            raise ConfigError(f"data.trial: {self.title} has trials {trials[0]} to {trials[-1]}, got {trial}")

    def model_trial(self, trial: int) -> int | None:
        """The one trial that a model trained with ``data.trial`` = ``trial`` is tested on.

        Args:
            trial: The ``data.trial`` value.

        Returns:
            ``trial``; None where one model is tested on every trial (the trials are gallery draws
                from one test set).
        """
        return trial if self.one_model_per_trial else None

    def split_trials(self, trial: int | None = None) -> tuple[int, ...]:
        """The trials whose training and test splits to read.

        Args:
            trial: One trial; None: every distinct split.

        Returns:
            ``trial``'s, or every distinct split: every trial where each trains its own model, else the
                first trial's (they all share it).
        """
        if trial is not None:
            return (trial,)
        trials = self.default_protocol.trials
        return trials if self.one_model_per_trial else trials[:1]

    def scored_trials(
        self, protocol: Protocol, model_trials: Sequence[int | None], names: Sequence[str], trials: Sequence[int] | None
    ) -> list[tuple[int, int]]:
        """Which trials of ``protocol`` each of the feature sets ``names`` is scored on.

        One model per trial: each set on its model's trial (in order, where unknown), each trial once,
        and ``trials`` is refused. One model for every trial: one set, on ``trials`` (default: all).

        Args:
            protocol: The protocol.
            model_trials: The trial each set's model was trained for (None: unknown).
            names: The feature sets' names, for messages.
            trials: The trials asked for; None: the default.

        Returns:
            (trial, index of the set) pairs.

        Raises:
            UserError: Where the sets and the trials do not fit together as above.
        """
        if not self.one_model_per_trial:
            if len(names) != 1:
                raise UserError(f"{protocol.name} takes one feature file of all test images, got {len(names)}")
            return [(trial, 0) for trial in protocol.checked_trials(trials)]
        if trials is not None:
            raise UserError(f"{self.title} trials are the feature files given (one per trial), not --trials")
        runs = [(position + 1 if trial is None else trial, position) for position, trial in enumerate(model_trials)]
        first_of_trial: dict[int, int] = {}
        for trial, position in runs:
            if trial in first_of_trial:
                earlier = names[first_of_trial[trial]]
                raise UserError(f"{names[position]}: trial {trial} again (also {earlier}); give each trial once")
            first_of_trial[trial] = position
        protocol.checked_trials([trial for trial, _ in runs])
        return runs


__all__ = ["DatasetSpec", "GalleryOptions", "OfficialDraws", "Protocol", "ScoringRule", "SyntheticLayout", "TrialRows"]
