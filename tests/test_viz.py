"""The PNG pictures: rank lists with frames, ✓/✗ marks and a legend; CMC curves with their ± std
band and chance, labelled by run name; t-SNE maps in distinct hues."""

from __future__ import annotations

import colorsys
import io
import itertools
import json
import warnings

import matplotlib
import numpy as np
import pytest
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.colors import to_rgb
from PIL import Image

from vireid.errors import DatasetError, UserError
from vireid.evaluation.results_file import run_name
from vireid.modality import Modality
from vireid.viz.cmc import CurveName, cmc_curves_from_results, cmc_figure, draw_cmc_curves
from vireid.viz.rank_list import (
    ANOTHER_PERSON,
    PERSON_UNKNOWN,
    SAME_PERSON,
    RankedImage,
    draw_rank_list,
    rank_list_figure,
)
from vireid.viz.tsne import IDENTITY_COLOURS, draw_tsne, tsne_embedding, tsne_figure

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


def _texts(figure) -> list[str]:
    return [text.get_text() for text in figure.axes[0].texts]


def _legend_labels(legend) -> list[str]:
    return [text.get_text() for text in legend.get_texts()]


def _rendering_warnings(figure) -> list[str]:
    """The warnings of drawing ``figure`` to PNG, e.g. "Glyph 10003 missing from font(s)"."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        figure.savefig(io.BytesIO(), format="png")
    return [str(warning.message) for warning in caught]


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


def test_rank_list_marks_right_and_wrong_with_a_tick_and_a_cross_and_explains_them(images):
    query = RankedImage(images["purple"], Modality.INFRARED, person_id=7, camera_id=3)
    ranked = [
        RankedImage(images["yellow"], Modality.VISIBLE, person_id=7, score=0.873, camera_id=4),
        RankedImage(images["grey"], Modality.VISIBLE, person_id=9, score=0.412, camera_id=1),
    ]
    figure = rank_list_figure([query], [ranked], "one query", image_size=SMALL_IMAGE)
    marks = {
        text.get_text(): to_rgb(text.get_color()) for text in figure.axes[0].texts if text.get_text() in ("✓", "✗")
    }
    assert marks == {
        "✓": tuple(c / 255 for c in SAME_PERSON.colour),
        "✗": tuple(c / 255 for c in ANOTHER_PERSON.colour),
    }
    assert _legend_labels(figure.axes[0].get_legend()) == ["query", "✓ same person as the query", "✗ another person"]
    texts = _texts(figure)
    assert "query: purple.png" in texts and "one query" in texts
    assert "query\ninfrared · cam 3\nid 7" in texts
    assert "rank 1\nvisible · cam 4\nid 7\nsimilarity 0.873" in texts
    assert "rank 2\nvisible · cam 1\nid 9\nsimilarity 0.412" in texts
    assert _rendering_warnings(figure) == []  # ✓ and ✗ are in the font, not drawn as empty boxes


def test_rank_list_frames_are_grey_when_identities_are_unknown(tmp_path, images):
    query = RankedImage(images["purple"], Modality.VISIBLE)
    ranked = [
        RankedImage(images["yellow"], Modality.INFRARED, score=0.5),
        RankedImage(images["grey"], Modality.VISIBLE),
    ]
    figure = rank_list_figure([query], [ranked], image_size=SMALL_IMAGE)
    assert not {"✓", "✗"} & set(_texts(figure))
    assert _legend_labels(figure.axes[0].get_legend()) == ["query", PERSON_UNKNOWN.meaning]
    assert "not judged right or wrong" in PERSON_UNKNOWN.meaning
    assert "rank 1\ninfrared\nsimilarity 0.500" in _texts(figure)  # no camera, no person id: not shown
    pixels = _pixels(draw_rank_list([query], [ranked], tmp_path / "ranks.png", image_size=SMALL_IMAGE))
    assert _count_green(pixels) == 0 and _count_red(pixels) == 0
    assert _count_near(pixels, (140, 140, 140), (160, 160, 160)) >= 2 * 2 * (SMALL_IMAGE[0] + SMALL_IMAGE[1]) * 4


def test_rank_list_names_each_query_file_relative_to_their_common_folder(tmp_path, images):
    for folder in ("night/a", "night/b"):
        (tmp_path / folder).mkdir(parents=True)
    queries = [
        RankedImage(_solid_image(tmp_path / folder / "query.png", (0, 0, 0)), Modality.INFRARED)
        for folder in ("night/a", "night/b")
    ]
    matches = [RankedImage(images["yellow"], Modality.VISIBLE)] * 3
    figure = rank_list_figure(queries, [matches, matches], image_size=SMALL_IMAGE)
    assert [text for text in _texts(figure) if text.startswith("query:")] == [
        "query: a/query.png",
        "query: b/query.png",
    ]
    long_name = _solid_image(tmp_path / f"{'night' * 40}.png", (0, 0, 0))
    figure = rank_list_figure([RankedImage(long_name, Modality.INFRARED)], [matches], image_size=SMALL_IMAGE)
    header = next(text for text in _texts(figure) if text.startswith("query:"))
    assert header.startswith("query: …") and header.endswith("nightnight.png") and len(header) < 100


def test_rank_list_is_wide_enough_for_its_legend(images):
    query = RankedImage(images["purple"], Modality.INFRARED)
    figure = rank_list_figure([query], [[RankedImage(images["yellow"], Modality.VISIBLE)]], image_size=SMALL_IMAGE)
    renderer = figure.canvas.get_renderer()
    legend = figure.axes[0].get_legend().get_window_extent(renderer)
    assert 0 <= legend.x0 and legend.x1 <= figure.bbox.width


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


def test_cmc_curves_hold_every_trial_labelled_by_run_folder(tmp_path):
    _write_results(
        tmp_path / "run-a" / "results.json",
        [("sysu-all", [[0.5, 0.75, 1.0], [0.25, 0.5, 0.75]]), ("sysu-indoor", [[0.6, 0.7, 0.8]])],
    )
    _write_results(
        tmp_path / "run-b" / "results.json", [("sysu-all", [[0.1, 0.2, 0.3], [0.3, 0.4, 0.5], [0.2, 0.6, 0.7]])]
    )
    inputs = [tmp_path / "run-a" / "results.json", str(tmp_path / "run-b" / "results.json")]
    with pytest.raises(UserError, match="run-b: has no results of sysu-indoor .* choose the protocols every run"):
        cmc_curves_from_results(inputs)
    curves = cmc_curves_from_results(inputs, ["sysu-all"])
    assert list(map(str, curves)) == ["run-a sysu-all", "run-b sysu-all"]
    np.testing.assert_allclose(curves[CurveName("run-a", "sysu-all")], [[0.5, 0.75, 1.0], [0.25, 0.5, 0.75]])
    assert curves[CurveName("run-b", "sysu-all")].shape == (3, 3)
    single_run = cmc_curves_from_results(inputs[:1])  # one run's protocols side by side, as vireid test draws them
    np.testing.assert_allclose(single_run[CurveName("run-a", "sysu-indoor")], [[0.6, 0.7, 0.8]])
    out = draw_cmc_curves(curves, tmp_path / "plots" / "cmc.png", title="CMC")
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size[0] > 100 and image.size[1] > 100
    assert [path.name for path in out.parent.iterdir()] == ["cmc.png"]


def test_a_run_folder_named_just_run_is_named_by_its_config(tmp_path):
    configured = tmp_path / "demo" / "run"
    _write_results(configured / "results.json", [("sysu-all", [[0.5, 0.9]])])
    (configured / "config.yaml").write_text("name: tiny\ndata:\n  dataset: sysu\n")
    unconfigured = tmp_path / "night-test" / "run" / "results.json"
    _write_results(unconfigured, [("sysu-all", [[0.4, 0.8]])])
    assert run_name(configured / "results.json") == "tiny"
    assert run_name(unconfigured) == "night-test"  # no config.yaml: the folder above names it
    assert list(map(str, cmc_curves_from_results([configured / "results.json", unconfigured]))) == [
        "tiny sysu-all",
        "night-test sysu-all",
    ]


def test_cmc_labels_stay_unique_when_run_names_are_the_same(tmp_path):
    first, second = tmp_path / "a" / "baseline" / "results.json", tmp_path / "b" / "baseline" / "results.json"
    _write_results(first, [("regdb-v2t", [[0.5, 0.9]])])
    _write_results(second, [("regdb-v2t", [[0.4, 0.8]])])
    curves = cmc_curves_from_results([first, second])
    assert list(map(str, curves)) == [f"{first.parent} regdb-v2t", f"{second.parent} regdb-v2t"]


def test_cmc_shades_mean_plus_minus_std_over_trials_and_draws_chance():
    trials = [[0.2, 0.6, 0.8, 1.0], [0.4, 0.6, 0.9, 1.0]]
    figure = cmc_figure(
        {"tiny sysu-all": trials, "hand-made sysu-all": [0.1, 0.3, 0.5, 0.7]}, "CMC", chance_identities=5
    )
    axes, legend = figure.axes[0], figure.legends[0]
    bands = [collection for collection in axes.collections if isinstance(collection, PolyCollection)]
    assert len(bands) == 1  # the single-trial curve has no band
    band_heights = bands[0].get_paths()[0].vertices[:, 1]
    np.testing.assert_allclose(
        [band_heights.min(), band_heights.max()], [100 * (0.3 - np.std([0.2, 0.4], ddof=1)), 100.0], atol=1e-9
    )
    assert _legend_labels(legend) == [
        "tiny sysu-all: R1 30.0 ± 14.1%",
        "hand-made sysu-all: R1 10.0%",
        "chance, 5 identities: R1 20.0%",
        "shaded: ± 1 std over 2 trials",
    ]
    chance = axes.get_lines()[-1]
    assert chance.get_linestyle() == "--"
    np.testing.assert_allclose(chance.get_ydata(), [20, 40, 60, 80])
    np.testing.assert_allclose(axes.get_lines()[0].get_ydata(), [30, 60, 85, 100])


def test_cmc_curves_differ_by_more_than_colour_and_never_in_red_or_green():
    cmc = [0.2, 0.5, 0.8, 1.0]
    runs = {
        CurveName("model", "sysu-all"): cmc,
        CurveName("model", "sysu-all", "re-ranked (k1 20, k2 6, λ 0.3)"): cmc,
        CurveName("model", "sysu-indoor"): cmc,
        CurveName("descriptor", "sysu-all"): cmc,
        CurveName("descriptor", "sysu-indoor"): cmc,
    }
    lines = cmc_figure(runs).axes[0].get_lines()
    styles = [(line.get_color(), line.get_marker(), line.get_linestyle()) for line in lines]
    assert [str(line.get_label()).split(":")[0] for line in lines] == [str(name) for name in runs]
    model_all, model_all_reranked, model_indoor, descriptor_all, descriptor_indoor = styles
    assert model_all[0] == model_all_reranked[0] == model_indoor[0] != descriptor_all[0] == descriptor_indoor[0]
    assert model_all[1] == model_all_reranked[1] == descriptor_all[1] != model_indoor[1] == descriptor_indoor[1]
    assert [style[2] for style in styles] == ["-", "--", "-", "-", "-"]  # re-ranked: dashed
    assert len(set(styles)) == len(styles)
    one_run = cmc_figure({CurveName("", "sysu-all"): cmc, CurveName("", "sysu-indoor"): cmc}).axes[0].get_lines()
    assert one_run[0].get_color() != one_run[1].get_color()  # one run: a colour per protocol
    for line in [*lines, *one_run]:
        red, green, blue = matplotlib.colors.to_rgb(line.get_color())
        assert not (red > 0.6 and green < 0.4 and blue < 0.4) and not (green > 0.5 and red < 0.4 and blue < 0.4)


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


def _clusters(count: int = 3, points_per_cluster: int = 15) -> tuple[np.ndarray, np.ndarray]:
    """(count * points_per_cluster, 16) features around ``count`` far-apart centres, and the cluster of each."""
    rng = np.random.default_rng(0)
    centres = 10 * np.eye(16)[:count] + 1  # positive, so L2 normalisation keeps them apart
    clusters = np.repeat(np.arange(count), points_per_cluster)
    features = centres[clusters] + rng.normal(scale=0.3, size=(clusters.size, 16))
    return features.astype(np.float32), clusters


def test_tsne_keeps_clusters_together_and_is_deterministic():
    features, clusters = _clusters()
    embedding = tsne_embedding(features, seed=3)
    assert embedding.shape == (features.shape[0], 2)
    distances = np.linalg.norm(embedding[:, None] - embedding[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    np.testing.assert_array_equal(clusters[distances.argmin(axis=1)], clusters)
    np.testing.assert_array_equal(tsne_embedding(features, seed=3), embedding)
    with pytest.raises(UserError, match="D >= 2"):
        tsne_embedding(features[:, :1])


def _hue_and_saturation(colour) -> tuple[float, float]:
    hue, saturation, _ = colorsys.rgb_to_hsv(*to_rgb(colour))
    return 360 * hue, saturation


def test_tsne_identity_colours_are_distinct_hues_not_shades_of_one():
    hues = [_hue_and_saturation(colour)[0] for colour in IDENTITY_COLOURS]
    assert min(_hue_and_saturation(colour)[1] for colour in IDENTITY_COLOURS) > 0.5  # no greys
    assert min(min(abs(a - b), 360 - abs(a - b)) for a, b in itertools.combinations(hues, 2)) >= 25


def test_tsne_draws_the_first_identities_one_colour_each_and_says_how_many(tmp_path):
    features, clusters = _clusters(points_per_cluster=10)
    person_ids = np.array([30, 10, 20])[clusters]
    modalities = np.tile([Modality.VISIBLE, Modality.INFRARED], features.shape[0] // 2)
    figure = tsne_figure(features, person_ids, modalities, max_identities=2, title="test features")
    axes = figure.axes[0]
    assert axes.get_title() == "test features\n2 of 3 identities shown, 20 images"
    legends = [artist for artist in axes.get_children() if artist.__class__.__name__ == "Legend"]
    assert [_legend_labels(legend) for legend in legends] == [["10", "20"], ["visible", "infrared"]]
    colours = {
        tuple(collection.get_facecolor()[0][:3])
        for collection in axes.collections
        if isinstance(collection, PathCollection)
    }
    assert colours == {to_rgb(IDENTITY_COLOURS[0]), to_rgb(IDENTITY_COLOURS[1])}
    out = draw_tsne(features, person_ids, modalities, tmp_path / "tsne" / "map.png", max_identities=2)
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size[0] > 100
    assert [path.name for path in out.parent.iterdir()] == ["map.png"]


def test_tsne_shows_no_more_identities_than_distinct_colours():
    features, clusters = _clusters(count=len(IDENTITY_COLOURS) + 2, points_per_cluster=3)
    modalities = np.zeros(features.shape[0], dtype=np.int8)
    figure = tsne_figure(features, clusters, modalities)
    shown = len(IDENTITY_COLOURS)
    assert (
        figure.axes[0].get_title() == f"t-SNE of features\n{shown} of {shown + 2} identities shown, {3 * shown} images"
    )
    with pytest.raises(
        UserError, match=f"identities shown: expected 1 to {shown} \\(one distinct colour each\\), got {shown + 1}"
    ):
        tsne_figure(features, clusters, modalities, max_identities=shown + 1)


def test_draw_tsne_rejects_inconsistent_inputs(tmp_path):
    features, clusters = _clusters(points_per_cluster=5)
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
