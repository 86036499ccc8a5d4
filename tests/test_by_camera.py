"""Results by camera: every query camera x gallery camera cell against a plain loop over the
same trials' draws (SYSU-MM01, its cam3/cam2 rule included, and LLCM), RegDB's single cell, and
the commands that print, keep and draw them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from near_ties import assert_no_near_ties

from vireid.cli import main
from vireid.config import config_to_dict
from vireid.datasets import GalleryOptions, get_dataset, get_protocol, trial_rows
from vireid.datasets.llcm import llcm_test_images
from vireid.datasets.regdb import regdb_test_images
from vireid.datasets.sysu import sysu_test_images
from vireid.engine.checkpoint import Checkpoint, save_checkpoint
from vireid.evaluation.by_camera import evaluate_by_camera
from vireid.evaluation.feature_file import FeatureSet, save_features
from vireid.evaluation.protocols import evaluate_protocol
from vireid.recipe import build_model, load_config


def _features(images, seed: int) -> np.ndarray:
    """Random small-integer features (no two similarities nearly equal, checked by the loop)."""
    return np.random.default_rng(seed).integers(-8, 9, size=(len(images), 12)).astype(np.float32)


def _loop_cell(features, images, queries, gallery, rule) -> tuple[int, list[tuple[float, float, float]]]:
    """Per valid query of one cell, by a plain loop in float64: (R1, AP, INP). The dataset's rule
    removes a camera pair's gallery images whatever their person (SYSU-MM01: cam2 for cam3's queries)
    and, where it says so, the query's person's images from the query's own camera (LLCM)."""
    unit = features.astype(np.float64) / np.linalg.norm(features.astype(np.float64), axis=1, keepdims=True)
    scores = []
    for query in queries:
        query_camera, person = images.camera_ids[query], images.person_ids[query]
        kept = [
            row
            for row in gallery
            if (query_camera, images.camera_ids[row]) not in rule.removed_camera_pairs
            and not (
                rule.remove_same_person_same_camera
                and images.person_ids[row] == person
                and images.camera_ids[row] == query_camera
            )
        ]
        similarities = unit[kept] @ unit[query]
        if len(kept) > 1:
            assert_no_near_ties(-similarities[None])
        ranked = [kept[i] for i in np.argsort(-similarities, kind="stable")]
        hits = [rank for rank, row in enumerate(ranked, 1) if images.person_ids[row] == images.person_ids[query]]
        if not hits:
            continue
        average_precision = np.mean([(i + 1) / rank for i, rank in enumerate(hits)])
        scores.append((float(hits[0] == 1), average_precision, len(hits) / hits[-1]))
    return len(queries), scores


def _loop_table(protocol_name, features, images, trials) -> dict[tuple[int, int], dict]:
    protocol = get_protocol(protocol_name)
    rule = get_dataset(protocol.dataset).scoring
    cells: dict[tuple[int, int], list] = {}
    for trial in trials:
        query_rows, gallery_rows = trial_rows(protocol, images, trial, GalleryOptions())
        for query_camera in sorted(set(images.camera_ids[query_rows].tolist())):
            queries = [row for row in query_rows if images.camera_ids[row] == query_camera]
            for gallery_camera in sorted(set(images.camera_ids[gallery_rows].tolist())):
                gallery = [row for row in gallery_rows if images.camera_ids[row] == gallery_camera]
                cells.setdefault((query_camera, gallery_camera), []).append(
                    _loop_cell(features, images, queries, gallery, rule)
                )
    table = {}
    for key, records in cells.items():
        scored = [np.mean(scores, axis=0) for _, scores in records if scores]
        table[key] = {
            "queries": np.mean([count for count, _ in records]),
            "scored": np.mean([len(scores) for _, scores in records]),
            "metrics": dict(zip(("rank1", "mAP", "mINP"), np.mean(scored, axis=0))) if scored else None,
        }
    return table


@pytest.mark.parametrize("protocol_name", ["sysu-all", "sysu-indoor", "llcm-ir2vis", "llcm-vis2ir"])
def test_every_cell_equals_a_plain_loop_over_the_same_draws(protocol_name, sysu_root, llcm_root):
    images = sysu_test_images(sysu_root) if protocol_name.startswith("sysu") else llcm_test_images(llcm_root)
    features = _features(images, seed=len(protocol_name))
    table = evaluate_by_camera(protocol_name, [FeatureSet(features, images)], trials=[0, 1, 2])
    expected = _loop_table(protocol_name, features, images, [0, 1, 2])
    assert {(cell.query_camera, cell.gallery_camera) for cell in table.cells} == set(expected)
    for cell in table.cells:
        loop = expected[cell.query_camera, cell.gallery_camera]
        assert (cell.queries, cell.scored_queries) == (loop["queries"], loop["scored"])
        if loop["metrics"] is None:
            assert cell.metrics is None
        else:
            assert cell.metrics == pytest.approx(loop["metrics"], abs=1e-9)
    if protocol_name == "sysu-all":  # cam3's queries never see cam2's images
        assert table.cell(3, 2).metrics is None and table.cell(3, 2).scored_queries == 0
        assert table.cell(6, 2).metrics is not None


def test_regdb_has_one_cell_the_protocols_own_result(regdb_root):
    feature_sets = []
    for trial in (1, 2):
        images = regdb_test_images(regdb_root, trial)
        feature_sets.append(FeatureSet(_features(images, trial), images, {"trial": trial}))
    table = evaluate_by_camera("regdb-v2t", feature_sets)
    overall = evaluate_protocol("regdb-v2t", feature_sets).mean()
    (cell,) = table.cells
    assert table.single_pair and table.trials == (1, 2)
    assert cell.metrics == pytest.approx({"rank1": overall["rank1"], "mAP": overall["mAP"], "mINP": overall["mINP"]})
    assert "one query camera and one gallery camera, so its one cell is the protocol's own result" in table.markdown()


def test_evaluate_prints_keeps_and_draws_the_cells(sysu_root, tmp_path, capsys):
    images = sysu_test_images(sysu_root)
    path = save_features(tmp_path / "f.npz", FeatureSet(_features(images, 5), images, {"dataset": "sysu"}))
    base = ["evaluate", "--features", str(path), "--protocol", "sysu-all", "--trials", "0-1"]
    picture = tmp_path / "cameras.png"
    assert main([*base, "--by-camera", "--json", str(tmp_path / "r.json"), "--picture", str(picture)]) == 0
    printed = capsys.readouterr().out
    assert "| sysu-all: R1 (scored / queries) | gallery cam1 | gallery cam2 | gallery cam4 | gallery cam5 |" in printed
    assert "| query cam3 | " in printed and "| – (0 / " in printed
    saved = json.loads((tmp_path / "r.json").read_text())["by_camera"]
    assert saved["query_cameras"] == [3, 6] and saved["gallery_cameras"] == [1, 2, 4, 5] and saved["trials"] == [0, 1]
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main([*base, "--picture", str(tmp_path / "alone.png")]) == 2
    assert "--picture draws the results by camera: give --by-camera too" in capsys.readouterr().err


def test_vireid_test_by_camera_writes_the_table_and_a_heat_map(sysu_root, tmp_path, capsys):
    config = load_config("tiny", [f"data.root={sysu_root}", "data.height=32", "data.width=16"])
    torch.manual_seed(0)
    model = build_model(config, 16, load_weights=False)
    checkpoint = Checkpoint(config=config_to_dict(config), num_classes=16, model=model.state_dict(), epoch=1)
    save_checkpoint(tmp_path / "model.pt", checkpoint)
    arguments = ["test", str(tmp_path / "model.pt"), "--protocol", "sysu-indoor", "--trials", "0-1", "--quiet"]
    assert main([*arguments, "--by-camera"]) == 0
    printed = capsys.readouterr().out
    assert "| sysu-indoor: mAP (scored / queries) | gallery cam1 | gallery cam2 |" in printed
    assert (tmp_path / "by_camera_sysu-indoor.png").is_file()
    record = json.loads((tmp_path / "results.json").read_text())[0]
    assert [cell["gallery_camera"] for cell in record["by_camera"]["cells"]] == [1, 2, 1, 2]
    assert "| sysu-indoor: R1 (scored / queries)" in (tmp_path / "results.md").read_text()
