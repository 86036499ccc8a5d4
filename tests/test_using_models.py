"""Using a trained checkpoint: `vireid extract / index / search / export / plot`, the
pictures of `vireid test`, and the refusals (unreadable images, wrong architecture)."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from near_ties import assert_no_near_ties, cosine_distances
from PIL import Image

from vireid.cli import main
from vireid.data.image_folder import list_images
from vireid.datasets.sysu import sysu_test_images
from vireid.engine.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint, save_checkpoint
from vireid.engine.extract import extract_test_features
from vireid.errors import UserError
from vireid.evaluation.feature_file import load_features, save_features
from vireid.evaluation.metrics import gallery_order, pairwise_distances
from vireid.modality import Modality
from vireid.retrieval.encoders import onnx_encoder
from vireid.retrieval.export import FeatureModel
from vireid.synthetic.writer import write_synthetic_dataset

TINY = "tiny"  # the shipped config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained for two steps: (checkpoint path, dataset root)."""
    folder = tmp_path_factory.mktemp("using")
    root = folder / "SYSU-MM01"
    write_synthetic_dataset("sysu", root, identities=16, images_per_id=4, size=(64, 32), seed=2, workers=2)
    run = folder / "run"
    assert (
        main(
            [
                "train",
                str(TINY),
                "--set",
                f"data.root={root}",
                "--set",
                "train.epochs=1",
                "--set",
                "train.steps_per_epoch=2",
                "--set",
                "train.eval_every=0",
                "--set",
                "train.workers=0",
                "--out",
                str(run),
                "--quiet",
            ]
        )
        == 0
    )
    return run / "last.pt", root


@pytest.fixture(scope="module")
def dataset_features(trained):
    checkpoint, _ = trained
    model, config, _ = model_from_checkpoint(checkpoint)
    return extract_test_features(model, config, "cpu", progress=False)


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    """`vireid export` of the trained checkpoint, run once: (folder of the ONNX files, what it printed)."""
    checkpoint, _ = trained
    folder = tmp_path_factory.mktemp("exported")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["export", str(checkpoint), "--out", str(folder)]) == 0
    return folder, printed.getvalue()


def _own_images(root: Path, modality: Modality, folder: Path, count: int = 6) -> list[Path]:
    """Copy ``count`` test images of ``modality`` into nested folders of ``folder``."""
    images = sysu_test_images(root).of_modality(modality)
    copied = []
    for number, source in enumerate(images.paths[:count]):
        target = folder / f"group{number % 2}" / f"image{number}{Path(source).suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
        copied.append(target)
    return copied


def test_list_images_recurses_filters_and_reads_list_files(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/one.JPG", "a/b/two.png", "three.bmp", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert list_images(tmp_path) == [str(tmp_path / name) for name in ("a/b/two.png", "a/one.JPG", "three.bmp")]
    listing = tmp_path / "list.txt"
    listing.write_text("# my queries\na/one.JPG\n\n  three.bmp \n")
    assert list_images(listing) == [str(tmp_path / "a/one.JPG"), str(tmp_path / "three.bmp")]
    with pytest.raises(UserError, match="does not exist"):
        list_images(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"empty: expected image files"):
        list_images(tmp_path / "empty")


def test_extract_skips_unreadable_files_and_matches_the_test_features(trained, dataset_features, tmp_path, capsys):
    checkpoint, root = trained
    copied = _own_images(root, Modality.INFRARED, tmp_path / "mine")
    (tmp_path / "mine" / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "mine" / "readme.txt").write_text("ignored: not an image suffix")
    out = tmp_path / "mine.npz"
    assert (
        main(
            [
                "extract",
                str(checkpoint),
                "--images",
                str(tmp_path / "mine"),
                "--modality",
                "infrared",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert "skipped 1 file(s)" in captured.err and str(tmp_path / "mine" / "broken.jpg") in captured.err
    assert f"wrote {len(copied)} infrared features" in captured.out
    saved = load_features(out)
    assert sorted(saved.images.paths) == sorted(str(path.resolve()) for path in copied)
    assert set(saved.images.modalities.tolist()) == {int(Modality.INFRARED)}
    assert set(saved.images.person_ids.tolist()) == {-1}
    assert saved.metadata["model"]["parts"] == 4 and saved.metadata["model"]["dimension"] == saved.features.shape[1]
    # the same image gives the same feature as in the dataset's test features
    test_images = dataset_features.images
    for row, path in enumerate(saved.images.paths):
        number = int(Path(path).stem.removeprefix("image"))
        source_row = int(np.flatnonzero(test_images.modalities == int(Modality.INFRARED))[number])
        np.testing.assert_allclose(saved.features[row], dataset_features.features[source_row], atol=1e-5)


def test_deep_images_give_the_features_of_their_eight_bit_version_and_tiny_ones_are_skipped(trained, tmp_path, capsys):
    checkpoint, root = trained
    (source,) = _own_images(root, Modality.INFRARED, tmp_path / "source", count=1)
    grey = np.asarray(Image.open(source).convert("L"))  # (H, W) uint8
    folder = tmp_path / "deep"
    folder.mkdir()
    Image.fromarray(grey).save(folder / "a_8bit.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(folder / "b_16bit.png")  # 255 -> 65535
    Image.fromarray(grey.astype(np.float32) / 255, mode="F").save(folder / "c_float.tif")
    Image.new("L", (1, 1)).save(folder / "d_dot.png")
    out = tmp_path / "deep.npz"
    arguments = ["extract", str(checkpoint), "--images", str(folder), "--modality", "infrared", "--out", str(out)]
    assert main([*arguments, "--quiet"]) == 0
    error = capsys.readouterr().err
    assert "skipped 1 file(s)" in error and "d_dot.png: an image of 1x1 pixels is too small" in error
    features = load_features(out).features
    assert features.shape[0] == 3
    np.testing.assert_allclose(features[1], features[0], atol=1e-6)
    np.testing.assert_allclose(features[2], features[0], atol=1e-6)


def test_extract_of_nothing_readable_is_an_error(trained, tmp_path, capsys):
    checkpoint, _ = trained
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.png").write_bytes(b"garbage")
    assert (
        main(
            [
                "extract",
                str(checkpoint),
                "--images",
                str(tmp_path / "bad"),
                "--modality",
                "visible",
                "--out",
                str(tmp_path / "f.npz"),
                "--quiet",
            ]
        )
        == 2
    )
    assert "none of its 1 files could be read" in capsys.readouterr().err
    assert not (tmp_path / "f.npz").exists()


def test_a_checkpoint_of_another_architecture_is_refused(trained, tmp_path, capsys):
    checkpoint, _ = trained
    with pytest.raises(CheckpointError, match=r"do not fit the network \(resnet18, 2 parts of 128.*part_head"):
        model_from_checkpoint(checkpoint, overrides=["model.parts=2"])
    with pytest.raises(CheckpointError, match=r"resnet50.*of another shape"):
        model_from_checkpoint(checkpoint, overrides=["model.backbone=resnet50"])
    overrides = ["--set", "model.parts=0", "--set", "test.feature=global"]
    assert main(["export", str(checkpoint), *overrides, "--out", str(tmp_path)]) == 2
    assert "no parts" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_index_and_search_with_features_equal_the_evaluator_ranking(dataset_features, tmp_path, capsys):
    features_file = tmp_path / "features.npz"
    from vireid.evaluation.feature_file import FeatureSet, save_features

    # random features of the test images, with no near ties: the index ranks by float64 similarities,
    # the evaluator by float32 ones, and a trained model's features (other ones on another CPU) might
    # hold two similarities within rounding of each other
    features = np.random.default_rng(0).normal(size=dataset_features.features.shape).astype(np.float32)
    images = dataset_features.images
    save_features(features_file, FeatureSet(features, images, dataset_features.metadata))
    index_file = tmp_path / "gallery.npz"
    assert main(["index", str(features_file), "--modality", "visible", "--out", str(index_file)]) == 0
    visible = np.flatnonzero(images.modalities == int(Modality.VISIBLE))
    assert f"indexed {visible.size} images" in capsys.readouterr().out
    infrared = np.flatnonzero(images.modalities == int(Modality.INFRARED))[:5]
    assert_no_near_ties(cosine_distances(features[infrared], features[visible]), places=8)
    query_file = tmp_path / "queries.npz"
    save_features(query_file, FeatureSet(features[infrared], images.subset(infrared), dataset_features.metadata))
    results_file = tmp_path / "hits.json"
    assert (
        main(["search", str(index_file), "--features", str(query_file), "--top-k", "7", "--json", str(results_file)])
        == 0
    )
    printed = capsys.readouterr().out
    hits = json.loads(results_file.read_text())
    expected = gallery_order(pairwise_distances(features[infrared], features[visible]))[:, :7]
    for query, expected_rows in zip(hits, expected.numpy()):
        assert [hit["path"] for hit in query["hits"]] == [images.paths[visible[row]] for row in expected_rows]
    assert images.paths[visible[expected[0, 0]]] in printed
    # an IVF index visiting all its lists finds the same
    assert (
        main(
            [
                "index",
                str(features_file),
                "--modality",
                "visible",
                "--kind",
                "ivf",
                "--nlist",
                "2",
                "--nprobe",
                "2",
                "--out",
                str(tmp_path / "ivf.npz"),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "search",
                str(tmp_path / "ivf.npz"),
                "--features",
                str(query_file),
                "--top-k",
                "7",
                "--json",
                str(tmp_path / "ivf.json"),
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "ivf.json").read_text()) == hits


def test_search_with_images_prints_writes_json_and_a_picture(trained, dataset_features, tmp_path, capsys):
    checkpoint, root = trained
    features_file = tmp_path / "features.npz"
    from vireid.evaluation.feature_file import save_features

    save_features(features_file, dataset_features)
    index_file = tmp_path / "gallery.npz"
    assert main(["index", str(features_file), "--modality", "visible", "--out", str(index_file)]) == 0
    _own_images(root, Modality.INFRARED, tmp_path / "queries", count=3)
    picture = tmp_path / "ranks.png"
    assert (
        main(
            [
                "search",
                str(index_file),
                "--images",
                str(tmp_path / "queries"),
                "--checkpoint",
                str(checkpoint),
                "--modality",
                "infrared",
                "--top-k",
                "4",
                "--json",
                str(tmp_path / "hits.json"),
                "--picture",
                str(picture),
                "--quiet",
            ]
        )
        == 0
    )
    hits = json.loads((tmp_path / "hits.json").read_text())
    assert len(hits) == 3 and all(len(query["hits"]) == 4 for query in hits)
    assert all(hit["modality"] == "visible" for query in hits for hit in query["hits"])
    with Image.open(picture) as image:
        assert image.width > 5 * 64 and image.height > 3 * 64  # 3 rows of query + 4 matches
    # a query model whose features differ from the index's is refused, naming what differs
    capsys.readouterr()
    assert (
        main(
            [
                "search",
                str(index_file),
                "--images",
                str(tmp_path / "queries"),
                "--checkpoint",
                str(checkpoint),
                "--modality",
                "infrared",
                "--set",
                "test.feature=global",
                "--quiet",
            ]
        )
        == 2
    )
    error = capsys.readouterr().err
    assert "feature" in error and "global" in error and "both" in error


def test_search_refuses_queries_of_another_model_of_the_same_shape(trained, dataset_features, tmp_path, capsys):
    checkpoint, root = trained
    state = load_checkpoint(checkpoint)
    state.model = {
        name: tensor + 0.01 if tensor.is_floating_point() else tensor for name, tensor in state.model.items()
    }
    state.config["name"] = "another_run"
    other = save_checkpoint(tmp_path / "other.pt", state)
    save_features(tmp_path / "gallery.npz", dataset_features)
    assert (
        main(["index", str(tmp_path / "gallery.npz"), "--modality", "visible", "--out", str(tmp_path / "index.npz")])
        == 0
    )
    _own_images(root, Modality.INFRARED, tmp_path / "night", count=2)
    arguments = ["search", str(tmp_path / "index.npz"), "--images", str(tmp_path / "night"), "--modality", "infrared"]
    capsys.readouterr()
    assert main([*arguments, "--checkpoint", str(other), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert (
        'the query features come from another model than the index\'s gallery (run "tiny" vs "another_run"; weights:'
        in error
    )
    assert len(error.strip().splitlines()) == 1
    assert main([*arguments, "--checkpoint", str(checkpoint), "--quiet"]) == 0  # the index's own model is accepted


def test_onnx_export_matches_pytorch_for_each_modality(trained, exported):
    checkpoint, _ = trained
    model, config, _ = model_from_checkpoint(checkpoint)
    path = exported[0] / "last.infrared.onnx"
    for batch in (1, 7):  # the batch size is dynamic
        images = torch.randn(
            batch, 3, config.data.height, config.data.width, generator=torch.Generator().manual_seed(batch)
        )
        infrared = FeatureModel(model, Modality.INFRARED, config)(images).numpy()
        visible = FeatureModel(model, Modality.VISIBLE, config)(images).numpy()
        encoded = onnx_encoder(path, Modality.INFRARED).encode(images)
        assert encoded.shape == infrared.shape
        assert np.abs(encoded - infrared).max() < 1e-4
        # the file holds the infrared stem (the two stems start from their own random weights), not the visible
        assert np.abs(encoded - visible).max() > 1e-2
    import onnx

    metadata = {prop.key: prop.value for prop in onnx.load(str(path)).metadata_props}
    assert metadata["vireid.modality"] == "infrared"
    assert json.loads(metadata["vireid.input"])["height"] == config.data.height


def test_cli_export_writes_both_modalities_and_reports_the_difference(exported):
    folder, printed = exported
    assert sorted(path.name for path in folder.iterdir()) == ["last.infrared.onnx", "last.visible.onnx"]
    differences = [float(line.rsplit(" ", 1)[1]) for line in printed.splitlines() if "max abs diff" in line]
    assert len(differences) == 2 and max(differences) < 1e-4


def test_cli_test_writes_pictures_and_plot_draws_them_again(trained, tmp_path, capsys):
    checkpoint, _ = trained
    out = tmp_path / "scores"
    assert main(["test", str(checkpoint), "--trials", "0-1", "--out", str(out), "--quiet"]) == 0
    names = {"cmc.png", "ranks_sysu-all.png", "ranks_sysu-indoor.png"}
    assert names <= {path.name for path in out.iterdir()}
    assert all(f"({name})" in (out / "results.md").read_text() for name in names)
    plots = {
        "cmc": ["cmc", str(out / "results.json")],
        "tsne": ["tsne", str(out / "features.npz"), "--identities", "5"],
        "ranks": [
            "ranks",
            str(out / "features.npz"),
            "--protocol",
            "sysu-indoor",
            "--trial",
            "1",
            "--queries",
            "3",
            "--top-k",
            "5",
        ],
    }
    for name, arguments in plots.items():
        assert main(["plot", *arguments, "--out", str(tmp_path / f"{name}.png")]) == 0
        with Image.open(tmp_path / f"{name}.png") as image:
            assert image.width > 100 and image.height > 100
    assert main(["plot", "ranks", str(out / "features.npz"), "--out", str(tmp_path / "x.png")]) == 2
    assert "--protocol" in capsys.readouterr().err


def test_a_parts_feature_of_a_model_without_parts_is_a_config_error():
    from vireid.config import ConfigError
    from vireid.recipe import load_config

    for feature in ("parts", "both"):
        with pytest.raises(ConfigError, match=f"test.feature: '{feature}' needs a model with parts"):
            load_config("tiny", ["model.parts=0", f"test.feature={feature}"])
    with pytest.raises(
        ConfigError, match="test.feature: expected one of 'global' .the test embeddings of agw., got 'x'"
    ):
        load_config("sysu_agw", ["test.feature=x"])


def test_extract_and_search_with_the_exported_onnx_file_match_the_checkpoint(
    trained, exported, dataset_features, tmp_path, capsys
):
    checkpoint, root = trained
    onnx_folder, _ = exported
    _own_images(root, Modality.INFRARED, tmp_path / "night", count=4)
    onnx_file = onnx_folder / "last.infrared.onnx"
    arguments = ["--images", str(tmp_path / "night"), "--modality", "infrared", "--quiet"]
    assert main(["extract", str(checkpoint), *arguments, "--out", str(tmp_path / "torch.npz")]) == 0
    assert main(["extract", str(onnx_file), *arguments, "--out", str(tmp_path / "onnx.npz")]) == 0
    from_torch, from_onnx = load_features(tmp_path / "torch.npz"), load_features(tmp_path / "onnx.npz")
    assert from_onnx.images.paths == from_torch.images.paths
    assert np.abs(from_onnx.features - from_torch.features).max() < 1e-4
    assert (
        from_onnx.metadata["model"] == from_torch.metadata["model"]
    )  # so an index of checkpoint features accepts them
    from vireid.evaluation.feature_file import save_features

    save_features(tmp_path / "features.npz", dataset_features)
    assert (
        main(["index", str(tmp_path / "features.npz"), "--modality", "visible", "--out", str(tmp_path / "index.npz")])
        == 0
    )
    assert (
        main(
            [
                "search",
                str(tmp_path / "index.npz"),
                "--checkpoint",
                str(onnx_file),
                *arguments,
                "--json",
                str(tmp_path / "hits.json"),
            ]
        )
        == 0
    )
    assert len(json.loads((tmp_path / "hits.json").read_text())) == 4
    capsys.readouterr()
    # the file of the other modality, a foreign ONNX file and --set are refused by name
    assert main(["extract", str(onnx_folder / "last.visible.onnx"), *arguments, "--out", str(tmp_path / "x.npz")]) == 2
    assert (
        "last.visible.onnx: this file computes visible features, but the images are infrared" in capsys.readouterr().err
    )
    foreign = tmp_path / "foreign.onnx"
    foreign.write_bytes(b"not a model")
    assert main(["extract", str(foreign), *arguments, "--out", str(tmp_path / "x.npz")]) == 2
    assert "foreign.onnx: expected an ONNX file written by `vireid export`" in capsys.readouterr().err
    assert (
        main(["extract", str(onnx_file), *arguments, "--set", "test.flip=true", "--out", str(tmp_path / "x.npz")]) == 2
    )
    assert "--set applies to checkpoints only" in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists()


def test_cli_test_rerank_adds_labelled_rows_and_keeps_both_in_results_json(trained, tmp_path, capsys):
    checkpoint, _ = trained
    out = tmp_path / "reranked"
    arguments = ["test", str(checkpoint), "--trials", "0", "--out", str(out), "--quiet"]
    assert main([*arguments, "--k1", "8"]) == 0  # --k1 asks for re-ranking (test.rerank, test.rerank_k1)
    printed = capsys.readouterr().out
    assert "plain and re-ranked (k1 8, k2 6, λ 0.3)" in printed  # the start line says so
    report = (out / "results.md").read_text()
    for protocol in ("sysu-all", "sysu-indoor"):
        assert f"| {protocol} single-shot (agw draws) |" in report
        assert f"| {protocol} single-shot (agw draws), re-ranked (k1 8, k2 6, λ 0.3) |" in report
    records = json.loads((out / "results.json").read_text())
    assert [(record["protocol"], record["reranked"]) for record in records] == [
        ("sysu-all", None),
        ("sysu-all", {"k1": 8, "k2": 6, "lambda_value": 0.3}),
        ("sysu-indoor", None),
        ("sysu-indoor", {"k1": 8, "k2": 6, "lambda_value": 0.3}),
    ]
    assert sorted(path.name for path in out.glob("ranks_*.png")) == ["ranks_sysu-all.png", "ranks_sysu-indoor.png"]
