"""The method contract's proof: examples/bot_method.py, a network vireid does not ship (a single
stream, a loss with its own parameters on their own optimizer, its own input size and recipe),
trained, tested, extracted, exported and searched through the commands, found through a config's
``plugins:``, and through an installed distribution's entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from command_walk import extract_export_search

import vireid.engine.trainer as trainer_module
from vireid.cli import main
from vireid.engine.checkpoint import Checkpoint, CheckpointError, load_checkpoint
from vireid.engine.step import ForwardAndLoss, train_step
from vireid.engine.trainer import build_optimizers
from vireid.errors import ConfigError, UserError
from vireid.method import ParameterGroup, get_method
from vireid.plugins import load_plugin_file
from vireid.recipe import load_config

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PLUGIN = EXAMPLES / "bot_method.py"
pytestmark = pytest.mark.usefixtures("plugins_of_the_module")  # the other modules never see `bot`
SHORT = ["train.epochs=1", "train.steps_per_epoch=2", "train.eval_every=0", "train.workers=0"]


def _bot_module():
    """The example file's module, imported as a plugin."""
    load_plugin_file(PLUGIN)
    return sys.modules[type(get_method("bot")).__module__]


def _settings(root: Path, *overrides: str) -> list[str]:
    return [argument for value in (f"data.root={root}", *SHORT, *overrides) for argument in ("--set", value)]


@pytest.fixture(scope="module")
def bot_run(sysu_root, tmp_path_factory) -> Path:
    """The example trained for two steps through `vireid train CONFIG --plugin examples/bot_method.py`."""
    folder = tmp_path_factory.mktemp("bot")
    config = folder / "bot.yaml"  # bot_tiny.yaml without its plugins: line, which --plugin replaces
    config.write_text("".join(line for line in (EXAMPLES / "bot_tiny.yaml").open() if not line.startswith("plugins:")))
    arguments = ["train", str(config), "--plugin", str(PLUGIN), *_settings(sysu_root, "train.log_every=1")]
    assert main([*arguments, "--out", str(folder / "run"), "--quiet"]) == 0
    return folder / "run"


def test_a_config_names_the_plugin_relative_to_its_own_folder():
    config = load_config(EXAMPLES / "bot_tiny.yaml")
    assert config.plugins == [str(PLUGIN)] and config.model.method == "bot" and config.test.feature == "global"


def test_the_run_records_the_plugin_the_method_and_its_own_loss_terms_and_parameters(bot_run):
    saved = load_config(bot_run / "config.yaml")
    assert saved.plugins == [str(PLUGIN)] and saved.model.method == "bot"
    assert (saved.data.height, saved.train.optimizer, saved.test.feature) == (64, "adam", "global")
    steps = [json.loads(line) for line in (bot_run / "metrics.jsonl").read_text().splitlines()]
    terms = {key for record in steps if record["kind"] == "step" for key in record} - {"kind", "epoch", "step", "lr"}
    assert terms == {"id", "triplet", "center", "total"}
    checkpoint = load_checkpoint(bot_run / "last.pt")
    assert checkpoint.method == "bot" and checkpoint.loss["centers"].shape == (checkpoint.num_classes, 512)
    assert len(checkpoint.optimizer["param_groups"]) == 1  # the network's Adam; the centres have their own SGD


def test_a_fresh_process_tests_the_run_finding_the_plugin_through_its_saved_config(bot_run):
    done = subprocess.run(
        [sys.executable, "-m", "vireid.cli", "test", str(bot_run / "last.pt"), "--quiet"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert done.returncode == 0, done.stderr
    results = json.loads((bot_run / "results.json").read_text())
    assert [result["protocol"] for result in results] == ["sysu-all", "sysu-indoor"]
    assert all(0 < result["mean"]["mAP"] <= 1 for result in results)


@pytest.mark.slow  # ONNX export of both modalities: make test-slow (and CI) runs it
def test_extract_export_and_search_use_the_methods_embedding(bot_run, sysu_root, tmp_path, capsys):
    walk = extract_export_search(bot_run / "last.pt", sysu_root, tmp_path, capsys)
    features = walk.gallery_features
    assert features.shape == (12, 512) and np.allclose(np.linalg.norm(features, axis=1), 1, atol=1e-5)
    assert len(walk.export_differences) == 2 and max(walk.export_differences) < 1e-4  # ONNX Runtime agrees
    assert walk.onnx_width == 512
    assert len(walk.hits) == 2 and all(len(query["hits"]) == 3 for query in walk.hits)


@pytest.mark.parametrize(
    "override, message",
    [
        ("loss.label_smoothing=1", "loss.label_smoothing: expected at least 0 and less than 1, got 1.0"),
        ("loss.center_lr=0", "loss.center_lr: expected more than 0, got 0.0"),
        (
            "model.parts=2",
            "model.parts: unknown config key; valid keys here: model.method, model.backbone, model.pretrained, "
            "model.last_stride",
        ),
    ],
)
def test_the_methods_own_keys_are_typed_and_checked_as_vireids_are(override, message):
    assert load_config(EXAMPLES / "bot_tiny.yaml", ["loss.center_lr=0.25"]).loss.center_lr == 0.25
    with pytest.raises(ConfigError) as refused:
        load_config(EXAMPLES / "bot_tiny.yaml", [override])
    assert str(refused.value) == message


def test_batch_hard_triplet_against_hand_computed_distances():
    bot = _bot_module()
    features = torch.tensor([[0.0], [3.0], [2.0], [5.0]])  # distances 3, 2, 5 / 1, 2 / 3: exact in float32
    labels = torch.tensor([0, 0, 1, 1])
    # hardest positive 3 for every anchor; nearest negative 2, 1, 1, 2: hinges 1.3, 2.3, 2.3, 1.3
    assert bot.batch_hard_triplet(features, labels, 0.3).item() == pytest.approx(1.8, abs=1e-6)


def test_the_centres_learn_the_unweighted_centre_loss_on_their_own_sgd_and_the_network_the_weighted_one():
    bot = _bot_module()
    config = load_config(EXAMPLES / "bot_tiny.yaml")
    loss = bot.BoTLoss(config.loss, num_classes=2, feature_dim=2)
    with torch.no_grad():
        loss.centers.copy_(torch.tensor([[1.0, 2.0], [-1.0, 0.0]]))
    pooled = torch.tensor([[3.0, 2.0], [1.0, 0.0], [-1.0, 4.0], [1.0, 2.0]], requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1])
    output = bot.BoTOutput(pooled, pooled * 1.0, torch.zeros(4, 2, requires_grad=True))
    terms = loss(output, labels, torch.zeros(4, dtype=torch.long))
    # squared distances to the own centre: 4, 4, 16, 8 -> centre loss 8
    assert terms["center"].item() == 8.0
    assert terms["total"].item() == pytest.approx((terms["id"] + terms["triplet"] + 0.0005 * 8).item(), abs=1e-6)
    terms["total"].backward()
    # d/dc_k of mean_i |f_i - c_k|^2 = -(2 / 4) sum_{i of k} (f_i - c_k): exact in float32
    assert torch.equal(loss.centers.grad, torch.tensor([[-1.0, 1.0], [-1.0, -3.0]]))
    triplet_only = pooled.detach().clone().requires_grad_(True)
    bot.batch_hard_triplet(triplet_only, labels, 0.3).backward()
    center_part = pooled.grad - triplet_only.grad  # the centre term's share of the features' gradient
    expected = 0.0005 * (2 / 4) * (pooled.detach() - loss.centers.detach()[labels])
    assert torch.allclose(center_part, expected, rtol=0, atol=1e-6)  # round-off of the subtraction; unweighted: 2000x
    method = get_method("bot")
    network = torch.nn.Linear(2, 2)
    optimizers = build_optimizers(method.parameter_groups(network, loss, config.train), config.train)
    assert [type(optimizer).__name__ for optimizer in optimizers] == ["Adam", "SGD"]
    assert optimizers[1].param_groups[0]["lr"] == 0.5 and optimizers[1].param_groups[0]["momentum"] == 0
    before = loss.centers.detach().clone()
    step = [optimizers, torch.amp.GradScaler(enabled=False), torch.zeros(4, 3, 2, 1), labels, torch.zeros(4)]
    train_step(ForwardAndLoss(lambda images, modalities: output, loss), *step)  # the engine's step: both move
    assert torch.equal(loss.centers.detach(), before - 0.5 * torch.tensor([[-1.0, 1.0], [-1.0, -3.0]]))


def test_an_installed_distributions_entry_point_brings_the_method(tmp_path, sysu_root):
    site = tmp_path / "site"
    (site / "throwaway_bot-1.0.dist-info").mkdir(parents=True)
    (site / "throwaway_bot-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: throwaway-bot\nVersion: 1.0\n"
    )
    (site / "throwaway_bot-1.0.dist-info" / "entry_points.txt").write_text("[vireid.methods]\nbot = bot_method\n")
    (site / "bot_method.py").write_text(PLUGIN.read_text())
    config = tmp_path / "bot.yaml"
    config.write_text(
        f"data:\n  root: {sysu_root}\n  height: 32\n  width: 16\nmodel:\n  method: bot\n  backbone: resnet18\n"
        "  pretrained: none\n"
    )
    script = (
        "from vireid.recipe import load_config\nfrom vireid.method import get_method\n"
        f"config = load_config({str(config)!r})\n"
        "print(config.model.method, config.plugins, get_method('bot').source, config.train.optimizer)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), str(site)])},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["bot", "[]", "distribution", "throwaway-bot", "adam"]


@pytest.mark.slow  # long: make test-slow (and CI) runs it
def test_a_resumed_bot_run_continues_exactly_with_its_centres(sysu_root, tmp_path):
    config = EXAMPLES / "bot_tiny.yaml"
    recipe = [*_settings(sysu_root, "train.eval_last=false", "train.select_on=last", "data.height=32", "data.width=16")]
    assert (
        main(["train", str(config), *recipe, "--set", "train.epochs=2", "--out", str(tmp_path / "straight"), "--quiet"])
        == 0
    )
    assert main(["train", str(config), *recipe, "--out", str(tmp_path / "split"), "--quiet"]) == 0
    resume = ["train", "--resume", str(tmp_path / "split" / "last.pt"), "--set", "train.epochs=2", "--quiet"]
    assert main(resume) == 0
    straight, resumed = (
        load_checkpoint(tmp_path / "straight" / "last.pt"),
        load_checkpoint(tmp_path / "split" / "last.pt"),
    )
    assert straight.epoch == resumed.epoch == 2
    assert torch.equal(straight.loss["centers"], resumed.loss["centers"])  # one computation repeated on one machine
    for name, tensor in straight.model.items():
        assert torch.equal(tensor, resumed.model[name]), name


@pytest.mark.slow  # a torchrun of two processes
def test_two_processes_keep_the_centres_in_sync(sysu_root, tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    command = [str(torchrun), "--nproc_per_node=2", "--standalone", "-m", "vireid.cli", "train"]
    command += [str(EXAMPLES / "bot_tiny.yaml"), *_settings(sysu_root, "data.height=32", "data.width=16")]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(
        [*command, "--out", str(tmp_path / "ddp"), "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    records = [json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    checksums = [record for record in records if record["kind"] == "distributed"][0]["parameter_checksums"]
    assert len(checksums) == 2 and checksums[0] == checksums[1]  # the network's and the centres' values


def test_the_test_embedding_follows_test_after_bn():
    bot = _bot_module()
    method, output = get_method("bot"), bot.BoTOutput(torch.zeros(2, 4), torch.ones(2, 4), torch.zeros(2, 3))
    after, before = (
        load_config(EXAMPLES / "bot_tiny.yaml"),
        load_config(EXAMPLES / "bot_tiny.yaml", ["test.after_bn=false"]),
    )
    assert torch.equal(method.embed(output, "global", after.test), output.feature)
    assert torch.equal(method.embed(output, "global", before.test), output.pooled)


def test_a_saved_loss_state_that_does_not_fit_is_refused_in_one_line():
    config = load_config(EXAMPLES / "bot_tiny.yaml")
    method = get_method("bot")
    model = method.build_model(config, 3, load_weights=False)
    loss = method.build_loss(config, 3, model)
    checkpoint = Checkpoint(
        config={}, num_classes=3, model=model.state_dict(), epoch=1, loss={"centers": torch.zeros(4, 512)}
    )
    with pytest.raises(
        CheckpointError, match=r"^x.pt: its loss state does not fit bot's loss \(.*size mismatch for centers"
    ):
        trainer_module._restore(checkpoint, "x.pt", config, 3, model, loss, None, None, None)


def test_parameter_groups_that_all_train_on_their_own_sgd_are_refused_in_one_line():
    config = load_config(EXAMPLES / "bot_tiny.yaml")
    groups = [ParameterGroup("centers", [torch.nn.Parameter(torch.zeros(2))], 0.5, own_sgd=True)]
    with pytest.raises(UserError, match=r"^parameter groups \(centers\): every one trains on its own SGD"):
        build_optimizers(groups, config.train)
