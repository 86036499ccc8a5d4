"""Datasets and methods found by name: the docs' "Add a dataset" file run through
the CLI, discovery of new modules, what registration refuses, and config keys
that pick from the registries."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from near_ties import assert_no_near_ties, cosine_distances

import vireid.datasets
from vireid.cli import main
from vireid.config import ConfigError
from vireid.datasets import DATASETS, Protocol, ScoringRule, get_dataset, get_protocol, register_dataset
from vireid.datasets.sysu import sysu_test_images, sysu_train_split
from vireid.discovery import import_submodules
from vireid.errors import UserError
from vireid.evaluation.feature_file import FeatureSet, load_features
from vireid.evaluation.metrics import rank_metrics
from vireid.evaluation.protocols import evaluate_protocol
from vireid.method import METHODS, get_method, register_method
from vireid.methods.agw import CrossModalityMethod
from vireid.modality import Modality
from vireid.recipe import build_loss, build_model, load_config

ADD_A_DATASET = Path(__file__).resolve().parents[1] / "docs" / "add-a-dataset.md"


@pytest.fixture
def restored_registries():
    """Whatever a test registers is gone afterwards."""
    datasets, methods = dict(DATASETS), dict(METHODS)
    yield
    DATASETS.clear()
    DATASETS.update(datasets)
    METHODS.clear()
    METHODS.update(methods)


def _install_readme_dataset(monkeypatch, folder: Path) -> None:
    """The Python block of the docs' "Add a dataset" page saved as ``mylayout.py`` in a folder
    of the vireid.datasets package (a second one, so that the real folder stays untouched), which
    the package's discovery then imports."""
    section = ADD_A_DATASET.read_text()
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    folder.mkdir()
    (folder / "mylayout.py").write_text(code)
    monkeypatch.setattr(vireid.datasets, "__path__", [*vireid.datasets.__path__, str(folder)])
    monkeypatch.delitem(sys.modules, "vireid.datasets.mylayout", raising=False)
    import_submodules(vireid.datasets.__path__, "vireid.datasets")


def _write_my_layout(sysu_root: Path, root: Path) -> None:
    """The synthetic SYSU-MM01 images, copied into {train,test}/{visible,infrared}/<person id>/."""
    for part, images in (("train", sysu_train_split(sysu_root)), ("test", sysu_test_images(sysu_root))):
        for path, person_id, camera_id, modality in zip(
            images.paths, images.person_ids, images.camera_ids, images.modalities
        ):
            target = (
                root / part / Modality(modality).name.lower() / str(person_id) / f"cam{camera_id}_{Path(path).name}"
            )
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)


def _image_level_map(features: np.ndarray, person_ids: np.ndarray, modalities: np.ndarray) -> float:
    """mAP of infrared queries against every visible image, one query at a time, by float64 distances
    (with no near ties, so that the evaluator's float32 ones rank alike)."""
    query, gallery = np.flatnonzero(modalities == Modality.INFRARED), np.flatnonzero(modalities == Modality.VISIBLE)
    distances = cosine_distances(features[query], features[gallery])
    assert_no_near_ties(distances)
    precisions = []
    for row, query_distances in zip(query, distances):
        order = gallery[np.argsort(query_distances, kind="stable")]
        hits = np.flatnonzero(person_ids[order] == person_ids[row]) + 1  # 1-based positions of the correct images
        if hits.size:
            precisions.append(np.mean(np.arange(1, hits.size + 1) / hits))
    return float(np.mean(precisions))


def test_the_readme_dataset_trains_tests_and_evaluates_through_the_cli(
    sysu_root, tmp_path, capsys, monkeypatch, restored_registries
):
    _install_readme_dataset(monkeypatch, tmp_path / "more_datasets")
    assert get_dataset("mylayout").title == "MyLayout" and get_protocol("mylayout-ir2vis").dataset == "mylayout"
    root = tmp_path / "MyLayout"
    _write_my_layout(sysu_root, root)
    monkeypatch.chdir(tmp_path)
    small = ["--set", "data.height=32", "--set", "data.width=16", "--set", "train.epochs=1", "--set", "train.workers=0"]
    command = ["train", "tiny", "--set", "name=mine", "--set", "data.dataset=mylayout", "--set", f"data.root={root}"]
    assert main([*command, *small, "--set", "train.steps_per_epoch=1", "--quiet"]) == 0
    assert "(mylayout at " in capsys.readouterr().out
    assert main(["test", "runs/mine/best.pt", "--quiet"]) == 0
    assert "| mylayout-ir2vis | infrared → visible | 1 |" in capsys.readouterr().out
    reported = json.loads(Path("runs/mine/results.json").read_text())[0]["mean"]["mAP"]
    evaluate = ["evaluate", "--features", "runs/mine/features.npz", "--protocol", "mylayout-ir2vis"]
    assert main([*evaluate, "--json", "again.json"]) == 0
    assert "| mylayout-ir2vis |" in capsys.readouterr().out
    assert json.loads(Path("again.json").read_text())["mean"]["mAP"] == reported  # the saved features, scored alike
    # the protocol's rule against a loop, on random features of the same images: a trained model's
    # features (another on another CPU) might hold two similarities within rounding of each other
    saved = load_features("runs/mine/features.npz")
    features = np.random.default_rng(0).normal(size=(len(saved.images), 16)).astype(np.float32)
    expected = _image_level_map(features, saved.images.person_ids, saved.images.modalities)
    scored = evaluate_protocol("mylayout-ir2vis", [FeatureSet(features, saved.images)]).mean()["mAP"]
    assert scored == pytest.approx(expected, abs=1e-9)


def test_every_module_of_a_registry_package_is_imported_the_named_ones_first(tmp_path, monkeypatch):
    package = tmp_path / "plugins"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in ("alpha", "beta", "gamma", "registry"):
        (package / f"{name}.py").write_text(
            f"import plugins\nplugins.ORDER = getattr(plugins, 'ORDER', []) + [{name!r}]\n"
        )
    monkeypatch.syspath_prepend(str(tmp_path))
    import plugins

    assert import_submodules(plugins.__path__, "plugins", first=("gamma",)) == ["gamma", "alpha", "beta"]
    assert plugins.ORDER == ["gamma", "alpha", "beta"]  # "registry" defines a package, it does not register into it
    sys.modules.pop("plugins")


def test_registration_refuses_a_taken_name_or_protocol(restored_registries):
    sysu = get_dataset("sysu")
    with pytest.raises(ValueError, match="a dataset named 'sysu' is registered already"):
        register_dataset(sysu)
    clash = dataclasses.replace(sysu, name="copy", protocols=(Protocol("sysu-all", "all", "", "", (0,)),))
    with pytest.raises(ValueError, match=r"protocol names \['sysu-all'\] belong to another dataset"):
        register_dataset(clash)
    stray = dataclasses.replace(
        sysu, name="stray", protocols=(Protocol("stray-x", "all", "", "", (0,), dataset="sysu"),)
    )
    with pytest.raises(ValueError, match="protocol 'stray-x' names dataset 'sysu', not 'stray'"):
        register_dataset(stray)
    with pytest.raises(ValueError, match="a method named 'agw' is registered already"):
        register_method(get_method("agw"))
    register_method(CrossModalityMethod("odd", "a recipe with a key no network has", {"model": {"partz": 3}}))
    with pytest.raises(ConfigError, match=r"model.method: 'odd' sets unknown model keys \['partz'\]"):
        load_config(None, ["model.method=odd"])


def test_config_keys_pick_from_the_registries():
    with pytest.raises(ConfigError, match="data.dataset: expected one of 'sysu', 'regdb', 'llcm', got 'market'"):
        load_config(None, ["data.dataset=market"])
    with pytest.raises(
        ConfigError,
        match="model.method: expected one of 'agw', 'agw_fgfl', 'agw_fgfl_cmimpl', 'caj', 'deen', got 'pcb'",
    ):
        load_config(None, ["model.method=pcb"])
    full = load_config(None, ["model.method=agw_fgfl_cmimpl"]).model
    assert (full.parts, full.cmimpl) == (6, True)
    assert (
        load_config(None, ["model.method=agw_fgfl_cmimpl", "model.parts=4"]).model.parts == 4
    )  # a config's own key wins
    assert (load_config(None).model.method, load_config(None).model.parts) == ("agw", 0)
    saved = {"model": {"method": "agw_fgfl", "parts": 3}}  # a checkpoint's config holds every key: nothing is re-filled
    assert load_config(None, base=saved).model.parts == 3


def test_the_method_builds_the_network_and_the_loss(restored_registries):
    built = []

    class Logged(CrossModalityMethod):
        def build_model(self, config, num_classes, load_weights=True):
            built.append(config.model.parts)
            return super().build_model(config, num_classes, load_weights)

    register_method(Logged("logged", "parts without CMIMPL, logged", {"model": {"parts": 2}}))
    config = load_config(
        None, ["model.method=logged", "model.backbone=resnet18", "model.pretrained=none", "model.part_dim=16"]
    )
    model = build_model(config, num_classes=4, load_weights=False)
    assert built == [2] and model.part_head is not None and model.modality_classifiers is None
    model.train()
    images, modalities = torch.randn(8, 3, 64, 32), torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    losses = build_loss(config, 4, model)(model(images, modalities), torch.tensor([0, 1, 2, 3] * 2), modalities)
    assert set(losses) == {"id", "triplet", "part_id", "part_triplet", "total"}
    assert get_method("logged").loss_terms(config) == ("id", "triplet", "part_id", "part_triplet")


def test_a_scoring_rule_given_by_name_or_spelled_out_scores_alike():
    rng = np.random.default_rng(0)
    distances = rng.random((6, 9))
    query_ids, gallery_ids = rng.integers(0, 3, 6), rng.integers(0, 3, 9)
    query_cameras, gallery_cameras = rng.choice([3, 6], 6), rng.choice([1, 2, 4, 5], 9)
    by_name = rank_metrics(distances, query_ids, gallery_ids, query_cameras, gallery_cameras, "sysu")
    spelled = ScoringRule(removed_camera_pairs=((3, 2),), identity_deduplicated_cmc=True)
    explicit = rank_metrics(distances, query_ids, gallery_ids, query_cameras, gallery_cameras, spelled)
    nothing_removed = rank_metrics(distances, query_ids, gallery_ids, query_cameras, gallery_cameras, ScoringRule())
    assert (by_name.mAP, list(by_name.cmc)) == (explicit.mAP, list(explicit.cmc))
    assert nothing_removed.mAP != by_name.mAP  # camera-2 images of camera-3 queries were removed


def test_which_trials_a_model_serves_is_the_datasets_own_behaviour():
    sysu, regdb = get_dataset("sysu"), get_dataset("regdb")
    assert sysu.model_trial(3) is None and regdb.model_trial(3) == 3  # one model for all draws / one per trial
    assert sysu.split_trials() == (0,) and regdb.split_trials() == tuple(range(1, 11)) and regdb.split_trials(4) == (4,)
    sysu.check_trial(11)  # SYSU-MM01's trials share one split: any data.trial trains the same model
    with pytest.raises(ConfigError, match=r"^data.trial: RegDB has trials 1 to 10, got 11$"):
        regdb.check_trial(11)
    all_search, visible_to_thermal = sysu.default_protocol, regdb.default_protocol
    assert (all_search.name, visible_to_thermal.name) == ("sysu-all", "regdb-v2t")
    assert sysu.scored_trials(all_search, [None], ["f.npz"], [2, 5]) == [(2, 0), (5, 0)]
    assert sysu.scored_trials(all_search, [None], ["f.npz"], None) == [(trial, 0) for trial in range(10)]
    with pytest.raises(UserError, match=r"^sysu-all takes one feature file of all test images, got 2$"):
        sysu.scored_trials(all_search, [None, None], ["a.npz", "b.npz"], None)
    assert regdb.scored_trials(visible_to_thermal, [3, None], ["a.npz", "b.npz"], None) == [(3, 0), (2, 1)]
    with pytest.raises(UserError, match=r"^b.npz: trial 3 again \(also a.npz\); give each trial once$"):
        regdb.scored_trials(visible_to_thermal, [3, 3], ["a.npz", "b.npz"], None)
    with pytest.raises(UserError, match=r"^RegDB trials are the feature files given \(one per trial\), not --trials$"):
        regdb.scored_trials(visible_to_thermal, [3], ["a.npz"], [3])
