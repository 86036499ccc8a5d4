"""k-reciprocal re-ranking against a plain NumPy version of the paper's steps, written here
with loops and sets; its chunking; and the labelled re-ranked rows it adds to results."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import vireid.evaluation.rerank as rerank_module
from vireid.cli import main
from vireid.datasets import GalleryOptions, get_protocol, trial_rows
from vireid.datasets.sysu import sysu_test_images
from vireid.errors import UserError
from vireid.evaluation.feature_file import FeatureSet, save_features
from vireid.evaluation.metrics import rank_metrics
from vireid.evaluation.protocols import evaluate_protocol, results_table
from vireid.evaluation.rerank import RerankSettings, k_reciprocal_distances


def rerank_by_loops(query: np.ndarray, gallery: np.ndarray, k1: int, k2: int, lambda_value: float) -> np.ndarray:
    """Zhong et al. 2017 step by step: row-normalised squared distances, k-reciprocal sets, their
    expansion by the 2/3 rule, Gaussian weights, local query expansion, Jaccard distance, the blend."""
    features = np.concatenate([query, gallery]).astype(np.float64)
    num, num_query = len(features), len(query)
    distance = np.array([[float(np.sum((a - b) ** 2)) for b in features] for a in features])
    distance = distance / distance.max(axis=1, keepdims=True)
    rank = np.argsort(distance, axis=1, kind="stable")

    def reciprocal(i: int, k: int) -> set[int]:
        return {int(j) for j in rank[i, : k + 1] if i in rank[j, : k + 1]}

    weights = np.zeros((num, num))
    for i in range(num):
        neighbours = reciprocal(i, k1)
        expanded = set(neighbours)
        for j in neighbours:
            candidate = reciprocal(j, int(round(k1 / 2)))
            if len(candidate & neighbours) > 2 / 3 * len(candidate):
                expanded |= candidate
        members = sorted(expanded)
        gaussian = np.exp(-distance[i, members])
        weights[i, members] = gaussian / gaussian.sum()
    if k2 != 1:
        weights = np.array([weights[rank[i, :k2]].mean(axis=0) for i in range(num)])
    jaccard = np.zeros((num_query, num - num_query))
    for q in range(num_query):
        for g in range(num_query, num):
            shared = np.minimum(weights[q], weights[g]).sum()
            jaccard[q, g - num_query] = 1 - shared / (2 - shared)
    return (1 - lambda_value) * jaccard + lambda_value * distance[:num_query, num_query:]


def _clustered_features(seed: int, identities: int = 9, per_identity: int = 7, dim: int = 16):
    """Features around one centre per identity, so that neighbourhoods overlap as real ones do."""
    generator = np.random.default_rng(seed)
    centres = generator.normal(size=(identities, dim))
    features = np.repeat(centres, per_identity, axis=0) + 0.6 * generator.normal(size=(identities * per_identity, dim))
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    order = generator.permutation(len(features))
    return features[order]


@pytest.mark.parametrize(
    ("seed", "k1", "k2", "lambda_value", "num_query"),
    [(0, 20, 6, 0.3, 20), (1, 5, 3, 0.5, 25), (2, 4, 1, 0.0, 10), (3, 8, 6, 1.0, 30), (4, 20, 6, 0.3, 2)],
)
def test_equals_the_papers_steps_written_as_loops(seed, k1, k2, lambda_value, num_query):
    features = _clustered_features(seed) if num_query > 2 else _clustered_features(seed)[:5]  # 5 < k2 + 1 images
    query, gallery = features[:num_query], features[num_query:]
    expected = rerank_by_loops(query, gallery, k1, k2, lambda_value)
    result = k_reciprocal_distances(
        torch.from_numpy(query), torch.from_numpy(gallery), RerankSettings(k1, k2, lambda_value)
    )
    assert result.shape == (num_query, len(gallery)) and result.dtype == torch.float64
    np.testing.assert_allclose(result.numpy(), expected, atol=1e-5)
    assert not np.allclose(expected, expected[:, :1])  # the case is not degenerate


def test_float32_features_and_small_chunks_give_the_same_distances(monkeypatch):
    features = _clustered_features(4)
    expected = rerank_by_loops(features[:15], features[15:], 20, 6, 0.3)
    monkeypatch.setattr(rerank_module, "_CHUNK_ELEMENTS", 300)  # dozens of chunks in every step
    single = torch.from_numpy(features).float()
    result = k_reciprocal_distances(single[:15], single[15:])
    assert result.dtype == torch.float32
    np.testing.assert_allclose(result.numpy(), expected, atol=1e-5)


def test_reranking_breaks_a_plain_tie_by_the_neighbourhoods():
    """The query (origin) is exactly as far from gallery image A (1, 0) as from B (-1, 0). Three images
    lie between it and A, none near B: with k1 = 4, A and the query share k-reciprocal neighbours and
    A ranks first; a re-ranking that changed nothing would leave the tie."""
    query = np.array([[0.0, 0.0]])
    gallery = np.array([[1.0, 0.0], [-1.0, 0.0], [0.3, 0.0], [0.52, 0.0], [0.7, 0.0], [5.0, 5.0]])
    plain = ((query[:, None] - gallery[None]) ** 2).sum(-1)
    assert plain[0, 0] == plain[0, 1]
    distances = k_reciprocal_distances(torch.from_numpy(query), torch.from_numpy(gallery), RerankSettings(4, 2, 0.3))
    assert distances[0, 0] < distances[0, 1] - 0.1
    np.testing.assert_allclose(distances.numpy(), rerank_by_loops(query, gallery, 4, 2, 0.3), atol=1e-12)


def test_tied_neighbours_are_taken_in_index_order_as_a_stable_sort_takes_them():
    """Five points of a small integer grid, each three times: each point's copies tie at distance 0,
    and (0, 0)'s neighbours (1, 0) and (0, 1) tie at 1, so every k-th neighbour is one of a tie. The
    squared distances are small integers, exact in any summation order (the implementation's
    |a|^2 + |b|^2 - 2ab by a matrix product, the loops' sum of (a - b)^2) and after dividing by the
    row's largest, so every tie is a true tie in both; random float rows would tie only nearly, and
    the two formulas could order them differently on another CPU. Taking the ties in the reverse
    index order changes 11 of the 44 distances by up to 0.07."""
    features = np.tile(np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]]), (3, 1))
    expected = rerank_by_loops(features[:4], features[4:], 3, 2, 0.3)
    result = k_reciprocal_distances(
        torch.from_numpy(features[:4]), torch.from_numpy(features[4:]), RerankSettings(3, 2)
    )
    np.testing.assert_allclose(result.numpy(), expected, atol=1e-5)


def test_settings_are_checked_and_labelled():
    assert RerankSettings().describe() == "re-ranked (k1 20, k2 6, λ 0.3)"
    assert RerankSettings.from_dict(RerankSettings(5, 2, 0.5).to_dict()) == RerankSettings(5, 2, 0.5)
    with pytest.raises(UserError, match="re-ranking k2: expected at least 1, got 0"):
        RerankSettings(k2=0)
    with pytest.raises(UserError, match="re-ranking lambda: expected 0 to 1, got 1.5"):
        RerankSettings(lambda_value=1.5)


def test_a_protocol_scored_re_ranked_says_so_and_equals_ranking_the_re_ranked_distances(sysu_root):
    images = sysu_test_images(sysu_root)
    # each image: its identity's 16 random signs, a fifth of them flipped, times a power of two. Every
    # row's norm is a power of two, so normalising it (the protocol normalises twice, the check below
    # once) and every distance after it is exact in any order of summation: both sides rank the same
    # numbers, true ties included
    generator = np.random.default_rng(6)
    centres = generator.choice([-1.0, 1.0], size=(int(images.person_ids.max()) + 1, 16))
    flips = np.where(generator.random((len(images), 16)) < 0.2, -1.0, 1.0)
    scales = 2.0 ** generator.integers(-1, 3, size=(len(images), 1))
    features = FeatureSet((centres[images.person_ids] * flips * scales).astype(np.float32), images)
    settings = RerankSettings(6, 3, 0.3)
    plain = evaluate_protocol("sysu-all", [features], trials=[0, 1])
    reranked = evaluate_protocol("sysu-all", [features], trials=[0, 1], rerank=settings)
    assert plain.label == "sysu-all single-shot (agw draws)"
    assert reranked.label == "sysu-all single-shot (agw draws), re-ranked (k1 6, k2 3, λ 0.3)"
    assert plain.to_dict()["reranked"] is None and reranked.to_dict()["reranked"] == {
        "k1": 6,
        "k2": 3,
        "lambda_value": 0.3,
    }
    normalised = torch.nn.functional.normalize(torch.from_numpy(features.features), dim=1)
    for trial in reranked.trials:
        query_rows, gallery_rows = trial_rows(get_protocol("sysu-all"), images, trial.trial, GalleryOptions())
        distances = k_reciprocal_distances(normalised[query_rows], normalised[gallery_rows], settings)
        expected = rank_metrics(
            distances,
            images.person_ids[query_rows],
            images.person_ids[gallery_rows],
            images.camera_ids[query_rows],
            images.camera_ids[gallery_rows],
            "sysu",
        )
        np.testing.assert_array_equal(trial.metrics.cmc, expected.cmc)
        assert trial.metrics.mAP == expected.mAP
    assert reranked.mean() != plain.mean()
    table = results_table([plain, reranked])
    assert table.count("re-ranked") == 1 and len(table.splitlines()) == 4  # header, rule, a plain and a re-ranked row


def test_cli_evaluate_prints_and_keeps_both_rows(sysu_root, tmp_path, capsys):
    images = sysu_test_images(sysu_root)
    features = np.random.default_rng(7).normal(size=(len(images), 8)).astype(np.float32)
    path = save_features(tmp_path / "f.npz", FeatureSet(features, images))
    arguments = ["evaluate", "--features", str(path), "--protocol", "sysu-all", "--trials", "0"]
    assert main([*arguments, "--rerank", "--k1", "5", "--json", str(tmp_path / "r.json")]) == 0
    printed = capsys.readouterr().out
    assert "| sysu-all single-shot (agw draws) |" in printed
    assert "| sysu-all single-shot (agw draws), re-ranked (k1 5, k2 6, λ 0.3) |" in printed
    records = json.loads((tmp_path / "r.json").read_text())
    assert [record["reranked"] for record in records] == [None, {"k1": 5, "k2": 6, "lambda_value": 0.3}]
    with pytest.raises(SystemExit) as exited:  # refused by the flag's parser, before any work
        main([*arguments, "--lambda", "1.5"])
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip().endswith("argument --lambda: expected 0 to 1, got '1.5'")
    assert main([*arguments, "--k2", "3"]) == 0
    assert "re-ranked (k1 20, k2 3, λ 0.3) |" in capsys.readouterr().out
