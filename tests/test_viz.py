"""The PNG pictures: rank lists with coloured frames, CMC curves from results.json, t-SNE maps."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from vireid.data.splits import Modality
from vireid.errors import DatasetError, UserError
from vireid.viz.cmc import cmc_curves_from_results, draw_cmc_curves
from vireid.viz.rank_list import RankedImage, draw_rank_list
from vireid.viz.tsne import draw_tsne, tsne_embedding

SMALL_IMAGE = (32, 16)  # (height, width)


def _solid_image(path, colour) -> str:
    Image.new("RGB", (SMALL_IMAGE[1], SMALL_IMAGE[0]), colour).save(path)
    return str(path)


def _pixels(path) -> np.ndarray:
    """(H, W, 3) int RGB of a PNG."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).astype(int)


def _count_near(pixels: np.ndarray, lowest: tuple[int, int, int], highest: tuple[int, int, int]) -> int:
    return int(((pixels >= lowest) & (pixels <= highest)).all(axis=-1).sum())


def _count_green(pixels: np.ndarray) -> int:
    return _count_near(pixels, (0, 150, 0), (40, 210, 40))


def _count_red(pixels: np.ndarray) -> int:
    return _count_near(pixels, (190, 0, 0), (255, 40, 40))


@pytest.fixture
def images(tmp_path):
    """Paths of solid-colour images holding neither green nor red."""
    folder = tmp_path / "images"
    folder.mkdir()
    return {
        "purple": _solid_image(folder / "purple.png", (90, 60, 200)),
        "yellow": _solid_image(folder / "yellow.jpg", (230, 220, 60)),
        "grey": _solid_image(folder / "grey.bmp", (128, 128, 128)),
    }


def test_rank_list_frames_a_right_match_green_and_a_wrong_one_red(tmp_path, images):
    query = RankedImage(images["purple"], Modality.INFRARED, person_id=7)
    ranked = [
        RankedImage(images["yellow"], Modality.VISIBLE, person_id=7, score=0.873),
        RankedImage(images["grey"], Modality.VISIBLE, person_id=9, score=0.412),
    ]
    out = draw_rank_list([query], [ranked], tmp_path / "pictures" / "ranks.png", "one query", image_size=SMALL_IMAGE)
    assert out == tmp_path / "pictures" / "ranks.png"
    pixels = _pixels(out)
    frame_pixels = 2 * (SMALL_IMAGE[0] + SMALL_IMAGE[1]) * 4  # a frame of at least 4 pixels
    assert _count_green(pixels) >= frame_pixels
    assert _count_red(pixels) >= frame_pixels
    assert [path.name for path in out.parent.iterdir()] == ["ranks.png"]


def test_rank_list_frames_are_grey_when_identities_are_unknown(tmp_path, images):
    query = RankedImage(images["purple"], Modality.VISIBLE)
    ranked = [RankedImage(images["yellow"], Modality.INFRARED, score=0.5), RankedImage(images["grey"], Modality.VISIBLE)]
    pixels = _pixels(draw_rank_list([query], [ranked], tmp_path / "ranks.png", image_size=SMALL_IMAGE))
    assert _count_green(pixels) == 0 and _count_red(pixels) == 0
    assert _count_near(pixels, (140, 140, 140), (160, 160, 160)) >= 2 * 2 * (SMALL_IMAGE[0] + SMALL_IMAGE[1]) * 4


def test_rank_list_grows_with_queries_and_ranks(tmp_path, images):
    def size(num_queries: int, num_ranks: int) -> tuple[int, int]:
        queries = [RankedImage(images["purple"], Modality.VISIBLE, 1)] * num_queries
        ranked = [[RankedImage(images["yellow"], Modality.INFRARED, 2, 0.1)] * num_ranks] * num_queries
        out = draw_rank_list(queries, ranked, tmp_path / f"ranks_{num_queries}_{num_ranks}.png", image_size=SMALL_IMAGE)
        with Image.open(out) as image:
            return image.size  # (width, height)

    width, height = size(1, 2)
    more_queries, more_ranks = size(3, 2), size(1, 5)
    assert more_queries[0] == width and more_queries[1] > height
    assert more_ranks[0] > width and more_ranks[1] == height


def test_rank_list_rows_may_have_different_lengths(tmp_path, images):
    queries = [RankedImage(images["purple"], Modality.VISIBLE, 1), RankedImage(images["grey"], Modality.INFRARED, 2)]
    ranked = [[RankedImage(images["yellow"], Modality.INFRARED, 1)] * 3, []]
    out = draw_rank_list(queries, ranked, tmp_path / "ranks.png", image_size=SMALL_IMAGE)
    pixels = _pixels(out)
    assert _count_green(pixels) > 0 and _count_red(pixels) == 0


def test_rank_list_needs_one_ranked_list_per_query(tmp_path, images):
    query = RankedImage(images["purple"], Modality.VISIBLE)
    with pytest.raises(UserError, match="one list of gallery images per query"):
        draw_rank_list([query, query], [[query]], tmp_path / "ranks.png")
    with pytest.raises(UserError, match="at least one query"):
        draw_rank_list([], [], tmp_path / "ranks.png")
    with pytest.raises(UserError, match="modality"):
        draw_rank_list([RankedImage(images["purple"], 5)], [[]], tmp_path / "ranks.png")
    assert not list(tmp_path.glob("*.png"))


def test_rank_list_names_an_unreadable_image(tmp_path, images):
    (tmp_path / "broken.jpg").write_text("not an image")
    query = RankedImage(images["purple"], Modality.VISIBLE, 1)
    ranked = [[RankedImage(str(tmp_path / "broken.jpg"), Modality.INFRARED, 1)]]
    with pytest.raises(DatasetError, match="broken.jpg"):
        draw_rank_list([query], ranked, tmp_path / "out" / "ranks.png")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def _write_results(path, protocols_and_trial_curves) -> None:
    path.parent.mkdir(parents=True)
    results = [
        {
            "protocol": protocol,
            "query": "infrared",
            "gallery": "visible",
            "shot": "single",
            "draws": "agw",
            "mean": {},
            "std": {},
            "trials": [{"trial": trial, "cmc": cmc, "mAP": 0.1, "mINP": 0.05} for trial, cmc in enumerate(curves)],
        }
        for protocol, curves in protocols_and_trial_curves
    ]
    path.write_text(json.dumps(results))


def test_cmc_curves_are_the_trial_means_labelled_by_run_folder(tmp_path):
    _write_results(
        tmp_path / "run-a" / "results.json",
        [("sysu-all", [[0.5, 0.75, 1.0], [0.25, 0.5, 0.75]]), ("sysu-indoor", [[0.6, 0.7, 0.8]])],
    )
    _write_results(tmp_path / "run-b" / "results.json", [("sysu-all", [[0.1, 0.2, 0.3], [0.3, 0.4, 0.5], [0.2, 0.6, 0.7]])])
    curves = cmc_curves_from_results([tmp_path / "run-a" / "results.json", str(tmp_path / "run-b" / "results.json")])
    assert list(curves) == ["run-a sysu-all", "run-a sysu-indoor", "run-b sysu-all"]
    np.testing.assert_allclose(curves["run-a sysu-all"], [0.375, 0.625, 0.875])
    np.testing.assert_allclose(curves["run-a sysu-indoor"], [0.6, 0.7, 0.8])
    np.testing.assert_allclose(curves["run-b sysu-all"], [0.2, 0.4, 0.5])
    out = draw_cmc_curves(curves, tmp_path / "plots" / "cmc.png", title="CMC")
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size[0] > 100 and image.size[1] > 100
    assert [path.name for path in out.parent.iterdir()] == ["cmc.png"]


def test_cmc_labels_stay_unique_when_run_folders_share_a_name(tmp_path):
    first, second = tmp_path / "a" / "run" / "results.json", tmp_path / "b" / "run" / "results.json"
    _write_results(first, [("regdb-v2t", [[0.5, 0.9]])])
    _write_results(second, [("regdb-v2t", [[0.4, 0.8]])])
    curves = cmc_curves_from_results([first, second])
    assert list(curves) == [f"{first} regdb-v2t", f"{second} regdb-v2t"]


def test_cmc_results_errors_name_the_file(tmp_path):
    with pytest.raises(UserError, match="missing.json.*does not exist"):
        cmc_curves_from_results([tmp_path / "missing.json"])
    (tmp_path / "garbled.json").write_text("{not json")
    with pytest.raises(UserError, match="garbled.json.*not JSON"):
        cmc_curves_from_results([tmp_path / "garbled.json"])
    (tmp_path / "shapeless.json").write_text(json.dumps([{"protocol": "sysu-all", "trials": [{"mAP": 0.1}]}]))
    with pytest.raises(UserError, match="shapeless.json.*list of protocol results"):
        cmc_curves_from_results([tmp_path / "shapeless.json"])


def test_cmc_curves_are_checked_before_drawing(tmp_path):
    with pytest.raises(UserError, match="'falling'.*non-decreasing.*rank 3"):
        draw_cmc_curves({"rising": [0.1, 0.2, 0.3], "falling": [0.1, 0.5, 0.4]}, tmp_path / "cmc.png")
    with pytest.raises(UserError, match="'percent'.*between 0 and 1"):
        draw_cmc_curves({"percent": [50.0, 60.0]}, tmp_path / "cmc.png")
    with pytest.raises(UserError, match="'empty'"):
        draw_cmc_curves({"empty": []}, tmp_path / "cmc.png")
    assert not list(tmp_path.iterdir())


def _three_clusters(points_per_cluster: int = 15) -> tuple[np.ndarray, np.ndarray]:
    """(45, 16) features around three far-apart centres, and the cluster of each."""
    rng = np.random.default_rng(0)
    centres = 10 * np.eye(16)[:3] + 1  # positive, so L2 normalisation keeps them apart
    clusters = np.repeat(np.arange(3), points_per_cluster)
    features = centres[clusters] + rng.normal(scale=0.3, size=(clusters.size, 16))
    return features.astype(np.float32), clusters


def test_tsne_keeps_clusters_together_and_is_deterministic():
    features, clusters = _three_clusters()
    embedding = tsne_embedding(features, seed=3)
    assert embedding.shape == (features.shape[0], 2)
    distances = np.linalg.norm(embedding[:, None] - embedding[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    np.testing.assert_array_equal(clusters[distances.argmin(axis=1)], clusters)
    np.testing.assert_array_equal(tsne_embedding(features, seed=3), embedding)
    with pytest.raises(UserError, match="D >= 2"):
        tsne_embedding(features[:, :1])


def test_draw_tsne_writes_a_png_of_the_first_identities(tmp_path):
    features, clusters = _three_clusters(points_per_cluster=10)
    person_ids = np.array([30, 10, 20])[clusters]
    modalities = np.tile([Modality.VISIBLE, Modality.INFRARED], features.shape[0] // 2)
    out = draw_tsne(features, person_ids, modalities, tmp_path / "tsne" / "map.png", max_identities=2)
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size[0] > 100
    assert [path.name for path in out.parent.iterdir()] == ["map.png"]


def test_draw_tsne_rejects_inconsistent_inputs(tmp_path):
    features, clusters = _three_clusters(points_per_cluster=5)
    modalities = np.zeros(features.shape[0], dtype=np.int8)
    with pytest.raises(UserError, match="shapes"):
        draw_tsne(features, clusters[:-1], modalities, tmp_path / "map.png")
    with pytest.raises(UserError, match="shapes"):
        draw_tsne(features[0], clusters, modalities, tmp_path / "map.png")
    with pytest.raises(UserError, match="at least 3 points"):
        draw_tsne(features[:4], np.array([1, 2, 2, 2]), modalities[:4], tmp_path / "map.png", max_identities=1)
    with pytest.raises(UserError, match="modalities"):
        draw_tsne(features, clusters, modalities + 2, tmp_path / "map.png")
    assert not list(tmp_path.iterdir())
