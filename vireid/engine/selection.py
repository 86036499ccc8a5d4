"""Which checkpoint a run keeps as best.pt: the rule (``train.select_on``), and the
validation split of held-out identities that the honest rule scores.

``test-rank1``   rank-1 on the test protocol's first trial: the reference code's habit
                 (every 2 epochs, keep the best), behind most published numbers.
``test-map``     mAP on the test protocol's first ``train.eval_trials`` trials.
``validation-map``  mAP on identities held out of training (SYSU-MM01's exp/val_id.txt,
                 a seeded ``train.validation_fraction`` of the training identities
                 elsewhere), scored with the dataset's own query → gallery rule: the test
                 data never influence training.
``last``         no selection: the last epoch is the model (no best.pt).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vireid.config import ExperimentConfig
from vireid.data.splits import Split, relabelled
from vireid.datasets import GalleryOptions, get_dataset, get_protocol
from vireid.engine.extract import extract_features
from vireid.errors import UserError
from vireid.evaluation.metrics import RankMetrics, evaluate_features
from vireid.evaluation.protocols import require_finite_features
from vireid.models.network import CrossModalityNet

SELECTION_MEASURES = {
    "test-rank1": "test rank-1 (reference habit)",
    "test-map": "test mAP",
    "validation-map": "validation mAP",
    "last": "last epoch",
}
"""How results name each rule (``selected on: ...``)."""

VALIDATION_SEED = 0
"""The held-out identities are the same for every run and seed of a dataset folder."""


def held_out_ids(person_ids: list[int], fraction: float) -> list[int]:
    """A seeded ``fraction`` of ``person_ids`` (at least 2), sorted; the same for every run."""
    ids = sorted(set(person_ids))
    count = max(2, round(fraction * len(ids)))
    if count > len(ids) - 2:
        raise UserError(
            f"train.validation_fraction: holding out {count} of {len(ids)} training identities leaves "
            "too few to train; lower it"
        )
    return sorted(int(i) for i in np.random.default_rng(VALIDATION_SEED).choice(ids, count, replace=False))


def split_off_validation(config: ExperimentConfig, split: Split) -> tuple[Split, Split]:
    """(training images relabelled 0..K-1, validation images) of the held-out identities."""
    dataset = get_dataset(config.data.dataset)
    own = dataset.validation_ids(Path(config.data.root)) if dataset.validation_ids else None
    if own is None:
        own = held_out_ids(split.person_ids.tolist(), config.train.validation_fraction)
    validation = set(own)
    held_out = np.isin(split.person_ids, list(validation))
    if not held_out.any():
        raise UserError(f"{config.data.root}: none of the validation identities has a training image")
    return relabelled(split.subset(np.flatnonzero(~held_out))), split.subset(np.flatnonzero(held_out))


def evaluation_protocol(config: ExperimentConfig) -> str:
    """``train.eval_protocol``, or the dataset's first protocol."""
    return config.train.eval_protocol or get_dataset(config.data.dataset).protocols[0].name


def validation_rows(config: ExperimentConfig, images: Split) -> tuple[list[int], list[int]]:
    """Query and gallery rows of the validation images: the evaluation protocol's rule, first trial."""
    protocol = get_protocol(evaluation_protocol(config))
    dataset = get_dataset(protocol.dataset)
    query_rows, gallery_rows = dataset.select_trial_rows(images, protocol.mode, protocol.trials[0], GalleryOptions())
    if not query_rows or not gallery_rows:
        raise UserError(f"the validation identities give {protocol.name} no query or no gallery image")
    return query_rows, gallery_rows


def evaluate_validation(
    model: CrossModalityNet, config: ExperimentConfig, images: Split, device: torch.device, progress: bool
) -> RankMetrics:
    """The model's rank metrics on the validation images (NonFiniteFeatures if its features overflow)."""
    query_rows, gallery_rows = validation_rows(config, images)
    data, workers = config.data, config.train.workers
    features = extract_features(model, images, config.test, data.height, data.width, device, workers, progress)
    require_finite_features(features, images.paths, "the validation features")
    return evaluate_features(
        features[query_rows],
        features[gallery_rows],
        images.person_ids[query_rows],
        images.person_ids[gallery_rows],
        images.camera_ids[query_rows],
        images.camera_ids[gallery_rows],
        get_dataset(config.data.dataset).scoring,
    )


__all__ = [
    "SELECTION_MEASURES",
    "VALIDATION_SEED",
    "evaluate_validation",
    "evaluation_protocol",
    "held_out_ids",
    "split_off_validation",
    "validation_rows",
]
