"""The identity-balanced cross-modality batch sampler: composition, epoch length,
determinism, and disjoint batches across distributed ranks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vireid.data.sampler import CrossModalityBatchSampler


def _toy_data():
    rng = np.random.default_rng(0)
    labels, modalities = [], []
    for label in range(12):
        for modality, count in ((0, int(rng.integers(2, 9))), (1, int(rng.integers(2, 6)))):
            labels += [label] * count
            modalities += [modality] * count
    labels += [12] * 5  # an identity seen in one modality only is never sampled
    modalities += [0] * 5
    return np.array(labels), np.array(modalities)


def test_each_batch_is_p_identities_times_k_visible_and_k_infrared():
    labels, modalities = _toy_data()
    sampler = CrossModalityBatchSampler(labels, modalities, identities=4, instances=3, seed=1)
    for batch in sampler:
        assert len(batch) == 4 * 3 * 2
        visible, infrared = batch[:12], batch[12:]
        assert (modalities[visible] == 0).all() and (modalities[infrared] == 1).all()
        assert len(set(labels[visible])) == 4 and list(labels[visible]) == list(labels[infrared])
        assert 12 not in labels[batch]
        for label in set(labels[visible]):
            assert (labels[visible] == label).sum() == 3


def test_epoch_covers_the_larger_modality():
    labels, modalities = _toy_data()
    sampler = CrossModalityBatchSampler(labels, modalities, identities=4, instances=3)
    largest = max((modalities == 0).sum(), (modalities == 1).sum())
    assert len(sampler) == math.ceil(largest / 12) == len(list(sampler))
    assert len(CrossModalityBatchSampler(labels, modalities, 4, 3, num_batches=5)) == 5


def test_same_seed_and_epoch_give_the_same_batches():
    labels, modalities = _toy_data()
    first = CrossModalityBatchSampler(labels, modalities, 4, 3, seed=7)
    second = CrossModalityBatchSampler(labels, modalities, 4, 3, seed=7)
    assert list(first) == list(second)
    second.set_epoch(1)
    assert list(first) != list(second)
    assert list(CrossModalityBatchSampler(labels, modalities, 4, 3, seed=8)) != list(first)


def test_distributed_ranks_get_disjoint_shares_of_the_single_process_epoch():
    labels, modalities = _toy_data()
    single = list(CrossModalityBatchSampler(labels, modalities, 4, 3, seed=2, num_batches=6))
    ranks = [
        list(CrossModalityBatchSampler(labels, modalities, 4, 3, seed=2, num_batches=6, rank=r, world_size=2))
        for r in (0, 1)
    ]
    assert ranks[0] == single[0::2] and ranks[1] == single[1::2]
    assert len(ranks[0]) == len(ranks[1]) == 3


def test_too_few_identities_is_an_error():
    labels, modalities = _toy_data()
    with pytest.raises(ValueError, match="needs 20 identities"):
        CrossModalityBatchSampler(labels, modalities, identities=20)
