"""The gallery index: the evaluator's ranking, ties, IVF, the index file, errors, and the hit listings."""

from __future__ import annotations

import json

import faiss
import numpy as np
import pytest
from near_ties import assert_no_near_ties, cosine_distances

from vireid.data import Split
from vireid.errors import UserError
from vireid.evaluation.feature_file import FeatureSet, load_features, save_features
from vireid.evaluation.metrics import gallery_order, pairwise_distances
from vireid.retrieval.faiss_layout import check_faiss_layout
from vireid.retrieval.index import GalleryIndex, GalleryIndexError, IndexFileError, default_nlist, ensure_same_model
from vireid.retrieval.search import hits_table, hits_to_json, search_gallery

MODEL = {"backbone": "resnet50", "parts": 6, "part_dim": 512, "feature": "both", "after_bn": True, "dimension": 5120}


def _feature_set(features: np.ndarray, root: str, name: str = "gallery", person_ids=None) -> FeatureSet:
    count = len(features)
    images = Split(
        paths=[f"{root}/{name}/{row:04d}.jpg" for row in range(count)],
        person_ids=np.arange(count) // 2 if person_ids is None else person_ids,
        camera_ids=np.arange(count) % 4 + 1,
        modalities=np.arange(count) % 2,
    )
    return FeatureSet(np.asarray(features, dtype=np.float32), images, {"root": root, "model": MODEL})


def _random(rows: int, dimension: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, dimension)).astype(np.float32)


def _clustered(rows: int, centers: np.ndarray, seed: int, spread: float = 0.1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    chosen = centers[rng.integers(0, len(centers), rows)]
    return (chosen + spread * rng.standard_normal(chosen.shape)).astype(np.float32)


def _evaluator_ranking(queries: np.ndarray, gallery: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    distances = pairwise_distances(queries, gallery)  # (Q, G)
    rows = gallery_order(distances).numpy()[:, :k]
    return -np.take_along_axis(distances.numpy(), rows, axis=1), rows


@pytest.mark.parametrize("top_k", [1, 7, 50, 200])
def test_flat_ranks_as_the_evaluator(tmp_path, top_k):
    gallery, queries = _random(50, 16, seed=1) * 3.0, _random(30, 16, seed=24)
    assert_no_near_ties(cosine_distances(queries, gallery))  # the evaluator's float32, the index's float64
    index = GalleryIndex.build(_feature_set(gallery, str(tmp_path)))
    scores, rows = index.search(queries, top_k)
    expected_scores, expected_rows = _evaluator_ranking(queries, gallery, top_k)
    assert scores.shape == rows.shape == (30, min(top_k, 50))
    assert scores.dtype == np.float32 and rows.dtype == np.int64
    np.testing.assert_array_equal(rows, expected_rows)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 0)


def test_exact_ties_come_in_ascending_row_order_even_across_the_kth_place(tmp_path):
    rng = np.random.default_rng(3)
    best = rng.standard_normal(2048).astype(np.float32)
    gallery = rng.standard_normal((300, 2048)).astype(np.float32)
    duplicates = np.sort(rng.choice(300, size=40, replace=False))
    gallery[duplicates] = best
    queries = (best + 0.3 * rng.standard_normal((64, 2048))).astype(np.float32)  # 64 queries: FAISS's BLAS path
    others = np.setdiff1d(np.arange(300), duplicates)
    assert_no_near_ties(cosine_distances(queries, gallery[others]), places=6)
    index = GalleryIndex.build(_feature_set(gallery, str(tmp_path)))
    for top_k in (5, 40, 45):
        scores, rows = index.search(queries, top_k)
        tied = min(top_k, 40)
        np.testing.assert_array_equal(rows[:, :tied], np.broadcast_to(duplicates[:tied], (64, tied)))
        assert np.all(scores[:, :tied] == scores[:, :1])
        # after the tie: the evaluator's ranking of the other rows (its float32 matrix product, like
        # FAISS's, need not score identical rows alike, so it is not asked to order the tie)
        expected_rest = others[_evaluator_ranking(queries, gallery[others], top_k - tied)[1]]
        np.testing.assert_array_equal(rows[:, tied:], expected_rest)
        assert np.all(scores[:, tied:] < scores[:, :1])


def test_ivf_probing_every_list_equals_flat(tmp_path):
    gallery, queries = _random(400, 16, seed=4), _random(25, 16, seed=5)
    feature_set = _feature_set(gallery, str(tmp_path))
    ivf = GalleryIndex.build(feature_set, kind="ivf", nlist=8, nprobe=8)
    flat_scores, flat_rows = GalleryIndex.build(feature_set).search(queries, 10)
    ivf_scores, ivf_rows = ivf.search(queries, 10)
    np.testing.assert_array_equal(ivf_rows, flat_rows)
    np.testing.assert_allclose(ivf_scores, flat_scores, atol=1e-5)
    assert ivf.metadata["kind"] == "ivf" and ivf.metadata["nlist"] == 8 and ivf.metadata["nprobe"] == 8


def test_ivf_with_few_probes_finds_the_top_match_and_is_deterministic(tmp_path):
    centers = 3.0 * _random(40, 32, seed=6)
    gallery, queries = _clustered(1600, centers, seed=7), _clustered(100, centers, seed=8)
    feature_set = _feature_set(gallery, str(tmp_path))
    ivf = GalleryIndex.build(feature_set, kind="ivf", nprobe=2)
    assert ivf.metadata["nlist"] == default_nlist(1600) == 41
    scores, rows = ivf.search(queries, 5)
    exact_rows = GalleryIndex.build(feature_set).search(queries, 1)[1]
    assert np.mean(rows[:, 0] == exact_rows[:, 0]) >= 0.9
    again_scores, again_rows = GalleryIndex.build(feature_set, kind="ivf", nprobe=2).search(queries, 5)
    np.testing.assert_array_equal(again_rows, rows)
    np.testing.assert_array_equal(again_scores, scores)


def test_ivf_places_it_cannot_fill_come_last_and_give_no_hits(tmp_path):
    centers = 3.0 * _random(8, 16, seed=9)
    feature_set = _feature_set(_clustered(400, centers, seed=10), str(tmp_path))
    ivf = GalleryIndex.build(feature_set, kind="ivf", nlist=8, nprobe=1)
    queries = _feature_set(_clustered(5, centers, seed=11), str(tmp_path), name="query")
    scores, rows = ivf.search(queries.features, 400)
    found = rows >= 0
    assert not found.all() and found[:, 0].all()
    assert np.all(np.diff(found.astype(int), axis=1) <= 0)  # the missing places are at the end
    assert np.all(scores[~found] == -np.inf)
    hits = search_gallery(ivf, queries, 400)
    assert [len(result.hits) for result in hits] == found.sum(1).tolist()


def _with_index_array(path, serialized, out):
    """The index file at ``path`` written again to ``out`` with ``serialized`` as its 'index' array."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    np.savez(out, **dict(arrays, index=np.frombuffer(bytes(serialized), dtype=np.uint8)))
    return out


def test_an_index_naming_a_file_of_its_inverted_lists_is_refused_before_faiss_reads_it(tmp_path, monkeypatch):
    features = _random(60, 4, seed=16)
    index_path = GalleryIndex.build(_feature_set(features, str(tmp_path)), kind="ivf", nlist=2).save(tmp_path / "i.npz")
    on_disk = faiss.IndexIVFFlat(faiss.IndexFlatIP(4), 4, 2, faiss.METRIC_INNER_PRODUCT)
    on_disk.train(features)
    elsewhere = tmp_path / "elsewhere" / "lists.ivfdata"
    elsewhere.parent.mkdir()
    lists = faiss.OnDiskInvertedLists(2, on_disk.code_size, str(elsewhere))
    on_disk.replace_invlists(lists, False)  # the index does not own them: Python frees them once
    on_disk.add(features)
    serialized = faiss.serialize_index(on_disk)
    assert str(elsewhere).encode() in bytes(serialized)  # FAISS would open this file (read-write) to read the index
    crafted = _with_index_array(index_path, serialized, tmp_path / "crafted.npz")
    monkeypatch.setattr(faiss, "deserialize_index", lambda _: pytest.fail("FAISS read the crafted index"))
    with pytest.raises(IndexFileError, match=r"crafted.npz: .*'ivf'.*expected inverted lists held in memory .*ilod"):
        GalleryIndex.load(crafted)
    hnsw = faiss.IndexHNSWFlat(4, 8, faiss.METRIC_INNER_PRODUCT)
    hnsw.add(features)
    with pytest.raises(IndexFileError, match=r"hnsw.npz: .*expected an IndexIVFFlat \(tag IwFl\), found tag b'IHNf'"):
        GalleryIndex.load(_with_index_array(index_path, faiss.serialize_index(hnsw), tmp_path / "hnsw.npz"))
    with pytest.raises(
        IndexFileError, match=r"short.npz: .*it ends at byte 90, before the 8 bytes expected from byte 90"
    ):
        GalleryIndex.load(_with_index_array(index_path, bytes(serialized)[:90], tmp_path / "short.npz"))


def test_the_layout_check_passes_what_faiss_writes_for_full_and_sparse_inverted_lists():
    features = _random(40, 8, seed=17)
    flat = faiss.IndexFlatIP(8)
    flat.add(features)
    check_faiss_layout(faiss.serialize_index(flat), "flat", 40, 8)
    for added, sizes_tag in ((40, b"full"), (3, b"sprs")):  # FAISS stores sparse sizes when most lists are empty
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(8), 8, 30, faiss.METRIC_INNER_PRODUCT)
        ivf.cp.min_points_per_centroid = 1
        ivf.train(features)
        ivf.add(features[:added])
        serialized = bytes(faiss.serialize_index(ivf))
        assert sizes_tag in serialized
        check_faiss_layout(serialized, "ivf", added, 8)
        with pytest.raises(ValueError, match="bytes follow the index"):
            check_faiss_layout(serialized + b"\0", "ivf", added, 8)
        with pytest.raises(ValueError, match=f"expected {added + 1} inner-product vectors of dimension 8"):
            check_faiss_layout(serialized, "ivf", added + 1, 8)


def test_default_nlist():
    assert default_nlist(1) == 1 and default_nlist(100) == 2
    assert default_nlist(3803) == 97  # 3803 // 39
    assert default_nlist(1_000_000) == 4000  # 4 * sqrt(N)


def test_save_and_load_round_trip(tmp_path):
    root = str(tmp_path / "images")
    gallery, queries = _random(200, 8, seed=12), _random(10, 8, seed=13)
    for kind in ("flat", "ivf"):
        index = GalleryIndex.build(_feature_set(gallery, root), kind=kind, nlist=4, nprobe=2)
        path = index.save(tmp_path / f"{kind}.npz")
        loaded = GalleryIndex.load(path)
        assert loaded.metadata == index.metadata
        assert loaded.metadata["format"] == "vireid-index" and loaded.metadata["dimension"] == 8
        assert loaded.images.paths == index.images.paths and len(loaded) == 200
        np.testing.assert_array_equal(loaded.images.person_ids, index.images.person_ids)
        np.testing.assert_array_equal(loaded.features, gallery)
        for searched, expected in zip(loaded.search(queries, 15), index.search(queries, 15)):
            np.testing.assert_array_equal(searched, expected)
        with np.load(path, allow_pickle=False) as archive:
            assert archive["paths"][0] == "gallery/0000.jpg"
        moved = GalleryIndex.load(path, root="/new/place")
        assert moved.images.paths[3] == "/new/place/gallery/0003.jpg"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flat.npz", "ivf.npz"]  # no temporary file left


def test_missing_index_file(tmp_path):
    with pytest.raises(IndexFileError, match="nope.npz: expected a vireid index file .* does not exist"):
        GalleryIndex.load(tmp_path / "nope.npz")


def test_feature_file_and_index_file_are_not_interchangeable(tmp_path):
    feature_set = _feature_set(_random(20, 4, seed=14), str(tmp_path))
    features_path = save_features(tmp_path / "features.npz", feature_set)
    wrong_format = "features.npz: expected format 'vireid-index' version 1, found 'vireid-features'"
    with pytest.raises(IndexFileError, match=wrong_format):
        GalleryIndex.load(features_path)
    index_path = GalleryIndex.build(feature_set).save(tmp_path / "index.npz")
    with pytest.raises(UserError, match="index.npz: expected format 'vireid-features' version 1, found 'vireid-index'"):
        load_features(index_path)


def test_corrupt_index_files(tmp_path):
    index_path = GalleryIndex.build(_feature_set(_random(20, 4, seed=15), str(tmp_path))).save(tmp_path / "index.npz")
    (tmp_path / "truncated.npz").write_bytes(index_path.read_bytes()[:300])
    with pytest.raises(IndexFileError, match=r"truncated.npz: expected a vireid index file \(\.npz\), could not read"):
        GalleryIndex.load(tmp_path / "truncated.npz")
    with np.load(index_path, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    np.savez(tmp_path / "garbage.npz", **dict(arrays, index=np.frombuffer(b"not a faiss index", dtype=np.uint8)))
    with pytest.raises(IndexFileError, match="garbage.npz: the 'index' array is not a FAISS index"):
        GalleryIndex.load(tmp_path / "garbage.npz")
    image_arrays = ("features", "paths", "person_ids", "camera_ids", "modalities")
    np.savez(tmp_path / "short.npz", **dict(arrays, **{key: arrays[key][:19] for key in image_arrays}))
    with pytest.raises(IndexFileError, match="short.npz: .*expected 19 inner-product vectors of dimension 4, found 20"):
        GalleryIndex.load(tmp_path / "short.npz")


def test_search_refuses_bad_queries(tmp_path):
    index = GalleryIndex.build(_feature_set(_random(20, 8, seed=16), str(tmp_path)))
    with pytest.raises(GalleryIndexError, match="query features are 5-dimensional, but the gallery index holds 8-"):
        index.search(_random(3, 5, seed=17), 5)
    with pytest.raises(GalleryIndexError, match="top_k must be at least 1, got 0"):
        index.search(_random(3, 8, seed=17), 0)


def test_build_refuses_bad_options(tmp_path):
    feature_set = _feature_set(_random(20, 8, seed=18), str(tmp_path))
    with pytest.raises(GalleryIndexError, match="kind must be one of flat, ivf, got 'hnsw'"):
        GalleryIndex.build(feature_set, kind="hnsw")
    with pytest.raises(GalleryIndexError, match="nlist must be between 1 and the gallery's 20 images, got 21"):
        GalleryIndex.build(feature_set, kind="ivf", nlist=21)


def test_ensure_same_model():
    ensure_same_model({"model": MODEL}, {"model": dict(MODEL)}, "gallery.npz")
    ensure_same_model({"model": MODEL}, {}, "gallery.npz")
    ensure_same_model({}, {"model": MODEL}, "gallery.npz")
    with pytest.raises(UserError, match=r"gallery.npz: .*another model.*parts: index 6, query 0") as caught:
        ensure_same_model({"model": MODEL}, {"model": dict(MODEL, parts=0)}, "gallery.npz")
    assert "backbone" not in str(caught.value)


def test_search_gallery_table_and_json(tmp_path):
    gallery = _random(6, 8, seed=19)
    person_ids = [3, 3, -1, 5, -1, 5]
    index = GalleryIndex.build(_feature_set(gallery, str(tmp_path), person_ids=person_ids))
    queries = _feature_set(gallery[[2, 3]] + 0.01, str(tmp_path), name="query", person_ids=[-1, 5])
    assert_no_near_ties(cosine_distances(queries.features, gallery))
    results = search_gallery(index, queries, 3)
    _, expected_rows = _evaluator_ranking(queries.features, gallery, 3)
    assert [result.query_path for result in results] == [f"{tmp_path}/query/0000.jpg", f"{tmp_path}/query/0001.jpg"]
    for result, rows in zip(results, expected_rows):
        assert [hit.rank for hit in result.hits] == [1, 2, 3]
        assert [hit.row for hit in result.hits] == rows.tolist()
        assert [hit.path for hit in result.hits] == [f"{tmp_path}/gallery/{row:04d}.jpg" for row in rows]
        assert [hit.person_id for hit in result.hits] == [person_ids[row] for row in rows]
    assert results[0].hits[0].row == 2 and results[1].hits[0].row == 3

    table = hits_table(results)
    lines = table.splitlines()
    assert lines[0] == f"query {tmp_path}/query/0000.jpg (visible, person -)"
    first_hit = lines[2].split()
    assert first_hit[0] == "1" and first_hit[2] == "visible" and first_hit[3] == "-"
    assert first_hit[1] == f"{results[0].hits[0].score:.3f}" and first_hit[4] == f"{tmp_path}/gallery/0002.jpg"
    assert f"query {tmp_path}/query/0001.jpg (infrared, person 5)" in lines

    as_json = hits_to_json(results)
    assert json.loads(json.dumps(as_json)) == as_json
    assert as_json[0]["query_person_id"] == -1 and as_json[0]["hits"][0]["person_id"] == -1
    assert as_json[1]["hits"][0] == {
        "rank": 1,
        "row": 3,
        "score": results[1].hits[0].score,
        "path": f"{tmp_path}/gallery/0003.jpg",
        "person_id": 5,
        "camera_id": 4,
        "modality": "infrared",  # by name, as the table prints it
    }
    assert as_json[1]["query_modality"] == "infrared"
