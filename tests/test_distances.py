"""Named distances (test.distance): cosine and DEEN's dot product, in the evaluator, the protocols'
records and table, and the gallery index. Features are small integers, so every dot product is exact
in float32 and both sides of a comparison see the same ties."""

from __future__ import annotations

import numpy as np
import pytest

from vireid.data.splits import Split
from vireid.datasets import get_protocol
from vireid.datasets.regdb import regdb_test_images
from vireid.datasets.sysu import sysu_test_images
from vireid.errors import UserError
from vireid.evaluation.feature_file import FeatureSet
from vireid.evaluation.metrics import distance_of, pairwise_distances, rank_metrics
from vireid.evaluation.protocols import evaluate_protocol, results_table, trial_rows
from vireid.retrieval.index import GalleryIndex


def test_dot_and_cosine_distances_by_hand():
    query = np.array([[1, 0]], dtype=np.float32)
    gallery = np.array([[2, 0], [3, 3]], dtype=np.float32)
    np.testing.assert_allclose(pairwise_distances(query, gallery, "dot").numpy(), [[-2, -3]])
    np.testing.assert_allclose(pairwise_distances(query, gallery, "cosine").numpy(), [[-1, -(0.5**0.5)]], rtol=1e-6)
    np.testing.assert_allclose(pairwise_distances(query, gallery).numpy(), [[-1, -(0.5**0.5)]], rtol=1e-6)


def test_the_distance_is_read_from_the_model_signature():
    assert distance_of({"model": {"distance": "dot"}}) == "dot"
    assert distance_of({"model": {"backbone": "resnet50"}}) == "cosine"  # written before distances were named
    assert distance_of({}) == "cosine" and distance_of(None) == "cosine"


def _integer_features(images: Split, distance: str, seed: int = 0) -> FeatureSet:
    """Integer features in -3..3 with rows of very different lengths (1 to 4 times), so that the dot
    product ranks otherwise than the cosine."""
    rng = np.random.default_rng(seed)
    features = rng.integers(-3, 4, size=(len(images), 6)) * rng.integers(1, 5, size=(len(images), 1))
    return FeatureSet(features.astype(np.float32), images, {"model": {"distance": distance}})


def test_a_protocol_scores_dot_features_by_their_dot_product(sysu_root):
    images = sysu_test_images(sysu_root)
    dot, cosine = _integer_features(images, "dot"), _integer_features(images, "cosine")
    result = evaluate_protocol("sysu-all", [dot], trials=[0])
    query_rows, gallery_rows = trial_rows(get_protocol("sysu-all"), images, 0)
    features = dot.features.astype(np.float64)
    expected = rank_metrics(
        -features[query_rows] @ features[gallery_rows].T,  # exact integers: the same ties as the evaluator's
        images.person_ids[query_rows],
        images.person_ids[gallery_rows],
        images.camera_ids[query_rows],
        images.camera_ids[gallery_rows],
        "sysu",
    )
    measured = result.trials[0].metrics
    np.testing.assert_array_equal(measured.cmc, expected.cmc)
    assert measured.mAP == pytest.approx(expected.mAP, abs=1e-12)
    assert measured.mAP != pytest.approx(evaluate_protocol("sysu-all", [cosine], trials=[0]).trials[0].metrics.mAP)
    assert result.distance == "dot" and result.to_dict()["distance"] == "dot"
    assert results_table([result]).endswith("Features compared by dot product (test.distance: dot).")
    assert "compared by" not in results_table([evaluate_protocol("sysu-all", [cosine], trials=[0])])


def test_features_of_two_distances_are_not_scored_together(regdb_root):
    sets = []
    for trial, distance in ((1, "dot"), (2, "cosine")):
        feature_set = _integer_features(regdb_test_images(regdb_root, trial), distance)
        feature_set.metadata["trial"] = trial
        sets.append(FeatureSet(feature_set.features, feature_set.images, feature_set.metadata, f"trial{trial}.npz"))
    with pytest.raises(UserError, match=r"trial2.npz: features scored by cosine distance, those of trial1.npz by dot"):
        evaluate_protocol("regdb-v2t", sets)


def test_an_index_of_dot_features_searches_by_dot_product(tmp_path):
    gallery = np.array([[2, 0], [3, 3], [0, 1], [-1, 4]], dtype=np.float32)
    images = Split(
        paths=[f"{tmp_path}/{row}.jpg" for row in range(4)],
        person_ids=np.arange(4),
        camera_ids=np.ones(4, dtype=np.int64),
        modalities=np.zeros(4, dtype=np.int64),
    )
    metadata = {"root": str(tmp_path), "model": {"distance": "dot"}}
    index = GalleryIndex.build(FeatureSet(gallery, images, metadata))
    scores, rows = index.search(np.array([[1, 0], [0, 2]], dtype=np.float32), 4)
    np.testing.assert_array_equal(rows, [[1, 0, 2, 3], [3, 1, 2, 0]])
    np.testing.assert_array_equal(scores, [[3, 2, 0, -1], [8, 6, 2, 0]])
    loaded = GalleryIndex.load(index.save(tmp_path / "dot.npz"))
    np.testing.assert_array_equal(loaded.search(np.array([[1, 0]], dtype=np.float32), 2)[0], [[3, 2]])
