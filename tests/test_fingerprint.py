"""The dataset fingerprint: counts and file-list hash recorded with every result and
feature file, and the refusal to score feature files of different data together."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np

from vireid.cli import main
from vireid.datasets import dataset_fingerprint, describe_fingerprint, get_dataset
from vireid.datasets.regdb import regdb_test_images
from vireid.evaluation.feature_file import FeatureSet, save_features
from vireid.evaluation.protocols import evaluate_protocol


def _fresh_fingerprint(name, root):
    dataset_fingerprint.cache_clear()
    return dataset_fingerprint(name, str(root))


def test_counts_and_hash_equal_an_independent_walk(sysu_root):
    fingerprint = _fresh_fingerprint("sysu", sysu_root)
    names = sorted(p.relative_to(sysu_root).as_posix() for p in sysu_root.rglob("*.jpg"))
    assert fingerprint["image_files"] == len(names)
    assert fingerprint["files"] == hashlib.sha256("\n".join(names).encode()).hexdigest()[:12]
    dataset = get_dataset("sysu")
    train = dataset.read_training_split(sysu_root, 0)
    test = dataset.read_test_images(sysu_root, 0)
    assert fingerprint["images"] == {
        "train": {"visible": int((train.modalities == 0).sum()), "infrared": int((train.modalities == 1).sum())},
        "test": {"visible": int((test.modalities == 0).sum()), "infrared": int((test.modalities == 1).sum())},
    }
    assert describe_fingerprint(fingerprint) == (
        f"sysu: train {fingerprint['images']['train']['visible']} visible + "
        f"{fingerprint['images']['train']['infrared']} infrared, test {fingerprint['images']['test']['visible']} + "
        f"{fingerprint['images']['test']['infrared']}; {len(names)} image files, hash {fingerprint['files']}"
    )


def test_same_data_elsewhere_has_the_same_fingerprint_and_one_more_file_changes_it(regdb_root, tmp_path):
    copy = tmp_path / "RegDB"
    shutil.copytree(regdb_root, copy)
    before = _fresh_fingerprint("regdb", regdb_root)
    assert _fresh_fingerprint("regdb", copy) == before
    extra = next(copy.rglob("*.bmp"))
    shutil.copy(extra, extra.with_name("extra.bmp"))
    after = _fresh_fingerprint("regdb", copy)
    assert after["image_files"] == before["image_files"] + 1 and after["files"] != before["files"]
    extra.with_name("extra.bmp").rename(extra.with_name("renamed.bmp"))
    assert _fresh_fingerprint("regdb", copy)["files"] not in (before["files"], after["files"])


def _regdb_features(root, trial, data):
    images = regdb_test_images(root, trial)
    features = np.random.default_rng(trial).normal(size=(len(images), 4)).astype(np.float32)
    return FeatureSet(features, images, {"dataset": "regdb", "trial": trial, "data": data})


def test_evaluate_refuses_features_of_other_data_naming_both(regdb_root, tmp_path, capsys):
    data = _fresh_fingerprint("regdb", regdb_root)
    revised = {**data, "files": "0123456789ab", "image_files": data["image_files"] + 1}
    first, second = tmp_path / "trial1.npz", tmp_path / "trial2.npz"
    save_features(first, _regdb_features(regdb_root, 1, data))
    save_features(second, _regdb_features(regdb_root, 2, revised))
    assert main(["evaluate", "--features", str(first), str(second), "--protocol", "regdb-v2t"]) == 2
    error = capsys.readouterr().err.strip()
    assert error == (
        f"vireid evaluate: error: {second}: features of other data than {first} "
        f"({describe_fingerprint(revised)} vs {describe_fingerprint(data)}); score each folder's separately"
    )
    save_features(second, _regdb_features(regdb_root, 2, data))
    assert main(["evaluate", "--features", str(first), str(second), "--protocol", "regdb-v2t"]) == 0
    result = evaluate_protocol("regdb-v2t", [_regdb_features(regdb_root, 1, data)])
    assert result.to_dict()["data"] == data


def test_evaluate_json_records_the_fingerprint(regdb_root, tmp_path):
    data = _fresh_fingerprint("regdb", regdb_root)
    save_features(tmp_path / "f.npz", _regdb_features(regdb_root, 3, data))
    arguments = ["evaluate", "--features", str(tmp_path / "f.npz"), "--protocol", "regdb-t2v"]
    assert main([*arguments, "--json", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["data"] == data


def test_unrecorded_fingerprints_are_not_refused(regdb_root):
    with_data = _regdb_features(regdb_root, 1, _fresh_fingerprint("regdb", regdb_root))
    without = _regdb_features(regdb_root, 2, None)
    assert len(evaluate_protocol("regdb-v2t", [with_data, without]).trials) == 2
