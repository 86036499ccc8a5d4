"""Evaluating saved features with a protocol.

Each trial's query and gallery, their scores, and the mean/std over trials in
the standard table.

The protocols themselves belong to their datasets (vireid.datasets); the
shipped ones:

==============  ==========================================  =================
protocol        query -> gallery                            trials
==============  ==========================================  =================
sysu-all        infrared cam3, cam6 -> visible cam1,2,4,5   0..9 (random draws)
sysu-indoor     infrared cam3, cam6 -> visible cam1,2       0..9
regdb-v2t       visible -> thermal                          1..10 (one file each)
regdb-t2v       thermal -> visible                          1..10
llcm-ir2vis     near-infrared -> visible                    0..9
llcm-vis2ir     drawn near-infrared -> visible              0..9 (the published VIS→IR)
==============  ==========================================  =================

``llcm-vis2ir-visible-queries`` (visible -> drawn near-infrared) is the
untransposed reading of VIS→IR; vireid.datasets.llcm says how the two differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from vireid.data.splits import Split
from vireid.datasets import (
    DATASETS,
    GalleryOptions,
    Protocol,
    describe_fingerprint,
    get_dataset,
    get_protocol,
    trial_rows,
)
from vireid.errors import NonFiniteFeatures, UserError
from vireid.evaluation.feature_file import FeatureSet
from vireid.evaluation.metrics import (
    NoValidQueryError,
    RankMetrics,
    distance_of,
    evaluate_features,
    scoring_features,
    scoring_memory,
)
from vireid.evaluation.rerank import RerankSettings
from vireid.memory import require_memory

if TYPE_CHECKING:
    from vireid.evaluation.by_camera import CameraTable

REPORTED_RANKS = (1, 5, 10, 20)


@dataclass(frozen=True)
class TrialResult:
    """The metrics of one trial of a protocol.

    Attributes:
        trial: The trial's number.
        metrics: Its scores.
        num_query: The number of its queries.
        num_gallery: The number of its gallery images.
    """

    trial: int
    metrics: RankMetrics
    num_query: int
    num_gallery: int


@dataclass(frozen=True)
class ProtocolResult:
    """The metrics of every trial of one protocol, with their mean and std.

    Attributes:
        protocol: The protocol.
        trials: Every trial's result.
        options: How the galleries were drawn.
        data: The dataset fingerprint the features record (None for files written before it).
        rerank: The re-ranking the distances went through, if any.
        distance: How the features were compared (vireid.evaluation.metrics.DISTANCES).
        by_camera: The same trials by query and gallery camera, where asked for.
    """

    protocol: Protocol
    trials: tuple[TrialResult, ...]
    options: GalleryOptions = GalleryOptions()
    data: dict | None = None  # the dataset fingerprint the features record (None for files written before it)
    rerank: RerankSettings | None = None  # the re-ranking the distances went through, if any
    distance: str = "cosine"  # how the features were compared (vireid.evaluation.metrics.DISTANCES)
    by_camera: CameraTable | None = None  # the same trials by query and gallery camera, where asked for

    @property
    def label(self) -> str:
        """The protocol (with SYSU-MM01's gallery setting), and ", re-ranked ..." for re-ranked figures."""
        label = self.protocol.name
        if get_dataset(self.protocol.dataset).official_draws is not None:
            label = f"{label} {self.options.shot}-shot ({self.options.draws} draws)"
        return f"{label}, {self.rerank.describe()}" if self.rerank else label

    def per_trial(self) -> dict[str, np.ndarray]:
        """Each metric (fractions 0..1) as an array over trials.

        Returns:
            "rank1", "rank5", "rank10", "rank20", "mAP" and "mINP", each a (T,) array.
        """
        return {
            **{f"rank{rank}": np.array([t.metrics.cmc[rank - 1] for t in self.trials]) for rank in REPORTED_RANKS},
            "mAP": np.array([t.metrics.mAP for t in self.trials]),
            "mINP": np.array([t.metrics.mINP for t in self.trials]),
        }

    def mean(self) -> dict[str, float]:
        """Each metric's mean over trials (fractions 0..1), by the names of ``per_trial``."""
        return {name: float(values.mean()) for name, values in self.per_trial().items()}

    def std(self) -> dict[str, float]:
        """Each metric's sample standard deviation over trials (ddof = 1; 0 for a single trial)."""
        return {
            name: float(values.std(ddof=1)) if values.size > 1 else 0.0 for name, values in self.per_trial().items()
        }

    def to_dict(self) -> dict:
        """The result as results.json records it: settings, mean, std and every trial's figures."""
        return {
            "protocol": self.protocol.name,
            "query": self.protocol.query,
            "gallery": self.protocol.gallery,
            "shot": self.options.shot,
            "draws": self.options.draws,
            "data": self.data,
            "reranked": self.rerank.to_dict() if self.rerank else None,
            "distance": self.distance,
            "mean": self.mean(),
            "std": self.std(),
            "trials": [
                {
                    "trial": t.trial,
                    "num_query": t.num_query,
                    "num_gallery": t.num_gallery,
                    "num_valid_query": t.metrics.num_valid_queries,
                    "cmc": [float(value) for value in t.metrics.cmc],
                    "mAP": t.metrics.mAP,
                    "mINP": t.metrics.mINP,
                }
                for t in self.trials
            ],
            **({"by_camera": self.by_camera.to_dict()} if self.by_camera else {}),
        }


def _refuse_mixed_data(feature_sets: Sequence[FeatureSet]) -> None:
    """A UserError unless the feature sets can be scored together.

    Feature sets scored together must come from one dataset folder (where they record it) and
    be compared with one distance.
    """
    for feature_set in feature_sets[1:]:
        if distance_of(feature_set.metadata) != distance_of(feature_sets[0].metadata):
            raise UserError(
                f"{feature_set.name}: features scored by {distance_of(feature_set.metadata)} distance, those of "
                f"{feature_sets[0].name} by {distance_of(feature_sets[0].metadata)}; score them separately"
            )
    recorded = [feature_set for feature_set in feature_sets if feature_set.metadata.get("data") is not None]
    for feature_set in recorded[1:]:
        data, first_data = feature_set.metadata["data"], recorded[0].metadata["data"]
        if data != first_data:
            raise UserError(
                f"{feature_set.name}: features of other data than {recorded[0].name} "
                f"({describe_fingerprint(data)} vs {describe_fingerprint(first_data)}); score each folder's separately"
            )


def results_table(results: Sequence[ProtocolResult]) -> str:
    """The standard Markdown table: mean ± std over trials, in percent.

    Args:
        results: One row each.

    Returns:
        The table; a note under it where features were compared by a distance other than cosine.
    """
    metric_names = [f"rank{rank}" for rank in REPORTED_RANKS] + ["mAP", "mINP"]
    header = "| protocol | query → gallery | trials | " + " | ".join(["R1", "R5", "R10", "R20", "mAP", "mINP"]) + " |"
    lines = [header, "|" + "---|" * (3 + len(metric_names))]
    for result in results:
        mean, std = result.mean(), result.std()
        cells = [f"{100 * mean[name]:.2f} ± {100 * std[name]:.2f}" for name in metric_names]
        direction = f"{result.protocol.query} → {result.protocol.gallery}"
        lines.append(f"| {result.label} | {direction} | {len(result.trials)} | " + " | ".join(cells) + " |")
    distances = sorted({result.distance for result in results} - {"cosine"})
    if distances:  # cosine, the common case, goes without saying
        lines.append(f"\nFeatures compared by {' and '.join(distances)} product (test.distance: {distances[0]}).")
    return "\n".join(lines)


def check_features_for(protocol: Protocol, feature_set: FeatureSet) -> None:
    """A UserError naming the file unless ``feature_set`` can be scored with ``protocol``.

    The features must be of the protocol's dataset (where the file records one), of known
    identities, every value finite.

    Args:
        protocol: The protocol.
        feature_set: The features.

    Raises:
        UserError: Where they cannot be scored with the protocol.
        NonFiniteFeatures: Where a value is not finite.
    """
    dataset, recorded = get_dataset(protocol.dataset), feature_set.metadata.get("dataset")
    if recorded is not None and recorded != dataset.name:
        theirs = f"; score them with {', '.join(DATASETS[recorded].protocol_names)}" if recorded in DATASETS else ""
        raise UserError(
            f"{feature_set.name}: features of the {recorded} dataset, "
            f"but {protocol.name} is a protocol of {dataset.title}{theirs}"
        )
    if np.all(feature_set.images.person_ids < 0):
        raise UserError(f"{feature_set.name}: its images have no person ids (your own images?); a protocol needs them")
    require_finite_features(feature_set.features, feature_set.images.paths, feature_set.name)


def require_finite_features(features: np.ndarray, paths: Sequence[str], name: str) -> None:
    """NonFiniteFeatures naming ``name``, the count and the first image, unless every value is finite.

    Args:
        features: (N, D) features.
        paths: (N,) the images' paths.
        name: The features' name, for the message.

    Raises:
        NonFiniteFeatures: Where a row holds NaN or an infinite value.
    """
    finite = np.isfinite(features).all(axis=1)
    if not finite.all():
        rows = np.flatnonzero(~finite)
        raise NonFiniteFeatures(
            f"{name}: {rows.size} of {len(features)} feature row(s) hold NaN or infinite values "
            f"(the first: {paths[rows[0]]}); the model or the file is broken"
        )


@dataclass
class PreparedTrials:
    """What scoring a protocol's trials needs, every trial's rows checked before any is scored.

    Attributes:
        protocol: The protocol.
        feature_sets: The feature sets scored.
        runs: (trial, index of the feature set, query rows, gallery rows) of each trial.
        distance: How the features are compared: "cosine" or "dot".
        compared: Each set's (N, D) rows as the distance compares them (unit rows for cosine), on the
            scoring device.
    """

    protocol: Protocol
    feature_sets: Sequence[FeatureSet]
    runs: list[tuple[int, int, list[int], list[int]]]
    distance: str
    compared: list[torch.Tensor]

    def scored(self, position: int, query_rows, gallery_rows, **keywords) -> RankMetrics:
        """evaluate_features of some rows of the set at ``position`` under the dataset's scoring rule.

        Args:
            position: The index of the feature set.
            query_rows (Sequence[int]): The rows of its queries.
            gallery_rows (Sequence[int]): The rows of its gallery images.
            **keywords (Any): More arguments of evaluate_features (``max_rank``, ``rerank``).

        Returns:
            The metrics.
        """
        images, features = self.feature_sets[position].images, self.compared[position]
        return evaluate_features(
            features[torch.as_tensor(query_rows, device=features.device)],
            features[torch.as_tensor(gallery_rows, device=features.device)],
            images.person_ids[query_rows],
            images.person_ids[gallery_rows],
            images.camera_ids[query_rows],
            images.camera_ids[gallery_rows],
            get_dataset(self.protocol.dataset).scoring,
            distance=self.distance,
            **keywords,
        )


def prepare_trials(
    protocol: Protocol | str,
    feature_sets: Sequence[FeatureSet],
    trials: Sequence[int] | None = None,
    options: GalleryOptions = GalleryOptions(),
    device: str | torch.device | None = None,
    rerank: RerankSettings | None = None,
    drawn_from: ScoredRows | None = None,
) -> PreparedTrials:
    """The trials of ``protocol`` that ``feature_sets`` are scored on (evaluate_protocol says which).

    Every feature set and every trial's rows are checked, and the memory scoring needs, before any is scored.

    Args:
        protocol: The protocol, or its name.
        feature_sets: The feature sets.
        trials: The trials to score; None: the default.
        options: How the gallery is drawn, where the dataset offers a choice.
        device: Where to score; None: the CPU.
        rerank: The re-ranking settings, or None for plain distances (counted in the memory check).
        drawn_from: Where the one feature set holds only some test images (scored_rows): which, of
            which images; the trials are drawn from all of these.

    Returns:
        The prepared trials.

    Raises:
        UserError: Where the features cannot be scored with the protocol or together, or a trial has
            no query or no gallery image.
        ValueError: Where the feature set does not hold the rows ``drawn_from`` names, or a trial's.
    """
    protocol = get_protocol(protocol) if isinstance(protocol, str) else protocol
    dataset = get_dataset(protocol.dataset)
    for feature_set in feature_sets:
        check_features_for(protocol, feature_set)
    _refuse_mixed_data(feature_sets)
    model_trials = [feature_set.metadata.get("trial") for feature_set in feature_sets]
    names = [feature_set.name for feature_set in feature_sets]
    if drawn_from is not None and (len(feature_sets) != 1 or len(feature_sets[0].images) != len(drawn_from.rows)):
        raise ValueError(f"drawn_from: expected one feature set of its {len(drawn_from.rows)} rows")
    runs = []
    for trial, position in dataset.scored_trials(
        protocol, [None if trial is None else int(trial) for trial in model_trials], names, trials
    ):
        if drawn_from is None:
            query_rows, gallery_rows = trial_rows(protocol, feature_sets[position].images, trial, options)
        else:
            drawn = trial_rows(protocol, drawn_from.images, trial, options)
            query_rows, gallery_rows = (drawn_from.positions(rows).tolist() for rows in drawn)
        if not query_rows or not gallery_rows:
            raise UserError(f"{protocol.name} trial {trial}: the features hold no query or no gallery image")
        require_memory(
            scoring_memory(len(query_rows), len(gallery_rows), rerank),
            f"{feature_sets[position].name}, {protocol.name} trial {trial}: scoring {len(query_rows)} queries "
            f"against {len(gallery_rows)} gallery images{', re-ranked,' if rerank else ''}",
            device=device,
        )
        runs.append((trial, position, query_rows, gallery_rows))
    distance = distance_of(feature_sets[0].metadata)
    compared = [
        scoring_features(torch.as_tensor(feature_set.features), distance, device) for feature_set in feature_sets
    ]
    return PreparedTrials(protocol, feature_sets, runs, distance, compared)


@dataclass(frozen=True)
class ScoredRows:
    """Some rows of a list of test images: those whose features scoring some trials needs (scored_rows).

    Features of ``images.subset(rows)`` are scored with ``evaluate_protocol(..., drawn_from=...)``: the
    trials are drawn from every image, as they are from features of every image.

    Attributes:
        images: Every test image.
        rows: (R,) the sorted rows of ``images`` that the features hold, each once.
    """

    images: Split
    rows: np.ndarray  # (R,) int64, sorted, each once

    @classmethod
    def of(cls, images: Split, rows: Sequence[int]) -> ScoredRows:
        """The rows ``rows`` of ``images`` (in any order, repeated or not)."""
        return cls(images, np.unique(np.asarray(rows, dtype=np.int64)))

    def positions(self, rows: Sequence[int]) -> np.ndarray:
        """(len(rows),) where each of ``rows`` of ``images`` is among the features' rows.

        Raises:
            ValueError: Where one of them is not held, naming its image.
        """
        rows = np.asarray(rows, dtype=np.int64)
        positions = np.searchsorted(self.rows, rows)
        held = positions < len(self.rows)
        held[held] = self.rows[positions[held]] == rows[held]
        if not held.all():
            missing = rows[~held]
            raise ValueError(f"no features of {self.images.paths[missing[0]]} ({missing.size} scored image(s) missing)")
        return positions


def scored_rows(
    protocol: Protocol | str, images: Split, trials: Sequence[int], options: GalleryOptions = GalleryOptions()
) -> ScoredRows:
    """The rows of ``images`` that the queries and galleries of ``trials`` use.

    They are the only images whose features scoring those trials needs (SYSU-MM01's single-shot
    all-search trial: its 3,803 queries and 301 gallery images, not every test image).

    Args:
        protocol: The protocol, or its name.
        images: Every test image (one trial's, where the dataset trains one model per trial).
        trials: The trials.
        options: How the galleries are drawn, where the dataset offers a choice.

    Returns:
        The rows, each once.
    """
    protocol = get_protocol(protocol) if isinstance(protocol, str) else protocol
    return ScoredRows.of(
        images, [row for trial in trials for some in trial_rows(protocol, images, trial, options) for row in some]
    )


def evaluate_protocol(
    protocol: Protocol | str,
    feature_sets: Sequence[FeatureSet],
    trials: Sequence[int] | None = None,
    options: GalleryOptions = GalleryOptions(),
    max_rank: int = 20,
    device: str | torch.device | None = None,
    rerank: RerankSettings | None = None,
    drawn_from: ScoredRows | None = None,
) -> ProtocolResult:
    """Score saved features with a protocol over its trials.

    Most datasets (SYSU-MM01, LLCM): one feature set holding every test image;
    each trial draws its gallery from it (``trials`` defaults to the
    protocol's). One model per trial (RegDB): one feature set per trial, each
    from that trial's model, the trial number taken from its metadata.
    ``options`` choose the gallery where the dataset offers a choice (SYSU-MM01).
    ``rerank``: each trial's distances k-reciprocal re-ranked (its queries and gallery
    together); the result says so in its label and its record.

    Args:
        protocol: The protocol, or its name.
        feature_sets: The feature sets: one of every test image, or one per trial.
        trials: The trials to score; None: the protocol's (one model per trial: taken from the files).
        options: How the gallery is drawn, where the dataset offers a choice.
        max_rank: The length of the CMC curves.
        device: Where to score; None: the CPU.
        rerank: The re-ranking settings, or None for plain distances.
        drawn_from: Where the one feature set holds only the test images the trials score (scored_rows):
            which, of which images; the trials are drawn from all of these, as from features of every image.

    Returns:
        Every trial's metrics.

    Raises:
        UserError: Where the features cannot be scored with the protocol, or a trial has no valid query.
        ValueError: Where the feature set does not hold the rows ``drawn_from`` names, or a trial's.
    """
    prepared = prepare_trials(protocol, feature_sets, trials, options, device, rerank, drawn_from)
    protocol = prepared.protocol
    results = []
    for trial, position, query_rows, gallery_rows in prepared.runs:
        try:
            metrics = prepared.scored(position, query_rows, gallery_rows, max_rank=max_rank, rerank=rerank)
        except NoValidQueryError as error:
            raise UserError(
                f"{feature_sets[position].name}: {protocol.name} trial {trial}: none of its {len(query_rows)} "
                f"queries has an image of its identity among the {len(gallery_rows)} gallery images "
                f"({protocol.query} → {protocol.gallery}); nothing can be scored"
            ) from error
        results.append(TrialResult(trial, metrics, len(query_rows), len(gallery_rows)))
    return ProtocolResult(
        protocol, tuple(results), options, feature_sets[0].metadata.get("data"), rerank, prepared.distance
    )
