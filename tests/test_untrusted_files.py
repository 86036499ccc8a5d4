"""Checkpoints and model files as untrusted input: what vireid writes holds only plain values,
version-1 checkpoints still load, a file that would run code while it is read is refused by every
command before anything of it runs, a record lacking an entry vireid needs is refused in one line,
and an ONNX file that names other files is refused before ONNX Runtime reads them."""

from __future__ import annotations

import os
import pathlib
import pickle
import random
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper
import pytest
import torch
import torchvision

from vireid.cli import main
from vireid.datasets.sysu import sysu_test_images
from vireid.engine.checkpoint import (
    FORMAT_NAME,
    FORMAT_VERSION,
    TRAINING_KEYS,
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    model_from_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from vireid.engine.trainer import train
from vireid.evaluation.feature_file import FeatureSet
from vireid.models.backbone import TwoStreamResNet, WeightsError
from vireid.recipe import load_config
from vireid.retrieval.index import GalleryIndex

DATA = Path(__file__).parent / "data"  # how its checkpoints were made: tests/data/README.md
VERSION_1 = DATA / "checkpoint_v1.pt"
PLAIN_TYPES = (torch.Tensor, int, float, str, bool, type(None), list, tuple, dict, OrderedDict)


def _leaf_types(value) -> set[type]:
    """The type of every value inside ``value`` (dict keys included), containers walked through."""
    if isinstance(value, dict):
        return {type(value)}.union(*(_leaf_types(key) | _leaf_types(item) for key, item in value.items()))
    if isinstance(value, (list, tuple)):
        return {type(value)}.union(*(_leaf_types(item) for item in value))
    return {type(value)}


def _draws() -> tuple[list[int], list[int], list[float], list[int], list[float]]:
    """Draws from every generator a checkpoint restores: Python's, numpy's (with its cached gaussian) and torch's."""
    return (
        [random.getrandbits(32) for _ in range(3)],
        np.random.randint(0, 2**31 - 1, size=3).tolist(),
        np.random.normal(size=3).tolist(),
        torch.randint(0, 2**31 - 1, (3,)).tolist(),
        [random.gauss(0, 1) for _ in range(3)],
    )


def test_a_trained_checkpoint_holds_only_plain_values(sysu_root, tmp_path):
    config = load_config(
        "tiny",
        [
            f"data.root={sysu_root}",
            "train.epochs=1",
            "train.steps_per_epoch=1",
            "train.identities_per_batch=2",
            "train.instances_per_modality=2",
            "train.workers=0",
        ],
    )
    for path in (train(config, tmp_path / "run", progress=False), tmp_path / "run" / "best.pt"):
        assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
        record = torch.load(path, weights_only=True)  # no allowlist: what weights_only builds by default
        assert (record["format"], record["version"]) == (FORMAT_NAME, FORMAT_VERSION) == ("vireid-checkpoint", 3)
        assert set(record) >= {*TRAINING_KEYS, "method", "dataset", "loss", "provenance"}
        assert (record["method"], record["dataset"]) == ("agw_fgfl_cmimpl", "sysu")
        assert _leaf_types(record) <= set(PLAIN_TYPES), _leaf_types(record) - set(PLAIN_TYPES)
        numpy_state = record["rng"]["numpy"]
        assert sorted(numpy_state) == ["gauss", "has_gauss", "key", "pos"]
        assert len(numpy_state["key"]) == 624 and {type(number) for number in numpy_state["key"]} == {int}
        assert load_checkpoint(path, needs=TRAINING_KEYS).epoch == 1


def test_the_rng_record_restores_every_generator_exactly_through_a_file(tmp_path):
    np.random.normal()  # numpy now caches the second gaussian of a pair: has_gauss 1
    random.gauss(0, 1)  # Python caches one too
    save_checkpoint(tmp_path / "rng.pt", Checkpoint(config={}, num_classes=0, model={}, epoch=0, rng=rng_state()))
    expected = _draws()
    _draws()  # the generators move on
    record = load_checkpoint(tmp_path / "rng.pt", needs=())
    assert record.rng["numpy"]["has_gauss"] == 1
    set_rng_state(record.rng)
    assert _draws() == expected


def test_a_version_1_checkpoint_loads_with_its_numpy_state_allowed_and_converted():
    assert sorted(torch.serialization.get_unsafe_globals_in_checkpoint(VERSION_1)) == [
        "numpy._core.multiarray._reconstruct",
        "numpy.dtype",
        "numpy.ndarray",
    ]
    with pytest.raises(pickle.UnpicklingError, match="numpy"):
        torch.load(VERSION_1, weights_only=True)  # without the allowlist: numpy's objects are refused
    assert load_checkpoint(VERSION_1, mmap=True).config["train"]["seed"] == 0  # as `vireid test` groups seeds
    record = load_checkpoint(VERSION_1, needs=TRAINING_KEYS)
    assert (record.version, record.epoch, record.step, record.method, record.provenance) == (
        1,
        1,
        1,
        "agw_fgfl_cmimpl",
        {},
    )
    assert record.num_classes == 6 and record.selected_on == "test rank-1 (reference habit)"
    assert record.config["name"] == "tiny" and record.config["data"]["root"] == "SYSU-MM01"
    assert record.best == {"metric": 0.375, "epoch": 1, "scope": "sysu-all", "measure": record.selected_on}
    numpy_state = record.rng["numpy"]
    assert isinstance(numpy_state, dict) and len(numpy_state["key"]) == 624 and numpy_state["pos"] == 624
    set_rng_state(record.rng)
    # drawn after restoring the file's record with the code that wrote it (tests/data/README.md)
    assert [random.getrandbits(32) for _ in range(3)] == [886303861, 3313327420, 3655880909]
    assert np.random.randint(0, 2**31 - 1, size=3).tolist() == [209652396, 398764591, 924231285]
    assert torch.randint(0, 2**31 - 1, (3,)).tolist() == [1815442645, 1532153377, 454053479]
    model, config, _ = model_from_checkpoint(VERSION_1)
    assert model.describe() == "(resnet18, 2 parts of 1, cmimpl on, non-local on, 6 classes)"
    stem = model.state_dict()["backbone.stems.0.conv1.weight"]  # stored as one value, broadcast
    assert stem.shape == (64, 3, 7, 7) and torch.equal(stem, torch.full_like(stem, stem.reshape(-1)[0].item()))


@pytest.mark.parametrize("version", [2, 3])
def test_checkpoints_of_earlier_releases_load_with_what_they_hold(version):
    record = load_checkpoint(DATA / f"checkpoint_v{version}.pt", needs=TRAINING_KEYS)
    assert (record.version, record.epoch, record.step, record.num_classes) == (version, 1, 1, 6)
    assert (record.method, record.dataset, record.selected_on) == (
        "agw_fgfl_cmimpl",
        "sysu",
        "test rank-1 (reference habit)",
    )
    assert record.best == {"metric": 0.375, "epoch": 1, "scope": "sysu-all", "measure": record.selected_on}
    assert record.metrics["sysu-all/rank1"] == 0.375 and record.evaluated is True
    if version == 3:  # provenance and the loss's state came with version 3
        assert record.provenance["vireid"] == "0.1.0" and record.provenance["torch"].startswith("2.14.1")
        assert record.provenance["data"]["images"]["train"] == {"visible": 24, "infrared": 24}
        assert len(record.provenance["git_commit"]) == 40 and record.loss == {}
    else:
        assert record.provenance == {} and record.loss == {}
    model, config, _ = model_from_checkpoint(DATA / f"checkpoint_v{version}.pt")
    assert model.describe() == "(resnet18, 2 parts of 1, cmimpl on, non-local on, 6 classes)"
    assert config.test.feature == "global" and config.plugins == []


def test_a_checkpoint_of_an_unknown_version_is_refused_in_one_line(tmp_path, capsys):
    record = load_checkpoint(DATA / "checkpoint_v3.pt").to_state()
    for version, advice in ((4, "; it was written by a newer vireid: upgrade vireid to read it"), (0, "")):
        path = tmp_path / f"v{version}.pt"
        torch.save({**record, "version": version}, path)
        with pytest.raises(CheckpointError) as refused:
            load_checkpoint(path)
        assert str(refused.value) == f"{path}: checkpoint version {version}, this vireid reads versions 1, 2, 3{advice}"
    assert main(["test", str(tmp_path / "v4.pt")]) == 2
    assert capsys.readouterr().err.strip().startswith(f"vireid test: error: {tmp_path / 'v4.pt'}: checkpoint version 4")


class RunsCode:
    """Unpickling it calls ``function(*arguments)``: what a crafted checkpoint does."""

    def __init__(self, function, *arguments):
        self.function, self.arguments = function, arguments

    def __reduce__(self):
        return self.function, self.arguments


PAYLOADS = {
    "os.system": (lambda marker: RunsCode(os.system, f"touch {marker}"), 2, "posix.system"),
    "Path.touch": (lambda marker: RunsCode(pathlib.Path.touch, pathlib.Path(marker)), 2, "getattr"),
    "os.system, protocol 4": (lambda marker: RunsCode(os.system, f"touch {marker}"), 4, "opcode"),
}


def _crafted_checkpoint(path: Path, payload: str, marker: Path) -> Path:
    """A vireid checkpoint's record with an object whose unpickling creates ``marker``."""
    make, protocol, _ = PAYLOADS[payload]
    record = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "config": {}, "epoch": 1, "payload": make(marker)}
    torch.save(record, path, pickle_protocol=protocol)
    return path


@pytest.mark.parametrize("payload", list(PAYLOADS))
def test_the_crafted_checkpoints_do_run_code_when_unpickled_plainly(tmp_path, payload):
    marker = tmp_path / "ran"
    torch.load(_crafted_checkpoint(tmp_path / "crafted.pt", payload, marker), weights_only=False)
    assert marker.exists()  # so the refusals below are of files that would run code


@pytest.fixture(scope="module")
def gallery_index(sysu_root, tmp_path_factory) -> Path:
    images = sysu_test_images(sysu_root)
    features = np.random.default_rng(0).normal(size=(len(images), 8)).astype(np.float32)
    path = tmp_path_factory.mktemp("index") / "index.npz"
    return GalleryIndex.build(FeatureSet(features, images, {"root": str(sysu_root)})).save(path)


COMMANDS = {
    "test": lambda checkpoint, index, root, out: ["test", checkpoint, "--root", root, "--out", out],
    "extract": lambda checkpoint, index, root, out: [
        *("extract", checkpoint, "--images", f"{root}/cam1", "--modality", "visible"),
        *("--out", f"{out}/features.npz"),
    ],
    "export": lambda checkpoint, index, root, out: ["export", checkpoint, "--out", out],
    "search": lambda checkpoint, index, root, out: [
        *("search", index, "--images", f"{root}/cam3", "--checkpoint", checkpoint, "--modality", "infrared"),
    ],
    "train --resume": lambda checkpoint, index, root, out: ["train", "--resume", checkpoint, "--out", out],
}


@pytest.mark.parametrize("payload", list(PAYLOADS))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_refuses_a_checkpoint_that_would_run_code(
    command, payload, sysu_root, gallery_index, tmp_path, capsys
):
    marker = tmp_path / "ran"
    checkpoint = _crafted_checkpoint(tmp_path / "crafted.pt", payload, marker)
    arguments = COMMANDS[command](str(checkpoint), str(gallery_index), str(sysu_root), str(tmp_path / "out"))
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        assert main(arguments) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"vireid {arguments[0]}: error: {checkpoint}: refused: ")
    assert error.endswith("; nothing of it was run") and PAYLOADS[payload][2] in error
    assert len(error.splitlines()) == 1 and not warned  # no warning lines around it either
    assert not marker.exists()


def test_the_refusal_names_what_the_file_holds(tmp_path):
    checkpoint = _crafted_checkpoint(tmp_path / "crafted.pt", "os.system", tmp_path / "ran")
    expected = (
        f"{checkpoint}: refused: it holds objects of posix.system, which a vireid checkpoint (.pt) never holds "
        "(reading them could run any code); nothing of it was run"
    )
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(checkpoint)
    assert str(refused.value) == expected
    assert not (tmp_path / "ran").exists()


def test_cached_imagenet_weights_that_would_run_code_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))  # torch.hub.set_dir, undone after the test
    weights = torchvision.models.get_model_weights("resnet18").IMAGENET1K_V1
    cached = tmp_path / "hub" / "checkpoints" / Path(weights.url).name
    cached.parent.mkdir(parents=True)
    torch.save({"conv1.weight": RunsCode(os.system, f"touch {tmp_path / 'ran'}")}, cached)
    with pytest.raises(WeightsError, match=r"refused the cached ImageNet weights of resnet18 in .*hub/checkpoints"):
        TwoStreamResNet("resnet18").load_pretrained("imagenet")
    assert not (tmp_path / "ran").exists()


def _without(path: Path, *keys: str, **replaced) -> Path:
    """The version-1 checkpoint written again (as this version) without ``keys`` and with ``replaced`` entries."""
    record = {key: value for key, value in load_checkpoint(VERSION_1).to_state().items() if key not in keys}
    torch.save({**record, **replaced}, path)
    return path


@pytest.mark.parametrize("command", ["test", "extract"])
def test_a_checkpoint_lacking_what_vireid_writes_is_refused_in_one_line(command, sysu_root, tmp_path, capsys):
    for missing, named in ((("epoch",), "epoch"), (("model", "num_classes"), "num_classes, model")):
        checkpoint = _without(tmp_path / "partial.pt", *missing)
        arguments = COMMANDS[command](str(checkpoint), "", str(sysu_root), str(tmp_path / "out"))
        assert main(arguments) == 2
        assert capsys.readouterr().err.strip() == (
            f"vireid {command}: error: {checkpoint}: expected a vireid checkpoint with config, num_classes, "
            f"model, epoch; it lacks {named}"
        )
    checkpoint = _without(tmp_path / "mistyped.pt", config="tiny")
    assert main(COMMANDS[command](str(checkpoint), "", str(sysu_root), str(tmp_path / "out"))) == 2
    assert capsys.readouterr().err.strip() == (
        f"vireid {command}: error: {checkpoint}: not a checkpoint as vireid writes them: "
        "config: expected a dict, found str"
    )


def test_resuming_needs_the_training_state_and_a_restorable_rng_record(tmp_path):
    with pytest.raises(CheckpointError, match=r"partial.pt: expected .*; it lacks optimizer, rng$"):
        load_checkpoint(_without(tmp_path / "partial.pt", "optimizer", "rng"), needs=TRAINING_KEYS)
    record = load_checkpoint(VERSION_1)
    short_key = {**record.rng, "numpy": {**record.rng["numpy"], "key": record.rng["numpy"]["key"][:5]}}
    with pytest.raises(CheckpointError, match=r"bad_rng.pt: .*rng.numpy: expected numpy's MT19937 state"):
        load_checkpoint(_without(tmp_path / "bad_rng.pt", rng=short_key), needs=TRAINING_KEYS)
    assert load_checkpoint(_without(tmp_path / "bad_rng.pt", rng=short_key)).epoch == 1  # testing needs no rng


def _onnx_with_values_in(location: str, folder: Path) -> Path:
    """An ONNX file (y = x + w) whose weight w is kept in the file ``location`` names, relative to ``folder``."""
    weight = onnx.numpy_helper.from_array(np.zeros(2, dtype=np.float32), "w")
    weight.ClearField("raw_data")
    weight.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", location), ("length", "8")):
        weight.external_data.add(key=key, value=value)
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Add", ["x", "w"], ["y"])],
        "add",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])],
        [weight],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)])
    model.metadata_props.add(key="vireid.modality", value="visible")
    path = folder / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def test_an_onnx_file_that_keeps_values_in_other_files_is_refused(sysu_root, tmp_path, capsys):
    folder = tmp_path / "model"
    folder.mkdir()
    np.zeros(2, dtype=np.float32).tofile(folder / "weights.bin")
    np.zeros(2, dtype=np.float32).tofile(tmp_path / "elsewhere.bin")
    for location in ("weights.bin", "../elsewhere.bin", str(tmp_path / "elsewhere.bin")):
        path = _onnx_with_values_in(location, folder)
        arguments = ["extract", str(path), "--images", f"{sysu_root}/cam1", "--modality", "visible"]
        assert main([*arguments, "--out", str(tmp_path / "features.npz")]) == 2
        assert capsys.readouterr().err.strip() == (
            f"vireid extract: error: {path}: keeps the values of 1 tensors (e.g. 'w') in other files, "
            "which `vireid export` never does; refused, no other file was read"
        )
    assert not (tmp_path / "features.npz").exists()
