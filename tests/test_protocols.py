"""Protocols over trials: selection from a feature file equals selection from disk,
known answers on perfect features, mean/std and the printed table."""

from __future__ import annotations

import numpy as np
import pytest
from near_ties import assert_no_near_ties

from vireid.data.splits import Split
from vireid.datasets import GalleryOptions, get_protocol, protocol_names, read_trial_split
from vireid.datasets.llcm import llcm_test_images, llcm_trial_rows
from vireid.datasets.regdb import regdb_test_images
from vireid.datasets.sysu import load_official_permutations, sysu_test_images
from vireid.errors import UserError
from vireid.evaluation.feature_file import FeatureSet
from vireid.evaluation.metrics import rank_metrics
from vireid.evaluation.protocols import ScoredRows, evaluate_protocol, results_table, scored_rows
from vireid.modality import Modality


def _random_features(images, seed=0, dimension=8) -> FeatureSet:
    return FeatureSet(np.random.default_rng(seed).normal(size=(len(images), dimension)).astype(np.float32), images)


def _identity_features(images) -> FeatureSet:
    """One-hot person features: every same-id pair has distance -1, every other 0."""
    ids = sorted(set(images.person_ids.tolist()))
    features = np.zeros((len(images), len(ids)), dtype=np.float32)
    features[np.arange(len(images)), [ids.index(i) for i in images.person_ids.tolist()]] = 1
    return FeatureSet(features, images)


def _score_from_disk(feature_set, query, gallery, scoring):
    row_of = {path: row for row, path in enumerate(feature_set.images.paths)}
    unit = feature_set.features / np.linalg.norm(feature_set.features, axis=1, keepdims=True)
    query_features = unit[[row_of[path] for path in query.paths]].astype(np.float64)
    gallery_features = unit[[row_of[path] for path in gallery.paths]].astype(np.float64)
    distances = -query_features @ gallery_features.T
    assert_no_near_ties(distances)  # the evaluator's float32 distances rank alike, their metrics agree to rounding
    return rank_metrics(
        distances,
        query.person_ids,
        gallery.person_ids,
        query.camera_ids,
        gallery.camera_ids,
        scoring,
    )


@pytest.mark.parametrize("name, mode", [("sysu-all", "all"), ("sysu-indoor", "indoor")])
def test_sysu_trials_from_features_equal_trials_read_from_disk(sysu_root, name, mode):
    feature_set = _random_features(sysu_test_images(sysu_root))
    result = evaluate_protocol(name, [feature_set])
    assert [trial.trial for trial in result.trials] == list(range(10))
    for trial in result.trials[:3]:
        query, gallery = read_trial_split(f"sysu-{mode}", sysu_root, trial.trial)
        expected = _score_from_disk(feature_set, query, gallery, "sysu")
        assert (trial.num_query, trial.num_gallery) == (len(query), len(gallery))
        np.testing.assert_allclose(trial.metrics.cmc, expected.cmc, atol=1e-6)
        assert trial.metrics.mAP == pytest.approx(expected.mAP, abs=1e-6)
        assert trial.metrics.mINP == pytest.approx(expected.mINP, abs=1e-6)


def test_sysu_official_and_multi_shot_from_features_equal_disk(sysu_root):
    feature_set = _random_features(sysu_test_images(sysu_root), seed=1)
    permutations = load_official_permutations(sysu_root / "exp/rand_perm_cam.mat")
    result = evaluate_protocol(
        "sysu-all", [feature_set], trials=[4], options=GalleryOptions("multi", "official", permutations)
    )
    query, gallery = read_trial_split("sysu-all", sysu_root, 4, GalleryOptions("multi", "official"))
    expected = _score_from_disk(feature_set, query, gallery, "sysu")
    assert result.trials[0].metrics.mAP == pytest.approx(expected.mAP, abs=1e-6)
    assert result.label == "sysu-all multi-shot (official draws)"


@pytest.mark.parametrize("mode", ["ir2vis", "vis2ir", "vis2ir-visible-queries"])
def test_llcm_trials_from_features_equal_disk(llcm_root, mode):
    feature_set = _random_features(llcm_test_images(llcm_root), seed=2)
    result = evaluate_protocol(f"llcm-{mode}", [feature_set], trials=[0, 3])
    for trial in result.trials:
        query, gallery = read_trial_split(f"llcm-{mode}", llcm_root, trial.trial)
        expected = _score_from_disk(feature_set, query, gallery, "llcm")
        np.testing.assert_allclose(trial.metrics.cmc, expected.cmc, atol=1e-6)
        assert trial.metrics.mAP == pytest.approx(expected.mAP, abs=1e-6)


def test_perfect_features_score_one_everywhere(sysu_root, llcm_root):
    for name, images in (("sysu-all", sysu_test_images(sysu_root)), ("llcm-vis2ir", llcm_test_images(llcm_root))):
        mean = evaluate_protocol(name, [_identity_features(images)]).mean()
        assert mean == pytest.approx({"rank1": 1, "rank5": 1, "rank10": 1, "rank20": 1, "mAP": 1, "mINP": 1})


def test_regdb_takes_one_feature_file_per_trial(regdb_root):
    feature_sets = []
    for trial in (2, 5):
        images = regdb_test_images(regdb_root, trial)
        feature_sets.append(FeatureSet(_random_features(images, seed=trial).features, images, {"trial": trial}))
    result = evaluate_protocol("regdb-t2v", feature_sets)
    assert [trial.trial for trial in result.trials] == [2, 5]
    assert result.trials[0].num_query == (feature_sets[0].images.modalities == 1).sum()
    with pytest.raises(UserError, match="one per trial"):
        evaluate_protocol("regdb-t2v", feature_sets, trials=[1])


def test_mean_and_sample_std_over_trials(sysu_root):
    result = evaluate_protocol("sysu-all", [_random_features(sysu_test_images(sysu_root), seed=3)])
    rank1 = np.array([trial.metrics.cmc[0] for trial in result.trials])
    maps = np.array([trial.metrics.mAP for trial in result.trials])
    assert result.mean()["rank1"] == pytest.approx(rank1.sum() / 10)
    assert result.std()["mAP"] == pytest.approx(np.sqrt(((maps - maps.mean()) ** 2).sum() / 9))
    assert result.to_dict()["trials"][3]["mAP"] == pytest.approx(maps[3])


def test_table_names_direction_and_trials(sysu_root):
    result = evaluate_protocol("sysu-all", [_identity_features(sysu_test_images(sysu_root))], trials=[0, 1])
    table = results_table([result])
    assert table.splitlines()[0].startswith("| protocol | query → gallery | trials | R1 |")
    row = table.splitlines()[2]
    assert "sysu-all single-shot (agw draws)" in row
    assert "infrared (cam3, cam6) → visible (cam1, cam2, cam4, cam5)" in row
    assert "| 2 |" in row and "100.00 ± 0.00" in row


def test_unknown_protocol_lists_the_valid_ones():
    with pytest.raises(UserError, match="sysu-all, sysu-indoor, regdb-v2t") as caught:
        get_protocol("sysu")
    assert "'sysu'" in str(caught.value)
    assert set(protocol_names()) == {
        "sysu-all",
        "sysu-indoor",
        "regdb-v2t",
        "regdb-t2v",
        "llcm-ir2vis",
        "llcm-vis2ir",
        "llcm-vis2ir-visible-queries",
    }


def test_sysu_and_llcm_take_one_feature_file(sysu_root):
    feature_set = _random_features(sysu_test_images(sysu_root))
    with pytest.raises(UserError, match="one feature file"):
        evaluate_protocol("sysu-all", [feature_set, feature_set])


def _llcm_hand_case() -> FeatureSet:
    """Persons 1 and 2; one image per folder, so every draw is that image. Features are unit vectors
    at the angles given: A_v1 0, A_v2 60, B_v1 20, B_v2 90 (visible, cam1/cam2), A_n1 10, B_n4 80 (near-infrared)."""
    rows = [  # path, person, camera, modality, angle in degrees
        ("test_vis/cam1/0001/a.jpg", 1, 1, 0, 0),
        ("test_vis/cam2/0001/a.jpg", 1, 2, 0, 60),
        ("test_vis/cam1/0002/a.jpg", 2, 1, 0, 20),
        ("test_vis/cam2/0002/a.jpg", 2, 2, 0, 90),
        ("test_nir/cam1/0001/a.jpg", 1, 1, 1, 10),
        ("test_nir/cam4/0002/a.jpg", 2, 4, 1, 80),
    ]
    images = Split(
        paths=[row[0] for row in rows],
        person_ids=[row[1] for row in rows],
        camera_ids=[row[2] for row in rows],
        modalities=[row[3] for row in rows],
    )
    angles = np.radians([row[4] for row in rows])
    return FeatureSet(np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32), images)


@pytest.mark.parametrize(
    "name, rank1, mAP, mINP",
    [
        # published VIS->IR: queries A_n1 (A_v1 removed: same person, same camera; ranking B_v1 A_v2 B_v2:
        # rank 2, AP 1/2, INP 1/2) and B_n4 (ranking B_v2 A_v2 B_v1 A_v1: rank 1, AP (1 + 2/3)/2, INP 2/3)
        ("llcm-vis2ir", 1 / 2, (1 / 2 + 5 / 6) / 2, (1 / 2 + 2 / 3) / 2),
        # visible queries: A_v1 loses its only match (same camera) and counts nowhere; A_v2 ranks B_n4 A_n1,
        # B_v1 ranks A_n1 B_n4 (both AP 1/2), B_v2 ranks B_n4 first
        ("llcm-vis2ir-visible-queries", 1 / 3, (1 / 2 + 1 / 2 + 1) / 3, (1 / 2 + 1 / 2 + 1) / 3),
    ],
)
def test_llcm_vis2ir_readings_on_a_hand_built_case(name, rank1, mAP, mINP):
    trial = evaluate_protocol(name, [_llcm_hand_case()], trials=[0]).trials[0]
    assert trial.metrics.cmc[0] == pytest.approx(rank1)
    assert trial.metrics.mAP == pytest.approx(mAP)
    assert trial.metrics.mINP == pytest.approx(mINP)


def test_published_llcm_vis2ir_is_the_transposed_visible_query_matrix(llcm_root):
    """The LLCM test scripts: eval_llcm(-distmat.T, gallery ids, query ids, gallery cameras, query cameras)
    on the distance matrix of visible queries against the drawn near-infrared gallery."""
    feature_set = _random_features(llcm_test_images(llcm_root), seed=4)
    images, unit = feature_set.images, feature_set.features / np.linalg.norm(feature_set.features, axis=1)[:, None]
    for trial in (0, 7):
        visible, drawn = llcm_trial_rows(images, "vis2ir-visible-queries", trial)
        assert llcm_trial_rows(images, "vis2ir", trial) == (drawn, visible)
        distances = -(unit[visible].astype(np.float64) @ unit[drawn].astype(np.float64).T)
        assert_no_near_ties(distances.T)
        expected = rank_metrics(
            distances.T,
            images.person_ids[drawn],
            images.person_ids[visible],
            images.camera_ids[drawn],
            images.camera_ids[visible],
            "llcm",
        )
        measured = evaluate_protocol("llcm-vis2ir", [feature_set], trials=[trial]).trials[0].metrics
        np.testing.assert_allclose(measured.cmc, expected.cmc, atol=1e-6)
        assert (measured.mAP, measured.mINP) == (pytest.approx(expected.mAP, abs=1e-6), pytest.approx(expected.mINP))


@pytest.mark.parametrize(
    "name, trials, options",
    [
        ("sysu-all", [0, 3], GalleryOptions()),
        ("sysu-indoor", [1], GalleryOptions("multi")),
        ("llcm-vis2ir", [0, 2], GalleryOptions()),
        ("llcm-ir2vis", [5], GalleryOptions()),
    ],
)
def test_the_scored_rows_are_the_trials_queries_and_galleries(sysu_root, llcm_root, name, trials, options):
    """A training run's evaluation extracts only these images: each trial's query and gallery as
    read from disk, fewer than every test image."""
    root = sysu_root if name.startswith("sysu") else llcm_root
    images = sysu_test_images(root) if name.startswith("sysu") else llcm_test_images(root)
    rows = scored_rows(name, images, trials, options).rows
    on_disk = set()
    for trial in trials:
        query, gallery = read_trial_split(name, root, trial, options)
        on_disk |= set(query.paths) | set(gallery.paths)
    assert rows.tolist() == sorted(set(rows.tolist())) and {images.paths[row] for row in rows} == on_disk
    assert len(rows) < len(images)


def _crowded_sysu_images() -> Split:
    """SYSU-MM01 test images, 12 in every folder of 5 persons (the synthetic sets have 1-3): drawing
    a gallery from only the scored images would then differ from drawing it from all."""
    folders = [(person, camera) for person in range(1, 6) for camera in (1, 2, 3, 4, 5, 6)]
    rows = [(person, camera, index) for person, camera in folders for index in range(12)]
    return Split(
        paths=tuple(f"SYSU-MM01/cam{camera}/{person:04d}/{index + 1:04d}.jpg" for person, camera, index in rows),
        person_ids=np.array([person for person, _, _ in rows]),
        camera_ids=np.array([camera for _, camera, _ in rows]),
        modalities=np.array(
            [int(Modality.INFRARED if camera in (3, 6) else Modality.VISIBLE) for _, camera, _ in rows]
        ),
    )


@pytest.mark.parametrize("trials, shot", [([0, 3], "single"), ([0, 1], "multi")])
def test_features_of_only_the_scored_rows_score_as_features_of_every_image(trials, shot):
    """Drawn from every image (drawn_from), the trials of features of the scored rows alone are the
    trials of features of every image: the same queries and galleries, the same figures."""
    images, options = _crowded_sysu_images(), GalleryOptions(shot)
    rows = scored_rows("sysu-all", images, trials, options)
    every = _random_features(images, seed=7)
    scored = FeatureSet(every.features[rows.rows], images.subset(rows.rows))
    expected = evaluate_protocol("sysu-all", [every], trials, options).to_dict()
    result = evaluate_protocol("sysu-all", [scored], trials, options, drawn_from=rows).to_dict()
    assert [(t["trial"], t["num_query"], t["num_gallery"]) for t in result["trials"]] == [
        (t["trial"], t["num_query"], t["num_gallery"]) for t in expected["trials"]
    ]
    assert result["mean"] == pytest.approx(expected["mean"], abs=1e-9)
    np.testing.assert_allclose([t["cmc"] for t in result["trials"]], [t["cmc"] for t in expected["trials"]], atol=1e-9)
    redrawn = evaluate_protocol("sysu-all", [scored], trials, options).to_dict()  # drawn from the scored rows alone
    assert redrawn["mean"] != pytest.approx(expected["mean"], abs=1e-3)


def test_regdb_scores_every_image_of_the_trials_test_set(regdb_root):
    images = regdb_test_images(regdb_root, 3)
    assert scored_rows("regdb-v2t", images, [3]).rows.tolist() == list(range(len(images)))


def test_scored_rows_find_each_image_by_its_row():
    images = _crowded_sysu_images()
    scored = ScoredRows.of(images, [7, 1, 4, 7])
    assert scored.rows.tolist() == [1, 4, 7]
    assert scored.positions([7, 1, 4, 4]).tolist() == [2, 0, 1, 1]
    with pytest.raises(ValueError, match=f"no features of {images.paths[5]} \\(2 scored image\\(s\\) missing\\)"):
        scored.positions([1, 5, 9])


def test_features_missing_a_scored_image_are_refused(sysu_root):
    images = sysu_test_images(sysu_root)
    rows = scored_rows("sysu-all", images, [0]).rows
    short = ScoredRows(images, rows[1:])  # the features of all the trial's images but its first
    features = FeatureSet(_random_features(images).features[short.rows], images.subset(short.rows))
    with pytest.raises(ValueError, match=f"no features of {images.paths[rows[0]]} \\(1 scored image"):
        evaluate_protocol("sysu-all", [features], [0], drawn_from=short)
    with pytest.raises(ValueError, match="drawn_from: expected one feature set of its 20 rows"):
        evaluate_protocol("sysu-all", [features], [0], drawn_from=ScoredRows(images, rows[:20]))
