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


def _identities(counts: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Labels and modalities of identities 0, 1, ... with (visible, infrared) image counts ``counts``."""
    labels, modalities = [], []
    for label, (visible, infrared) in enumerate(counts):
        labels += [label] * (visible + infrared)
        modalities += [0] * visible + [1] * infrared
    return np.array(labels), np.array(modalities)


def test_independent_draw_counts_batches_as_the_reference():
    """utils.py: int(N / (P x K)) + 1 batches, N the larger modality's count; one more than
    balanced's ceil(N / (P x K)) when N is a multiple of P x K."""
    labels, modalities = _identities([(6, 4)] * 6)  # N = max(36 visible, 24 infrared) = 36, P x K = 4 x 3 = 12
    assert len(CrossModalityBatchSampler(labels, modalities, 4, 3, draw="independent")) == 4  # 36 // 12 + 1
    assert len(CrossModalityBatchSampler(labels, modalities, 4, 3, draw="balanced")) == 3  # ceil(36 / 12)
    labels, modalities = _identities([(4, 6)] * 6 + [(1, 1)])  # N = max(25, 37) = 37
    assert len(CrossModalityBatchSampler(labels, modalities, 4, 3, draw="independent")) == 4  # 37 // 12 + 1
    assert len(CrossModalityBatchSampler(labels, modalities, 4, 3, draw="balanced")) == 4  # ceil(37 / 12)
    sampler = CrossModalityBatchSampler(labels, modalities, 4, 3, draw="independent", num_batches=7)
    assert len(sampler) == len(list(sampler)) == 7  # train.steps_per_epoch still decides when given


def test_independent_draw_takes_distinct_identities_each_k_images_per_modality():
    labels, modalities = _toy_data()
    sampler = CrossModalityBatchSampler(labels, modalities, identities=4, instances=3, seed=1, draw="independent")
    sampler.set_epoch(3)
    batches = list(sampler)
    assert len(batches) == max((modalities == 0).sum(), (modalities == 1).sum()) // 12 + 1
    for batch in batches:
        visible, infrared = np.array(batch[:12]), np.array(batch[12:])
        assert (modalities[visible] == 0).all() and (modalities[infrared] == 1).all()
        assert list(labels[visible]) == list(labels[infrared])
        chosen = labels[visible][::3]
        assert len(set(chosen)) == 4 and 12 not in chosen  # distinct, and only identities seen in both modalities
        assert list(labels[visible]) == [label for label in chosen for _ in range(3)]


def test_independent_draw_takes_each_batchs_identities_afresh():
    """Balanced: three batches of 4 are one permutation of the 12 identities. Independent: the
    identities of one batch say nothing about the next, so they overlap within three batches."""
    labels, modalities = _identities([(5, 5)] * 12)
    for draw, expected_overlaps in (("balanced", 0), ("independent", None)):
        batches = list(CrossModalityBatchSampler(labels, modalities, 4, 3, seed=5, num_batches=30, draw=draw))
        overlaps = 0
        for start in range(0, 30, 3):
            chosen = [label for batch in batches[start : start + 3] for label in set(labels[batch])]
            overlaps += len(chosen) - len(set(chosen))
        assert overlaps > 0 if expected_overlaps is None else overlaps == expected_overlaps, draw


def test_independent_draw_takes_images_with_replacement():
    """An identity with 40 images of each modality, K = 4: drawn without replacement its four rows
    are always distinct; with replacement some repeat (P(repeat) = 1 - 39/40 x 38/40 x 37/40 = 0.14)."""
    labels, modalities = _identities([(40, 40)] * 4)
    for draw in ("balanced", "independent"):
        batches = list(CrossModalityBatchSampler(labels, modalities, 2, 4, seed=0, num_batches=60, draw=draw))
        groups = [batch[start : start + 4] for batch in batches for start in range(0, len(batch), 4)]
        repeats = sum(len(group) > len(set(group)) for group in groups)
        assert repeats > 0 if draw == "independent" else repeats == 0, draw


def test_an_identity_with_fewer_images_than_k_repeats_them():
    labels, modalities = _identities([(1, 2), (5, 5), (5, 5)])  # identity 0: one visible image, two infrared
    for draw in ("balanced", "independent"):
        for batch in CrossModalityBatchSampler(labels, modalities, 3, 4, seed=0, num_batches=5, draw=draw):
            visible, infrared = np.array(batch[:12]), np.array(batch[12:])
            assert set(visible[labels[visible] == 0]) == {0}  # its one visible row, 4 times
            assert set(infrared[labels[infrared] == 0]) <= {1, 2} and (labels[infrared] == 0).sum() == 4


def test_independent_draw_is_seeded_per_epoch_and_split_between_ranks():
    labels, modalities = _toy_data()
    first = CrossModalityBatchSampler(labels, modalities, 4, 3, seed=7, draw="independent")
    second = CrossModalityBatchSampler(labels, modalities, 4, 3, seed=7, draw="independent")
    second.set_epoch(2)
    first.set_epoch(2)
    assert list(first) == list(second)  # a resumed run draws epoch 2 as the uninterrupted one did
    second.set_epoch(1)
    assert list(first) != list(second)
    assert list(CrossModalityBatchSampler(labels, modalities, 4, 3, seed=7)) != list(
        CrossModalityBatchSampler(labels, modalities, 4, 3, seed=7, draw="independent")
    )
    single = list(CrossModalityBatchSampler(labels, modalities, 4, 3, seed=2, num_batches=6, draw="independent"))
    ranks = [
        list(
            CrossModalityBatchSampler(
                labels, modalities, 4, 3, seed=2, num_batches=6, rank=r, world_size=2, draw="independent"
            )
        )
        for r in (0, 1)
    ]
    assert ranks[0] == single[0::2] and ranks[1] == single[1::2]
