"""`vireid import`: checkpoints as the reference repositories save them, built here with the
reference's tensor names and shapes (derived below from its model.py, without its code), read
into vireid and required to give exactly the features of the network they were written from;
and the files it refuses, each in one line with nothing written."""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from command_walk import extract_export_search

from vireid.cli import main
from vireid.engine.checkpoint import load_checkpoint, model_from_checkpoint
from vireid.engine.extract import batch_features
from vireid.engine.reference_import import ReferenceImportError, import_reference
from vireid.modality import Modality
from vireid.recipe import build_model, load_config

RESNET_COPIES = {
    "visible": "visible_module.visible.",
    "thermal": "thermal_module.thermal.",
    "base": "base_resnet.base.",
}
"""The reference's embed_net holds three whole ResNet-50s (its resnet.py's ResNet: torchvision's
names, no fc): the visible and thermal modules, of which the forward uses the stems, and the base,
of which it uses the layers."""
AGW_NON_LOCAL = {2: (2, 3), 3: (3, 4, 5)}  # model.py: NL_2 after layer2's bottlenecks 2, 3; NL_3 after 3, 4, 5
FIGURES = {"cmc": np.linspace(0.4, 0.9, 20).astype(np.float32), "mAP": np.float64(0.4765), "mINP": np.float64(0.353)}


@functools.cache
def _resnet50_tensors() -> dict[str, tuple[torch.Size, torch.dtype]]:
    resnet = torchvision.models.resnet50().state_dict()
    return {name: (t.shape, t.dtype) for name, t in resnet.items() if not name.startswith("fc.")}


def _reference_name(method: str, ours: str) -> str:
    """vireid's name of a tensor -> the name the reference's embed_net gives it, from its model.py:
    stems.0 is the visible module's ResNet, stems.1 the thermal one's; the layers are the base's."""
    parts = ours.split(".")
    if ours.startswith("backbone.stems."):
        copy = RESNET_COPIES["visible" if parts[2] == "0" else "thermal"]
        return copy + ".".join(parts[3:])
    if ours.startswith("backbone.layer"):
        return RESNET_COPIES["base"] + ours.removeprefix("backbone.")
    if ours.startswith("backbone.non_local."):  # layer3_4 -> NL_3.1 (the second of layer3's blocks)
        stage, index = (int(value) for value in parts[2].removeprefix("layer").split("_"))
        inner = {"g": "g.0", "theta": "theta", "phi": "phi", "project": "W"}[parts[3]]
        return f"NL_{stage}.{AGW_NON_LOCAL[stage].index(index)}.{inner}." + ".".join(parts[4:])
    if ours.startswith("mfa."):
        return f"MFA{int(parts[1]) + 1}." + ".".join(parts[2:])
    if ours.startswith("dee.branches."):  # branch b: FC{b}1-FC{b}3 dilated, FC{b} the projection
        branch = int(parts[2]) + 1
        name = f"FC{branch}{int(parts[4]) + 1}" if parts[3] == "dilated" else f"FC{branch}"
        return f"DEE.{name}." + ".".join(parts[5 if parts[3] == "dilated" else 4 :])
    return ours.removeprefix("global_head.") if method != "deen" else ours  # bottleneck, classifier


def _distinct_weights(model: torch.nn.Module) -> None:
    """Weights that tell every tensor apart: the two stems differ, every BatchNorm has its own
    statistics and scale (non-local outputs small, as trained ones are: large ones overflow)."""
    torch.manual_seed(1)
    with torch.no_grad():
        model.backbone.stems[1].conv1.weight.mul_(2)
        for name, module in model.named_modules():
            if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                small = name.endswith(("project.1", "W.1"))
                module.weight.uniform_(*((0.01, 0.02) if small else (0.5, 1.5)))
                module.bias.uniform_(-0.1, 0.1)
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)


def _reference_net(method: str, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The reference's state dict of ``model``: its tensors under the reference's names, the rest of
    the three ResNet-50 copies (which the reference's forward never uses) as zero-stride zeros of
    their shapes (right names and shapes, without 200 MB on disk)."""
    net = {
        copy + name: torch.zeros((), dtype=dtype).expand(shape)
        for copy in RESNET_COPIES.values()
        for name, (shape, dtype) in _resnet50_tensors().items()
    }
    for name, tensor in model.state_dict().items():
        theirs = _reference_name(method, name)
        if theirs.startswith(tuple(RESNET_COPIES.values())):
            assert theirs in net and net[theirs].shape == tensor.shape, theirs  # a tensor of the copies
        net[theirs] = tensor.clone()
    return net


def _reference_file(path: Path, method: str, model: torch.nn.Module, data_parallel: bool = False) -> Path:
    """torch.save of {'net': state_dict, 'cmc', 'mAP', 'mINP', 'epoch'}, as the reference's train.py
    writes it (``data_parallel``: the names of a DataParallel network, ``module.``-prefixed)."""
    net = _reference_net(method, model)
    if data_parallel:
        net = {f"module.{name}": tensor for name, tensor in net.items()}
    torch.save({"net": net, **FIGURES, "epoch": 58}, path)
    return path


def _trained_elsewhere(config_name: str, classes: int) -> tuple[torch.nn.Module, object]:
    config = load_config(config_name, ["model.pretrained=none"])
    model = build_model(config, classes, load_weights=False).eval()
    _distinct_weights(model)
    return model, config


@pytest.mark.parametrize(
    "format_name, dataset, classes, data_parallel",
    [
        ("agw", "sysu", 395, True),
        pytest.param("deen", "regdb", 206, True, marks=pytest.mark.slow),  # DEEN's layout: the refusals below
        pytest.param("caj", "llcm", 713, False, marks=pytest.mark.slow),  # AGW's layout again (make test-slow)
        pytest.param("deen", "sysu", 395, False, marks=pytest.mark.slow),  # the refusals below import it too
    ],
)
def test_a_reference_checkpoint_imports_to_the_same_features(tmp_path, format_name, dataset, classes, data_parallel):
    model, config = _trained_elsewhere(f"{dataset}_{format_name}", classes)
    method = config.model.method
    name = f"{dataset}_{format_name}_p4_n8_lr_0.1_seed_0{'_trial_3' if dataset == 'regdb' else ''}_best.t"
    source = _reference_file(tmp_path / name, method, model, data_parallel)
    import_reference(source, format_name, dataset, tmp_path / "imported.pt")
    imported, imported_config, checkpoint = model_from_checkpoint(tmp_path / "imported.pt")
    assert (imported_config.name, imported_config.model.method) == (config.name, method)
    assert checkpoint.num_classes == classes
    assert imported_config.data.trial == (3 if dataset == "regdb" else config.data.trial)  # RegDB: the file's trial
    torch.manual_seed(0)
    images = torch.randn(3, 3, 64, 32)
    with torch.no_grad():
        for modality in Modality:
            expected = batch_features(model, images, int(modality), config)
            assert torch.equal(batch_features(imported, images, int(modality), imported_config), expected)
    record = checkpoint.provenance["imported"]
    assert record["file"] == name and record["format"] == format_name
    assert record["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert record["reported"]["mAP"] == 0.4765 and record["reported"]["cmc"][0] == pytest.approx(0.4)
    assert checkpoint.epoch == 59  # the reference's epoch 58, counted from 0


@pytest.mark.slow  # a ResNet-50 imported and tested: make test-slow (and CI) runs it
def test_import_and_test_through_the_commands_print_the_references_own_figures(sysu_root, tmp_path, capsys):
    model, _ = _trained_elsewhere("sysu_agw", 395)
    source = _reference_file(tmp_path / "sysu_agw_p4_n8_lr_0.1_seed_0_best.t", "agw", model)
    out = tmp_path / "agw.pt"
    assert main(["import", str(source), "--format", "agw", "--dataset", "sysu", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}: sysu_agw (agw, 395 identities)" in printed
    reported = (
        "Reported by the reference in sysu_agw_p4_n8_lr_0.1_seed_0_best.t (agw: its own test when it saved the "
        "file, epoch 58 counted from 0): rank-1 40.00, rank-5 50.53, rank-10 63.68, rank-20 90.00, "
        "mAP 47.65, mINP 35.30"
    )
    assert reported in printed
    test = ["test", str(out), "--root", str(sysu_root), "--set", "data.height=64", "--set", "data.width=32"]
    assert main([*test, "--protocol", "sysu-all", "--trials", "0", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "sysu-all (1 trial); results into" in printed
    assert printed.rstrip().endswith(reported)
    assert reported in (tmp_path / "results.md").read_text()
    results = json.loads((tmp_path / "results.json").read_text())
    assert results[0]["protocol"] == "sysu-all" and 0 < results[0]["mean"]["mAP"] <= 1
    assert main(["import", str(source), "--format", "agw", "--dataset", "sysu", "--out", str(out)]) == 2
    assert "agw.pt: exists already; --force replaces it" in capsys.readouterr().err


def test_a_bare_state_dict_imports_without_figures(tmp_path):
    model, _ = _trained_elsewhere("regdb_agw", 206)
    torch.save(_reference_net("agw", model), tmp_path / "bare.t")
    with pytest.raises(ReferenceImportError, match="regdb has one model per trial, and the file's name says no"):
        import_reference(tmp_path / "bare.t", "agw", "regdb", tmp_path / "imported.pt")
    checkpoint = import_reference(tmp_path / "bare.t", "agw", "regdb", tmp_path / "imported.pt", trial=2)
    assert checkpoint.provenance["imported"]["reported"] == {} and checkpoint.epoch == 0
    assert checkpoint.config["data"]["trial"] == 2


@pytest.mark.slow  # two ResNet-50 imports tested on RegDB: make test-slow (and CI) runs it
def test_a_folder_of_imported_regdb_trial_models_is_tested_trial_by_trial(regdb_root, tmp_path, capsys):
    model, _ = _trained_elsewhere("regdb_agw", 206)
    folder = tmp_path / "imported"
    for trial in (1, 2):
        source = _reference_file(tmp_path / f"regdb_agw_p4_n8_lr_0.1_seed_0_trial_{trial}_best.t", "agw", model)
        arguments = ["import", str(source), "--format", "agw", "--dataset", "regdb"]
        assert main([*arguments, "--out", str(folder / f"trial_{trial}.pt")]) == 0
        assert f"(agw, 206 identities, trial {trial})" in capsys.readouterr().out
    small = ["--set", "data.height=64", "--set", "data.width=32"]
    assert main(["test", str(folder), "--root", str(regdb_root), *small, "--protocol", "regdb-v2t", "--quiet"]) == 0
    results = json.loads((folder / "results.json").read_text())
    assert [trial["trial"] for trial in results[0]["trials"]] == [1, 2]
    assert capsys.readouterr().out.count("Reported by the reference in regdb_agw_p4_n8_lr_0.1_seed_0_trial_") == 2


# --- refusals: one line, nothing written ----------------------------------------------------------


@pytest.fixture(scope="module")
def deen_sysu_file(tmp_path_factory) -> Path:
    model, _ = _trained_elsewhere("sysu_deen", 395)
    return _reference_file(tmp_path_factory.mktemp("deen") / "sysu_deen_best.t", "deen", model)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (("agw", "sysu", None), r"does not fit the agw network of sysu_agw \(another format, or another dataset's"),
        (
            ("deen", "regdb", None),
            r"does not fit the deen network of regdb_deen .*with no place in the network \d+ \(MFA3\.",
        ),
        (("deen", "llcm", None), r"its classifier has 395 identities, llcm's official training split has 713"),
        (("deen", "sysu", 400), r"its classifier has 395 identities, --num-classes has 400"),
    ],
)
def test_a_file_of_another_format_dataset_or_size_is_refused(deen_sysu_file, tmp_path, arguments, message):
    format_name, dataset, classes = arguments
    with pytest.raises(ReferenceImportError, match=message):
        trial = 1 if dataset == "regdb" else None
        import_reference(deen_sysu_file, format_name, dataset, tmp_path / "out.pt", classes, trial=trial)
    assert list(tmp_path.iterdir()) == []


def test_a_wrong_dataset_names_the_tensors_that_do_not_fit(deen_sysu_file, tmp_path):
    with pytest.raises(ReferenceImportError) as caught:
        import_reference(deen_sysu_file, "deen", "regdb", tmp_path / "out.pt", trial=1)
    assert "tensors of another shape" in str(caught.value)
    assert "dee.branches.0.dilated.0.weight (256, 1024, 3, 3), expected (128, 512, 3, 3)" in str(caught.value)


def test_a_trial_is_refused_where_one_model_serves_every_trial(deen_sysu_file, tmp_path):
    with pytest.raises(ReferenceImportError, match="--trial: sysu has one model for every trial; give no trial"):
        import_reference(deen_sysu_file, "deen", "sysu", tmp_path / "out.pt", trial=1)


def test_the_other_sizes_import_with_their_count(deen_sysu_file, tmp_path):
    checkpoint = import_reference(deen_sysu_file, "deen", "sysu", tmp_path / "out.pt", num_classes=395)
    assert checkpoint.num_classes == 395 and (tmp_path / "out.pt").is_file()


def test_files_that_are_not_reference_checkpoints_are_refused_in_one_line(deen_sysu_file, tmp_path, capsys):
    truncated = tmp_path / "truncated.t"
    truncated.write_bytes(deen_sysu_file.read_bytes()[:100_000])
    torch.save(torchvision.models.resnet50().state_dict(), tmp_path / "imagenet.pth")
    torch.save({"net": [1, 2]}, tmp_path / "list.t")

    class Runs:
        def __reduce__(self):
            return (print, ("this ran",))

    torch.save({"net": {"classifier.weight": torch.zeros(2, 2)}, "mAP": Runs()}, tmp_path / "code.t")
    cases = {
        "truncated.t": "truncated.t: expected a reference checkpoint",
        "imagenet.pth": "imagenet.pth: not a deen checkpoint: it has no classifier weight for classifier.weight",
        "list.t": "list.t: expected a reference checkpoint (torch.save of {'net': state_dict, ",
        "code.t": "code.t: refused: it holds objects of builtins.print",
    }
    for name, message in cases.items():
        arguments = ["import", str(tmp_path / name), "--format", "deen", "--dataset", "sysu"]
        assert main([*arguments, "--out", str(tmp_path / "out.pt")]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and message in error, error
        assert "this ran" not in error
    assert not (tmp_path / "out.pt").exists()


# --- a plugin brings its own format ---------------------------------------------------------------

PLUGIN = """
from vireid.method import NameRules, ReferenceFormat, register_method
from vireid.methods.agw import CrossModalityMethod, agw_reference_names


class PrefixedAGW(CrossModalityMethod):
    def reference_names(self, format_name, config):
        rules = agw_reference_names()
        renamed = tuple(("encoder." + theirs, ours) for theirs, ours in rules.renamed)
        return NameRules(renamed, tuple("encoder." + prefix for prefix in rules.ignored), rules.classifier)


FORMAT = ReferenceFormat("prefixed", "AGW saved inside an 'encoder' module", "{dataset}_agw")
RECIPE = {"model": {"parts": 0, "cmimpl": False}}
register_method(PrefixedAGW("agw_prefixed", "AGW read from files of encoder.*", RECIPE, (FORMAT,)))
"""


def test_a_plugin_method_brings_its_own_format(tmp_path, capsys, fresh_plugins):
    (tmp_path / "prefixed.py").write_text(PLUGIN)
    model, _ = _trained_elsewhere("sysu_agw", 395)
    net = {f"encoder.{name}": tensor for name, tensor in _reference_net("agw", model).items()}
    torch.save({"net": net}, tmp_path / "prefixed.t")
    arguments = ["import", str(tmp_path / "prefixed.t"), "--format", "prefixed", "--dataset", "sysu"]
    assert main([*arguments, "--out", str(tmp_path / "out.pt"), "--plugin", str(tmp_path / "prefixed.py")]) == 0
    checkpoint = load_checkpoint(tmp_path / "out.pt")
    assert checkpoint.method == "agw_prefixed" and checkpoint.config["plugins"] == [
        str((tmp_path / "prefixed.py").resolve())
    ]
    assert all(torch.equal(checkpoint.model[name], tensor) for name, tensor in model.state_dict().items())


@pytest.mark.slow  # ONNX export of a ResNet-50 for both modalities: make test-slow (and CI) runs it
def test_an_imported_model_extracts_exports_and_searches(sysu_root, tmp_path, capsys):
    model, _ = _trained_elsewhere("sysu_deen", 395)
    source = _reference_file(tmp_path / "sysu_deen_p4_n6_lr_0.1_seed_0_best.t", "deen", model)
    import_reference(source, "deen", "sysu", tmp_path / "deen.pt")
    walk = extract_export_search(tmp_path / "deen.pt", sysu_root, tmp_path, capsys)
    assert walk.gallery_features.shape == (12, 6 * 2048) and walk.onnx_width == 6 * 2048
    assert max(walk.export_differences) < 1e-3
    assert len(walk.hits) == 2 and all(len(query["hits"]) == 3 for query in walk.hits)
