"""The rank lists of a protocol trial, in the evaluator's order, ready to draw."""

from __future__ import annotations

import numpy as np
import torch

from vireid.datasets import Protocol, get_dataset, get_protocol, trial_rows
from vireid.errors import UserError
from vireid.evaluation.feature_file import FeatureSet
from vireid.evaluation.metrics import distance_of, pairwise_distances, ranked_gallery
from vireid.evaluation.protocols import check_features_for
from vireid.viz.rank_list import RankedImage


def trial_rank_lists(
    feature_set: FeatureSet, protocol: Protocol | str, trial: int | None, num_queries: int = 6, top_k: int = 10
) -> tuple[int, list[RankedImage], list[list[RankedImage]]]:
    """The trial shown (``None``: the features' own trial where the dataset has one model
    per trial, else the protocol's first), queries of ``num_queries`` different identities
    (spread evenly over the trial's query identities, each its first query image) and
    their top-``k`` gallery images as the metrics rank them (excluded images left out)."""
    protocol = get_protocol(protocol) if isinstance(protocol, str) else protocol
    check_features_for(protocol, feature_set)
    saved_trial = feature_set.metadata.get("trial")
    own_trial = None if saved_trial is None else get_dataset(protocol.dataset).model_trial(int(saved_trial))
    if trial is None:
        trial = own_trial if own_trial is not None else protocol.trials[0]
    protocol.checked_trials([trial], "--trial")
    if own_trial is not None and trial != own_trial:
        raise UserError(
            f"{feature_set.name}: features of trial {own_trial}'s model; --trial {trial} needs that model's"
        )
    images = feature_set.images
    query_rows, gallery_rows = trial_rows(protocol, images, trial)
    query_rows, gallery_rows = np.asarray(query_rows), np.asarray(gallery_rows)
    query_ids = images.person_ids[query_rows]
    identities = np.unique(query_ids)
    picked_ids = identities[
        np.unique(np.linspace(0, identities.size - 1, min(num_queries, identities.size)).round().astype(int))
    ]
    picked = query_rows[[int(np.flatnonzero(query_ids == person_id)[0]) for person_id in picked_ids]]
    features = torch.as_tensor(feature_set.features)
    distances = pairwise_distances(features[picked], features[gallery_rows], distance_of(feature_set.metadata))
    ranked = ranked_gallery(
        distances,
        images.person_ids[picked],
        images.person_ids[gallery_rows],
        images.camera_ids[picked],
        images.camera_ids[gallery_rows],
        protocol.dataset,
        top_k,
    )
    queries = [_ranked_image(feature_set, row) for row in picked]
    lists = [
        [_ranked_image(feature_set, gallery_rows[column], -float(distances[position, column])) for column in columns]
        for position, columns in enumerate(ranked)
    ]
    return trial, queries, lists


def _ranked_image(feature_set: FeatureSet, row: int, score: float | None = None) -> RankedImage:
    images = feature_set.images
    return RankedImage(
        images.paths[row], int(images.modalities[row]), int(images.person_ids[row]), score, int(images.camera_ids[row])
    )
