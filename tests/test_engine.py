"""The training engine on CPU: exact resume, the run folder, the schedule, NaN stop,
`vireid train` / `vireid test` (RegDB: a folder of per-trial checkpoints), DDP with gloo."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import vireid
import vireid.engine.loss_tally
import vireid.progress
from vireid.cli import main
from vireid.config import TrainConfig
from vireid.data.cache import cache_file
from vireid.datasets import dataset_fingerprint, describe_fingerprint
from vireid.datasets.sysu import sysu_test_images, sysu_train_split
from vireid.engine.checkpoint import TRAINING_KEYS, CheckpointError, load_checkpoint
from vireid.engine.loss_tally import LossTally
from vireid.engine.trainer import TrainingDiverged, build_optimizer, learning_rate_factor, train
from vireid.errors import UserError
from vireid.evaluation.feature_file import load_features
from vireid.losses import ReIDLoss
from vireid.method import parameter_counts
from vireid.models.network import build_model
from vireid.recipe import load_config
from vireid.synthetic.writer import write_synthetic_dataset

TINY = "tiny"  # the shipped config


@pytest.fixture(scope="module")
def small_sysu(tmp_path_factory):
    root = tmp_path_factory.mktemp("engine") / "SYSU-MM01"
    write_synthetic_dataset("sysu", root, identities=24, images_per_id=4, size=(64, 32), seed=1, workers=2)
    return root


def _config(root, *overrides):
    """The tiny config, short; images decoded in the main process (on 2 cores loader workers only compete
    with training for them; the tests that need workers say so)."""
    settings = ["train.steps_per_epoch=2", "train.eval_every=0", "train.log_every=1", "train.workers=0"]
    return load_config(TINY, [f"data.root={root}", *settings, *overrides])


@pytest.mark.parametrize(
    "recipe",
    [
        [],  # vireid's sampler, bilinear resize, images decoded in the loader
        pytest.param(  # the references' (slow: make test-slow)
            ["train.sampler=independent", "data.resize_filter=lanczos", "train.cache_dir=CACHE"], marks=pytest.mark.slow
        ),
    ],
)
def test_resume_continues_exactly(small_sysu, tmp_path, recipe):
    recipe = [setting.replace("CACHE", str(tmp_path / "cache")) for setting in recipe]
    recipe += ["train.eval_last=false", "train.select_on=last"]  # one evaluation, after the last epoch
    straight = train(_config(small_sysu, "train.epochs=2", *recipe), tmp_path / "straight", progress=False)
    halfway = train(_config(small_sysu, "train.epochs=1", *recipe), tmp_path / "split", progress=False)
    resumed = train(_config(small_sysu, "train.epochs=2", *recipe), tmp_path / "split", resume=halfway, progress=False)
    first, second = load_checkpoint(straight), load_checkpoint(resumed)
    assert first.epoch == second.epoch == 2
    for name, tensor in first.model.items():
        assert torch.equal(tensor, second.model[name]), name
    first_moments = first.optimizer["state"]
    assert all(torch.equal(first_moments[k]["exp_avg"], second.optimizer["state"][k]["exp_avg"]) for k in first_moments)
    if "data.resize_filter=lanczos" in recipe:  # the runs shared one cache: each split once, LANCZOS-resized
        splits = sysu_train_split(small_sysu), sysu_test_images(small_sysu)
        expected = {cache_file(tmp_path / "cache", split, 64, 32, "lanczos").name for split in splits}
        assert {path.name for path in (tmp_path / "cache").iterdir()} == expected


@pytest.mark.slow  # long: make test-slow (and CI) runs it
def test_run_folder_holds_config_logs_events_and_checkpoints(small_sysu, tmp_path):
    config = _config(small_sysu, "train.epochs=2", "train.eval_every=1")
    train(config, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    assert load_config(None, base=yaml.safe_load((run / "config.yaml").read_text())) == config
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in records] == ["step", "step", "epoch", "step", "step", "epoch"]
    epoch = records[2]
    assert {
        "id",
        "triplet",
        "part_id",
        "part_triplet",
        "msid",
        "cmp",
        "total",
        "lr",
        "images_per_second",
        "data_wait",
        "sysu-all/mAP",
    } <= set(epoch)
    assert 0 <= epoch["data_wait"] < 1
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    best = load_checkpoint(run / "best.pt")
    ranks = [record["sysu-all/rank1"] for record in records if record["kind"] == "epoch"]
    assert best.best["measure"] == best.selected_on == "test rank-1 (reference habit)"
    assert best.best["epoch"] == best.epoch == 1 + ranks.index(max(ranks))  # the first best, as the reference
    last = load_checkpoint(run / "last.pt", needs=TRAINING_KEYS)
    assert (last.method, last.dataset, last.version, last.epoch) == ("agw_fgfl_cmimpl", "sysu", 3, 2)
    assert last.provenance["vireid"] == vireid.__version__ and last.provenance["torch"] == torch.__version__
    assert last.provenance["data"]["dataset"] == "sysu" and last.provenance["data"]["image_files"] > 0
    assert not list(run.glob(".*partial*"))


def test_schedule_is_warm_up_then_steps():
    config = TrainConfig()
    factors = [learning_rate_factor(epoch, config) for epoch in (0, 4, 9, 10, 19, 20, 49, 50, 79)]
    assert factors == pytest.approx([0.1, 0.5, 1.0, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01])


def test_backbone_and_new_layers_have_their_own_learning_rates():
    config = dataclasses.replace(load_config(TINY), train=TrainConfig())
    model = build_model(config.model, num_classes=5, load_weights=False)
    (optimizer,) = build_optimizer(model, ReIDLoss(config.loss), config)
    backbone, heads = optimizer.param_groups
    assert (backbone["lr"], heads["lr"]) == (0.01, 0.1)
    assert sum(p.numel() for p in backbone["params"]) == sum(p.numel() for p in model.backbone.parameters())
    assert not any(p is model.global_head.bottleneck.bias for p in heads["params"])  # frozen BNNeck bias
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["nesterov"]


@pytest.mark.slow  # long: make test-slow (and CI) runs it
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(small_sysu, tmp_path, monkeypatch):
    calls = {"count": 0}
    original = ReIDLoss.__call__

    def poisoned(self, output, labels, modalities):
        losses = original(self, output, labels, modalities)
        calls["count"] += 1
        if calls["count"] == 3:  # first step of epoch 2
            losses["total"] = losses["total"] * float("nan")
        return losses

    monkeypatch.setattr(ReIDLoss, "__call__", poisoned)
    with pytest.raises(TrainingDiverged, match=r"became nan at epoch 2, step 3 .* last good checkpoint is .*last.pt"):
        train(_config(small_sysu, "train.epochs=3"), tmp_path / "run", progress=False)
    assert load_checkpoint(tmp_path / "run" / "last.pt").epoch == 1


def test_an_epoch_reads_the_tally_once_per_log_interval_and_at_its_end(small_sysu, tmp_path, monkeypatch):
    reads = []
    original = LossTally.read

    def counted(self):
        reads.append(len(reads))
        return original(self)

    monkeypatch.setattr(vireid.engine.loss_tally.LossTally, "read", counted)
    config = _config(small_sysu, "train.epochs=1", "train.steps_per_epoch=6", "train.log_every=3")
    train(config, tmp_path / "run", progress=False)
    assert len(reads) == 3  # after steps 3 and 6, then the epoch's record


def test_a_non_finite_step_found_at_the_interval_names_its_step_and_keeps_no_checkpoint(
    small_sysu, tmp_path, monkeypatch
):
    original = LossTally.add

    def poisoned(self, losses, step):
        if step == 2:
            losses = {**losses, "total": losses["total"] * float("nan")}
        original(self, losses, step)

    monkeypatch.setattr(vireid.engine.loss_tally.LossTally, "add", poisoned)
    config = _config(small_sysu, "train.epochs=1", "train.steps_per_epoch=4", "train.log_every=4")
    with pytest.raises(TrainingDiverged, match=r"became nan at epoch 1, step 2 \(id=.*total=nan\); .* none"):
        train(config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "last.pt").exists()


def test_cli_train_then_test_writes_the_results(small_sysu, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(vireid.progress, "PLAIN_INTERVAL_SECONDS", 0.01)  # stderr is no terminal here: plain lines
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                str(TINY),
                "--set",
                f"data.root={small_sysu}",
                "--set",
                "train.epochs=1",
                "--set",
                "train.steps_per_epoch=2",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    printed = capsys.readouterr()
    lines, progress_lines = printed.out.splitlines(), printed.err.splitlines()
    train_split = sysu_train_split(small_sysu)
    assert lines[0] == (
        f"training tiny on {train_split.summary()} (sysu at {small_sysu}); "
        f"{parameter_counts(build_model(load_config(TINY).model, train_split.num_identities))['trainable']:,} "
        "trainable parameters; "
        f"cpu, fp32; epochs 1 to 1, 2 steps each; seed 0; best.pt selected on test rank-1 (reference habit); "
        f"run folder {run}"
    )
    assert "visible + " in lines[0] and any(
        line.startswith("epoch 1/1: ") and " batch" in line for line in progress_lines
    )
    assert main(["test", str(run / "last.pt"), "--trials", "0-2", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(
        f"testing {run / 'last.pt'} on {sysu_test_images(small_sysu).summary()} (sysu at {small_sysu}); "
    )
    assert f"; cpu, fp32; sysu-all, sysu-indoor (3 trials); results into {run}\n" in printed
    written = {line.removeprefix("wrote ") for line in printed.splitlines() if line.startswith("wrote ")}
    assert written == {
        str(run / name)
        for name in (
            "features.npz",
            "results.md",
            "results.json",
            "cmc.png",
            "ranks_sysu-all.png",
            "ranks_sysu-indoor.png",
        )
    }
    assert (
        "| sysu-all single-shot (agw draws) | infrared (cam3, cam6) → visible (cam1, cam2, cam4, cam5) | 3 |" in printed
    )
    assert "| sysu-indoor" in printed
    saved = json.loads((run / "results.json").read_text())
    assert [result["protocol"] for result in saved] == ["sysu-all", "sysu-indoor"]
    data = dataset_fingerprint("sysu", str(small_sysu))
    assert [result["data"] for result in saved] == [data, data]
    assert load_features(run / "features.npz").metadata["data"] == data
    report = (run / "results.md").read_text()
    assert report.count("| sysu-") == 2 and f"\n\nData: {describe_fingerprint(data)}\n\n" in report


def test_a_new_run_refuses_a_folder_holding_one(small_sysu, tmp_path):
    train(_config(small_sysu, "train.epochs=1", "train.steps_per_epoch=1"), tmp_path / "run", progress=False)
    with pytest.raises(UserError, match=r"already holds a run \(last.pt\); continue it with --resume"):
        train(_config(small_sysu, "train.epochs=1"), tmp_path / "run", progress=False)


def test_cli_pretrained_file_of_another_architecture_is_refused(small_sysu, tmp_path, capsys):
    import torchvision

    torch.save(torchvision.models.resnet50(weights=None).state_dict(), tmp_path / "r50.pth")
    code = main(
        [
            "train",
            str(TINY),
            "--set",
            f"data.root={small_sysu}",
            "--pretrained",
            str(tmp_path / "r50.pth"),
            "--out",
            str(tmp_path / "run"),
        ]
    )
    assert code == 2
    assert "r50.pth: expected a torchvision resnet18 state dict" in capsys.readouterr().err


def test_cli_config_errors_name_the_key(tmp_path, capsys):
    assert main(["train", str(TINY), "--set", "train.epochz=3"]) == 2
    assert "train.epochz: unknown config key; did you mean train.epochs?" in capsys.readouterr().err
    assert main(["train"]) == 2
    assert "give a CONFIG" in capsys.readouterr().err
    assert main(["test", str(tmp_path / "nothing.pt")]) == 2
    assert "nothing.pt: expected a checkpoint file or a folder" in capsys.readouterr().err
    (tmp_path / "bad.pt").write_text("x")
    with pytest.raises(CheckpointError, match="bad.pt: expected a vireid checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")


@pytest.mark.slow  # long: make test-slow (and CI) runs it
def test_regdb_is_tested_from_a_folder_of_per_trial_checkpoints(tmp_path, capsys):
    root = tmp_path / "RegDB"
    write_synthetic_dataset("regdb", root, identities=16, images_per_id=3, size=(64, 32), seed=2, workers=1)
    for trial in (1, 2):
        config = load_config(
            TINY,
            [
                f"data.root={root}",
                "data.dataset=regdb",
                f"data.trial={trial}",
                "train.epochs=1",
                "train.steps_per_epoch=1",
                "train.eval_every=0",
                "train.identities_per_batch=4",
            ],
        )
        train(config, tmp_path / "runs" / f"trial{trial}", progress=False)
    assert main(["test", str(tmp_path / "runs"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "| regdb-v2t | visible → thermal | 2 |" in printed and "| regdb-t2v | thermal → visible | 2 |" in printed
    assert f"\ntesting 2 checkpoints ({tmp_path / 'runs' / 'trial1' / 'best.pt'}, ...) on " in printed
    # the results of a folder of trial models land in that folder, not in the first trial's
    assert sorted(path.name for path in (tmp_path / "runs").glob("features*.npz")) == [
        "features_trial1.npz",
        "features_trial2.npz",
    ]
    assert (tmp_path / "runs" / "results.md").is_file() and not (tmp_path / "runs" / "trial1" / "results.md").exists()


@pytest.mark.slow  # a torchrun of two processes; make test-slow and the gpu-check rehearsal run DDP
def test_two_processes_with_gloo_stay_in_sync(small_sysu, tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    command = [
        str(torchrun),
        "--nproc_per_node=2",
        "--standalone",  # a free port of its own, whatever else this machine runs
        "-m",
        "vireid.cli",
        "train",
        str(TINY),
        "--set",
        f"data.root={small_sysu}",
        "--set",
        "train.epochs=1",
        "--set",
        "train.steps_per_epoch=2",
        "--set",
        "train.workers=0",
        "--set",
        "train.eval_every=0",
        "--out",
        str(tmp_path / "ddp"),
        "--quiet",
    ]
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1")
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    records = [json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    checksums = [r for r in records if r["kind"] == "distributed"][0]["parameter_checksums"]
    assert len(checksums) == 2 and checksums[0] == checksums[1]
    assert completed.stdout.count("run folder:") == 1  # rank 0 alone reports


@pytest.mark.slow  # long: make test-slow (and CI) runs it
def test_bf16_autocast_channels_last_and_clipping_train_on_cpu(small_sysu, tmp_path):
    config = _config(
        small_sysu,
        "train.epochs=1",
        "train.steps_per_epoch=1",
        "train.amp=bf16",
        "train.channels_last=always",
        "train.grad_clip=1.0",
    )
    last = train(config, tmp_path / "run", progress=False)
    record = load_checkpoint(last).metrics
    assert all(torch.isfinite(torch.tensor(record[name])) for name in ("id", "triplet", "total"))


@pytest.mark.slow  # three trainings; the batch augmentation itself is checked image by image in test_device_augment
def test_augmentation_on_the_device_trains_and_resumes_exactly(small_sysu, tmp_path):
    settings = ("train.augment_on=device", f"train.cache_dir={tmp_path / 'cache'}")
    straight = train(_config(small_sysu, "train.epochs=2", *settings), tmp_path / "straight", progress=False)
    halfway = train(_config(small_sysu, "train.epochs=1", *settings), tmp_path / "split", progress=False)
    resumed = train(
        _config(small_sysu, "train.epochs=2", *settings), tmp_path / "split", resume=halfway, progress=False
    )
    first, second = load_checkpoint(straight).model, load_checkpoint(resumed).model
    assert all(torch.equal(first[name], second[name]) for name in first)
    with pytest.raises(UserError, match="train.augment_on=device pads, crops and flips only: it needs train.cache_dir"):
        train(_config(small_sysu, "train.augment_on=device"), tmp_path / "no-cache", progress=False)
