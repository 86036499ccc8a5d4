"""Which checkpoint a run keeps as best.pt: the rule (``train.select_on``), the epochs it
chooses from (the in-training evaluations), and the validation split of held-out identities
that the honest rule scores.

``test-rank1``   rank-1 on the test protocol's first trial: the reference code's habit
                 (test every 2 epochs, keep the best), behind most published numbers.
                 It selects the epoch on the test set itself.
``test-map``     mAP on the test protocol's first ``train.eval_trials`` trials (the test set too).
``validation-map``  mAP on identities held out of training (SYSU-MM01's exp/val_id.txt,
                 a seeded ``train.validation_fraction`` of the training identities
                 elsewhere), scored with the dataset's own query → gallery rule: the test
                 data never influence training.
``last``         no selection: the last epoch is the model (no best.pt).

The evaluations run after the epochs ``evaluation_due`` names. The reference's loop
(mangye16/Cross-Modal-Re-ID-baseline ``train.py`` lines 362 and 384 at commit e817a26,
``ICCV21_CAJ/train_ext.py`` lines 417 and 439) counts epochs from 0 and tests after
``epoch > 0 and epoch % 2 == 0``: after its epochs 2, 4, ..., that is after vireid's epochs
3, 5, ... (counted from 1), never after the first, and after the last only when it is one of
them (AGW's 81: yes; CAJ's 100: no, its last test follows epoch 99). ``train.eval_every: 2``,
``train.eval_offset: 1``, ``train.eval_last: false`` say this. Its in-training test scores
unflipped features (its ``test()``), whatever the final test does: ``train.eval_flip``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vireid.config import ExperimentConfig, TrainConfig
from vireid.data.splits import Split, relabelled
from vireid.datasets import GalleryOptions, get_dataset, get_protocol
from vireid.engine.extract import HeldTestImages, extract_features, extract_test_features
from vireid.errors import UserError
from vireid.evaluation.metrics import RankMetrics, evaluate_features
from vireid.evaluation.protocols import (
    ProtocolResult,
    ScoredRows,
    evaluate_protocol,
    require_finite_features,
    scored_rows,
)

SELECTION_MEASURES = {
    "test-rank1": "test rank-1 (reference habit)",
    "test-map": "test mAP",
    "validation-map": "validation mAP",
    "last": "last epoch",
}
"""How results name each rule (``selected on: ...``)."""

VALIDATION_SEED = 0
"""The held-out identities are the same for every run and seed of a dataset folder."""


def evaluation_due(train: TrainConfig, epoch: int) -> bool:
    """Whether the model is evaluated after ``epoch`` (counted from 1): after epochs
    eval_offset + eval_every, eval_offset + 2 x eval_every, ..., and after the last epoch when
    ``train.eval_last``; with eval_every 0, after the last epoch alone."""
    if train.eval_every == 0:
        return epoch == train.epochs
    scheduled = epoch > train.eval_offset and (epoch - train.eval_offset) % train.eval_every == 0
    return scheduled or (train.eval_last and epoch == train.epochs)


def evaluated_epochs(train: TrainConfig) -> list[int]:
    """The epochs (counted from 1) after which a run of ``train`` evaluates: the candidates for best.pt."""
    return [epoch for epoch in range(1, train.epochs + 1) if evaluation_due(train, epoch)]


def in_training_config(config: ExperimentConfig) -> ExperimentConfig:
    """``config`` as the in-training evaluations extract features: test.* with ``train.eval_flip``."""
    return dataclasses.replace(config, test=dataclasses.replace(config.test, flip=config.train.eval_flip))


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
    return config.train.eval_protocol or get_dataset(config.data.dataset).default_protocol.name


def validation_rows(config: ExperimentConfig, images: Split) -> tuple[list[int], list[int]]:
    """Query and gallery rows of the validation images: the evaluation protocol's rule, first trial."""
    protocol = get_protocol(evaluation_protocol(config))
    dataset = get_dataset(protocol.dataset)
    query_rows, gallery_rows = dataset.select_trial_rows(images, protocol.mode, protocol.trials[0], GalleryOptions())
    if not query_rows or not gallery_rows:
        raise UserError(f"the validation identities give {protocol.name} no query or no gallery image")
    return query_rows, gallery_rows


def evaluate_test_trials(
    model: nn.Module,
    config: ExperimentConfig,
    protocol_name: str,
    device: torch.device,
    held: HeldTestImages,
    progress: bool,
) -> ProtocolResult:
    """The model's figures on the protocol's first ``train.eval_trials`` trials (one model per trial: the
    run's own trial), from the features (as in_training_config extracts them) of only the test images
    those trials score; the test images as ``held`` lists (and decodes) them."""
    protocol = get_protocol(protocol_name)
    own_trial = get_dataset(protocol.dataset).model_trial(config.data.trial)
    trials = None if own_trial is not None else protocol.trials[: config.train.eval_trials]
    scored = scored_rows(protocol, held.split, [own_trial] if own_trial is not None else trials)
    features = extract_test_features(model, in_training_config(config), device, progress, held, scored.rows)
    return evaluate_protocol(protocol, [features], trials, drawn_from=scored)


def evaluate_validation(
    model: nn.Module, config: ExperimentConfig, images: Split, device: torch.device, progress: bool
) -> RankMetrics:
    """The model's rank metrics on the validation images (features as in_training_config extracts
    them, of only the images the first trial scores; NonFiniteFeatures if they overflow)."""
    query_rows, gallery_rows = validation_rows(config, images)
    scored = ScoredRows.of(images, query_rows + gallery_rows)
    scored_images = images.subset(scored.rows)
    config = in_training_config(config)
    features = extract_features(model, scored_images, config, device, config.train.workers, progress)
    require_finite_features(features, scored_images.paths, "the validation features")
    return evaluate_features(
        features[scored.positions(query_rows)],
        features[scored.positions(gallery_rows)],
        images.person_ids[query_rows],
        images.person_ids[gallery_rows],
        images.camera_ids[query_rows],
        images.camera_ids[gallery_rows],
        get_dataset(config.data.dataset).scoring,
        distance=config.test.distance,
    )


__all__ = [
    "SELECTION_MEASURES",
    "VALIDATION_SEED",
    "evaluate_test_trials",
    "evaluate_validation",
    "evaluated_epochs",
    "evaluation_due",
    "evaluation_protocol",
    "held_out_ids",
    "in_training_config",
    "split_off_validation",
    "validation_rows",
]
