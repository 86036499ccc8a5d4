"""The feature file format: round trip, portable paths, atomic writes, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vireid.data import Split
from vireid.errors import FeatureFileError
from vireid.evaluation.feature_file import FeatureSet, load_features, save_features


def _feature_set(root: str) -> FeatureSet:
    images = Split(
        paths=[f"{root}/cam3/0001/0001.jpg", f"{root}/cam1/0001/0002.jpg", "/elsewhere/x.png"],
        person_ids=[1, 1, 7],
        camera_ids=[3, 1, 2],
        modalities=[1, 0, 0],
    )
    features = np.arange(12, dtype=np.float32).reshape(3, 4)
    return FeatureSet(features, images, {"dataset": "sysu", "root": root, "checkpoint": "model.pt"})


def test_round_trip_keeps_every_field(tmp_path):
    original = _feature_set(str(tmp_path / "SYSU-MM01"))
    path = save_features(tmp_path / "features.npz", original)
    loaded = load_features(path)
    np.testing.assert_array_equal(loaded.features, original.features)
    assert loaded.features.dtype == np.float32
    assert loaded.images.paths == original.images.paths
    for field in ("person_ids", "camera_ids", "modalities"):
        np.testing.assert_array_equal(getattr(loaded.images, field), getattr(original.images, field))
    assert loaded.metadata["checkpoint"] == "model.pt"
    assert loaded.metadata["format"] == "vireid-features" and loaded.metadata["version"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["features.npz"]  # no temporary file left


def test_paths_are_stored_relative_to_the_root_and_can_be_re_rooted(tmp_path):
    path = save_features(tmp_path / "f.npz", _feature_set(str(tmp_path / "SYSU-MM01")))
    with np.load(path, allow_pickle=False) as archive:
        assert archive["paths"].tolist() == ["cam3/0001/0001.jpg", "cam1/0001/0002.jpg", "/elsewhere/x.png"]
        assert json.loads(str(archive["metadata"]))["root"] == str(tmp_path / "SYSU-MM01")
    moved = load_features(path, root="/new/place")
    assert moved.images.paths == ("/new/place/cam3/0001/0001.jpg", "/new/place/cam1/0001/0002.jpg", "/elsewhere/x.png")


def test_mismatched_rows_are_refused():
    images = _feature_set("/r").images
    with pytest.raises(ValueError, match="N = 3"):
        FeatureSet(np.zeros((2, 4), dtype=np.float32), images)


def test_missing_file(tmp_path):
    with pytest.raises(FeatureFileError, match="does not exist") as caught:
        load_features(tmp_path / "nope.npz")
    assert "nope.npz" in str(caught.value)


def test_not_an_npz(tmp_path):
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(FeatureFileError, match="text.npz: expected a vireid feature file"):
        load_features(tmp_path / "text.npz")


def test_npz_of_another_kind(tmp_path):
    np.savez(tmp_path / "other.npz", weights=np.zeros(3))
    with pytest.raises(FeatureFileError, match="missing features, paths"):
        load_features(tmp_path / "other.npz")


def test_wrong_version(tmp_path):
    path = save_features(tmp_path / "f.npz", _feature_set("/r"))
    with np.load(path, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    metadata = json.loads(str(arrays["metadata"]))
    arrays["metadata"] = np.array(json.dumps(dict(metadata, version=99)))
    np.savez(tmp_path / "future.npz", **arrays)
    with pytest.raises(FeatureFileError, match="version 99"):
        load_features(tmp_path / "future.npz")
