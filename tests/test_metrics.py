"""CMC / mAP / mINP: hand-scored cases, and random cases against a literal per-query loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from near_ties import assert_no_near_ties

from vireid.errors import UserError
from vireid.evaluation import evaluate_features, pairwise_distances, rank_metrics


def _one(distances, gallery_ids, gallery_cameras, query_id, query_camera, protocol, max_rank=5):
    return rank_metrics(
        np.array([distances], dtype=np.float32),
        np.array([query_id]),
        np.array(gallery_ids),
        np.array([query_camera]),
        np.array(gallery_cameras),
        protocol,
        max_rank=max_rank,
    )


# --- hand-scored cases -----------------------------------------------------------------------


def test_image_level_ranking():
    # ranking: id 2, id 1, id 3, id 1 -> correct at positions 2 and 4
    result = _one([0.1, 0.2, 0.3, 0.4], [2, 1, 3, 1], [2, 2, 2, 2], 1, 1, "regdb")
    np.testing.assert_allclose(result.cmc, [0, 1, 1, 1, 1])
    assert result.mAP == pytest.approx((1 / 2 + 2 / 4) / 2)  # 0.5
    assert result.mINP == pytest.approx(2 / 4)


def test_identity_deduplication_changes_sysu_cmc_only():
    # ranking: id 2, id 2, id 1, id 3; images: first hit at 3; distinct ids: 2, 1 -> rank 2
    args = ([0.1, 0.2, 0.3, 0.4], [2, 2, 1, 3], [1, 4, 1, 5], 1, 6)
    sysu, regdb = _one(*args, "sysu"), _one(*args, "regdb")
    np.testing.assert_allclose(sysu.cmc, [0, 1, 1, 1, 1])
    np.testing.assert_allclose(regdb.cmc, [0, 0, 1, 1, 1])
    assert sysu.mAP == regdb.mAP == pytest.approx(1 / 3)
    assert sysu.mINP == pytest.approx(1 / 3)


def test_sysu_removes_camera_2_for_camera_3_queries_only():
    distances, ids, cameras = [0.1, 0.2, 0.3], [1, 2, 1], [2, 1, 4]
    # cam3 query: the cam2 image goes; ranking id 2, id 1 -> hit at 2
    from_cam3 = _one(distances, ids, cameras, 1, 3, "sysu")
    np.testing.assert_allclose(from_cam3.cmc, [0, 1, 1, 1, 1])
    assert from_cam3.mAP == pytest.approx(1 / 2) and from_cam3.mINP == pytest.approx(1 / 2)
    # cam6 query: nothing removed; hits at 1 and 3
    from_cam6 = _one(distances, ids, cameras, 1, 6, "sysu")
    np.testing.assert_allclose(from_cam6.cmc, [1, 1, 1, 1, 1])
    assert from_cam6.mAP == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert from_cam6.mINP == pytest.approx(2 / 3)


def test_llcm_removes_same_identity_same_camera():
    # query id 1 cam 4: the two id-1 cam-4 images go, the id-2 cam-4 image stays
    result = _one([0.1, 0.2, 0.3, 0.4], [1, 1, 2, 1], [4, 5, 4, 4], 1, 4, "llcm")
    np.testing.assert_allclose(result.cmc, [1, 1, 1, 1, 1])
    assert result.mAP == 1 and result.mINP == 1
    # without removal (regdb) the same ranking has hits at 1, 2, 4
    assert _one([0.1, 0.2, 0.3, 0.4], [1, 1, 2, 1], [4, 5, 4, 4], 1, 4, "regdb").mINP == pytest.approx(3 / 4)


def test_llcm_removal_closes_up_positions_and_dedup_counts_ids():
    # query id 1 cam 4; ranking: id 2 cam 4, id 1 cam 4, id 2 cam 5, id 3 cam 1, id 1 cam 7
    args = ([0.1, 0.2, 0.3, 0.4, 0.5], [2, 1, 2, 3, 1], [4, 4, 5, 1, 7], 1, 4)
    # llcm: the id-1 cam-4 image goes (the id-2 cam-4 one stays); kept: id 2, 2, 3, 1 -> hit at
    # image 4; distinct ids 2, 3, 1 -> rank 3; AP = 1/4, INP = 1/4
    llcm = _one(*args, "llcm")
    np.testing.assert_allclose(llcm.cmc, [0, 0, 1, 1, 1])
    assert llcm.mAP == pytest.approx(0.25) and llcm.mINP == pytest.approx(0.25)
    # regdb keeps everything: hits at 2 and 5 -> AP = (1/2 + 2/5) / 2 = 0.45, INP = 2/5
    regdb = _one(*args, "regdb")
    np.testing.assert_allclose(regdb.cmc, [0, 1, 1, 1, 1])
    assert regdb.mAP == pytest.approx(0.45) and regdb.mINP == pytest.approx(0.4)


def test_invalid_queries_count_in_no_average():
    distances = np.array([[0.1, 0.2], [0.1, 0.2], [0.3, 0.1]])
    # query 0 (id 1): hit at 1; query 1 (id 9): not in the gallery; query 2 (id 1, cam3): its only
    # id-1 image is in cam2 and is removed -> invalid too
    result = rank_metrics(distances, [1, 9, 1], [1, 2], [6, 6, 3], [2, 1], "sysu", max_rank=2)
    assert result.num_valid_queries == 1 and result.num_queries == 3
    np.testing.assert_allclose(result.cmc, [1, 1])
    assert result.mAP == 1 and result.mINP == 1


def test_ties_keep_gallery_order():
    # all distances equal: ranking is gallery order id 2, 1, 1, 2 -> hits at 2 and 3
    result = _one([0.5, 0.5, 0.5, 0.5], [2, 1, 1, 2], [1, 1, 1, 1], 1, 2, "regdb")
    np.testing.assert_allclose(result.cmc, [0, 1, 1, 1, 1])
    assert result.mAP == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert result.mINP == pytest.approx(2 / 3)
    # 0.1 first, then the three 0.5s in gallery order: id 3, id 2, id 1, id 1 -> hits at 3 and 4
    result = _one([0.5, 0.5, 0.1, 0.5], [2, 1, 3, 1], [1, 1, 1, 1], 1, 2, "regdb")
    assert result.mAP == pytest.approx((1 / 3 + 2 / 4) / 2)
    # -0.0 and 0.0 are equal distances, so gallery order decides between them
    result = _one([0.0, -0.0], [2, 1], [1, 1], 1, 2, "regdb")
    np.testing.assert_allclose(result.cmc[:2], [0, 1])


def test_gallery_shorter_than_max_rank_keeps_the_final_value():
    result = _one([0.2, 0.1], [1, 2], [1, 1], 1, 2, "regdb", max_rank=20)
    assert result.cmc.shape == (20,)
    np.testing.assert_allclose(result.cmc, [0] + [1] * 19)
    assert result.rank(1) == 0 and result.rank(20) == 1


# --- against a literal per-query loop ----------------------------------------------------------


def _brute_force(distances, query_ids, gallery_ids, query_cameras, gallery_cameras, protocol, max_rank):
    """The rules of protocols.md, one query at a time, with plain Python lists."""
    curves, precisions, inverse_negative = [], [], []
    for q in range(len(query_ids)):
        ranking = sorted(range(len(gallery_ids)), key=lambda g: (distances[q][g], g))
        kept = [
            g
            for g in ranking
            if not (protocol == "sysu" and query_cameras[q] == 3 and gallery_cameras[g] == 2)
            and not (protocol == "llcm" and gallery_ids[g] == query_ids[q] and gallery_cameras[g] == query_cameras[q])
        ]
        correct = [gallery_ids[g] == query_ids[q] for g in kept]
        if not any(correct):
            continue
        if protocol == "regdb":
            first = correct.index(True) + 1
        else:
            distinct = []
            for g in kept:
                if gallery_ids[g] not in distinct:
                    distinct.append(gallery_ids[g])
            first = distinct.index(query_ids[q]) + 1
        curves.append([1.0 if first <= k else 0.0 for k in range(1, max_rank + 1)])
        hits, precision_at_hits = 0, []
        for position, is_correct in enumerate(correct, start=1):
            if is_correct:
                hits += 1
                precision_at_hits.append(hits / position)
                last = position
        precisions.append(sum(precision_at_hits) / hits)
        inverse_negative.append(hits / last)
    if not curves:
        return None
    return np.mean(curves, axis=0), float(np.mean(precisions)), float(np.mean(inverse_negative))


def _random_case(rng, protocol, distance_kind, num_queries=None, num_gallery=None):
    num_queries = num_queries or int(rng.integers(1, 25))
    num_gallery = num_gallery or int(rng.integers(1, 35))
    num_ids = int(rng.integers(1, 7))
    cameras = {"sysu": (1, 7), "llcm": (1, 10), "regdb": (1, 3)}[protocol]
    shape = (num_queries, num_gallery)
    distances = {
        "ties": lambda: rng.integers(-2, 3, shape).astype(np.float32) * np.float32(0.5),
        # ties among values float32 cannot hold exactly: the sort takes its other route
        "ties64": lambda: rng.integers(-2, 3, shape) * 0.1,
        "float32": lambda: rng.normal(size=shape).astype(np.float32),
        "float64": lambda: rng.normal(size=shape),
    }[distance_kind]()
    return (
        distances,
        rng.integers(0, num_ids, num_queries),
        rng.integers(0, num_ids, num_gallery),
        rng.integers(*cameras, num_queries),
        rng.integers(*cameras, num_gallery),
    )


@pytest.mark.parametrize("protocol", ["sysu", "regdb", "llcm"])
@pytest.mark.parametrize("distance_kind", ["ties", "ties64", "float32", "float64"])
def test_random_cases_match_the_per_query_loop(protocol, distance_kind):
    kinds = ["ties", "ties64", "float32", "float64"]
    rng = np.random.default_rng(["sysu", "regdb", "llcm"].index(protocol) * len(kinds) + kinds.index(distance_kind))
    checked = 0
    edge_sizes = [(1, 1), (1, None), (None, 1)] * 3  # a single query and/or a single gallery image
    for sizes in edge_sizes + [(None, None)] * 60:
        case = _random_case(rng, protocol, distance_kind, *sizes)
        expected = _brute_force(*case, protocol, max_rank=10)
        if expected is None:
            with pytest.raises(ValueError, match="no valid query"):
                rank_metrics(*case, protocol, max_rank=10)
            continue
        result = rank_metrics(*case, protocol, max_rank=10)
        np.testing.assert_allclose(result.cmc, expected[0], atol=1e-9)
        assert result.mAP == pytest.approx(expected[1], abs=1e-9)
        assert result.mINP == pytest.approx(expected[2], abs=1e-9)
        checked += 1
    assert checked > 30


@pytest.mark.parametrize("protocol", ["sysu", "regdb", "llcm"])
def test_tensors_numpy_and_chunking_agree(protocol):
    rng = np.random.default_rng(5)
    case = _random_case(rng, protocol, "ties")
    while _brute_force(*case, protocol, 20) is None or len(case[1]) < 8:
        case = _random_case(rng, protocol, "ties")
    reference = rank_metrics(*case, protocol)
    as_tensors = rank_metrics(*(torch.as_tensor(values) for values in case), protocol)
    as_float64 = rank_metrics(case[0].astype(np.float64), *case[1:], protocol)
    negative_strides = np.ascontiguousarray(case[0][:, ::-1])[:, ::-1]  # same values, a reversed view
    reversed_view = rank_metrics(negative_strides, *case[1:], protocol)
    needs_grad = rank_metrics(torch.as_tensor(case[0]).requires_grad_(), *case[1:], protocol)
    chunked = [rank_metrics(*case, protocol, query_chunk_size=size) for size in (1, 3, 7)]
    for result in [as_tensors, as_float64, reversed_view, needs_grad, *chunked]:
        np.testing.assert_array_equal(result.cmc, reference.cmc)
        assert result.mAP == reference.mAP and result.mINP == reference.mINP
        assert result.num_valid_queries == reference.num_valid_queries


def test_result_types():
    result = rank_metrics(np.array([[0.2, 0.1]]), [1], [1, 2], [1], [2, 2], "regdb", max_rank=3)
    assert result.cmc.dtype == np.float64 and result.cmc.shape == (3,)
    assert type(result.mAP) is float and type(result.mINP) is float
    assert type(result.num_valid_queries) is int and type(result.num_queries) is int
    with pytest.raises(AttributeError):
        result.mAP = 0.0  # frozen


def test_evaluate_features_uses_negative_cosine():
    rng = np.random.default_rng(6)
    query, gallery = rng.normal(size=(12, 5)), rng.normal(size=(20, 5))
    query_ids, gallery_ids = rng.integers(0, 4, 12), rng.integers(0, 4, 20)
    cameras_q, cameras_g = rng.integers(1, 3, 12), rng.integers(1, 3, 20)
    unit_query = query / np.linalg.norm(query, axis=1, keepdims=True)
    unit_gallery = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    distances = -(unit_query @ unit_gallery.T)
    assert_no_near_ties(distances)  # evaluate_features's float32 distances rank alike
    expected = rank_metrics(distances, query_ids, gallery_ids, cameras_q, cameras_g, "regdb")
    for query_features in (query * 3.0, torch.as_tensor(query * 3.0)):  # the scale must not matter
        result = evaluate_features(query_features, gallery, query_ids, gallery_ids, cameras_q, cameras_g, "regdb")
        np.testing.assert_allclose(result.cmc, expected.cmc, atol=1e-6)
        assert result.mAP == pytest.approx(expected.mAP, abs=1e-6)
        assert result.mINP == pytest.approx(expected.mINP, abs=1e-6)
    np.testing.assert_allclose(pairwise_distances(query, gallery).numpy(), -(unit_query @ unit_gallery.T), atol=1e-6)


def test_errors_name_what_is_wrong():
    with pytest.raises(UserError, match="unknown dataset 'market'; expected one of sysu, regdb, llcm"):
        rank_metrics(np.zeros((1, 1)), [1], [1], [1], [1], "market")
    with pytest.raises(ValueError, match=r"G = 2"):
        rank_metrics(np.zeros((1, 2)), [1], [1, 2, 3], [1], [1, 1, 1], "regdb")
    with pytest.raises(ValueError, match=r"Q = 1"):
        rank_metrics(np.zeros((1, 2)), [1, 2], [1, 2], [1], [1, 1], "regdb")
    with pytest.raises(ValueError, match="no valid query"):
        rank_metrics(np.zeros((2, 2)), [5, 6], [1, 2], [1, 1], [2, 2], "regdb")
    with pytest.raises(ValueError, match="query_chunk_size"):
        rank_metrics(np.zeros((1, 1)), [1], [1], [1], [1], "regdb", query_chunk_size=0)


def test_ranked_gallery_is_the_scored_order_without_removed_images():
    from vireid.evaluation.metrics import ranked_gallery

    distances = np.array([[0.3, 0.1, 0.1, 0.5, 0.0], [0.3, 0.1, 0.1, 0.5, 0.0]])
    gallery_ids = [7, 7, 8, 9, 8]
    gallery_cameras = [1, 2, 2, 4, 5]
    # sysu: the camera-3 query loses the camera-2 images (1, 2); the camera-6 query keeps them, tie 1 before 2
    ranked = ranked_gallery(distances, [7, 7], gallery_ids, [3, 6], gallery_cameras, "sysu", top_k=3)
    assert ranked[0].tolist() == [4, 0, 3]
    assert ranked[1].tolist() == [4, 1, 2]
    # llcm: same person and same camera is removed (image 0 for a person-7 camera-1 query), others stay
    ranked = ranked_gallery(distances[:1], [7], gallery_ids, [1], gallery_cameras, "llcm", top_k=10)
    assert ranked[0].tolist() == [4, 1, 2, 3]
    ranked = ranked_gallery(distances[:1], [7], gallery_ids, [1], gallery_cameras, "regdb", top_k=2)
    assert ranked[0].tolist() == [4, 1]
