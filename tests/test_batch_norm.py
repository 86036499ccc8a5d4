"""BatchNorm statistics recomputed before checkpoints (precise BN): the arithmetic, what it leaves
alone, the overflow of the paper's model that it cures, and a failed evaluation that ends no run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import vireid.engine.selection as selection_module
from vireid.engine.batch_norm import recompute_batch_norm_statistics
from vireid.engine.checkpoint import load_checkpoint
from vireid.engine.extract import batch_features
from vireid.engine.trainer import build_run, train, train_one_epoch
from vireid.models.network import build_model
from vireid.recipe import load_config


class _Probe(nn.Module):
    """A BatchNorm over the channels of (B, 2, 1, 1) inputs, called as the networks are."""

    def __init__(self):
        super().__init__()
        self.norm = nn.BatchNorm2d(2)

    def forward(self, images, modalities):
        return self.norm(images)


def test_the_running_statistics_become_the_mean_of_the_batch_statistics():
    # integer-valued batches: every mean and (unbiased) variance below is exact
    first = torch.tensor([[1.0, 2.0], [3.0, 6.0]]).reshape(2, 2, 1, 1)  # channel means 2, 4; variances 2, 8
    second = torch.tensor([[5.0, 0.0], [7.0, 4.0], [9.0, 8.0]]).reshape(3, 2, 1, 1)  # means 7, 4; variances 4, 16
    probe = _Probe()
    probe.norm.running_mean.fill_(100.0)
    probe.eval()
    seen = recompute_batch_norm_statistics(probe, [(first, None), (second, None)])
    assert seen == 2
    assert probe.norm.running_mean.tolist() == [4.5, 4.0]
    assert probe.norm.running_var.tolist() == [3.0, 12.0]
    assert probe.norm.momentum == 0.1 and not probe.training


def test_no_batch_leaves_the_running_statistics_as_they_were():
    probe = _Probe()
    probe.norm.running_mean.fill_(3.0)
    probe.norm.num_batches_tracked.fill_(7)
    probe.train()
    assert recompute_batch_norm_statistics(probe, []) == 0
    assert probe.norm.running_mean.tolist() == [3.0, 3.0] and int(probe.norm.num_batches_tracked) == 7
    assert probe.training and probe.norm.momentum == 0.1


def test_only_batch_norm_statistics_change_not_weights_nor_the_classifiers_slow_copies():
    config = load_config("tiny", ["model.parts=2", "data.height=32", "data.width=16"])
    model = build_model(config.model, num_classes=5)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    images = torch.randn(8, 3, 32, 16)
    modalities = torch.tensor([0, 1] * 4)
    recompute_batch_norm_statistics(model, [(images, modalities)])
    changed = {name for name, tensor in model.state_dict().items() if not torch.equal(tensor, before[name])}
    assert changed, "nothing was recomputed"
    assert all(name.rsplit(".", 1)[1] in ("running_mean", "running_var", "num_batches_tracked") for name in changed)
    assert not any("modality_classifiers" in name for name in changed)


@pytest.mark.slow
def test_the_paper_model_from_random_weights_overflows_on_running_averages_and_not_after_recomputing(sysu_root):
    """The overflow that `make gpu-check` met on an H200, on the CPU: 8 steps of the paper's model
    (ResNet-50, non-local blocks) from random weights at 64x32. On the running averages its eval-mode
    features overflow; with the statistics of the training images they are finite."""
    config = load_config(
        "sysu_full",
        [
            f"data.root={sysu_root}",
            "model.pretrained=none",
            "data.height=64",
            "data.width=32",
            "train.steps_per_epoch=4",
            "train.precise_bn_batches=0",
            "train.workers=0",
            "train.amp=fp32",
        ],
    )
    run = build_run(config, sysu_root.parent / "overflow-run", None, "cpu", False)
    for epoch in range(2):
        train_one_epoch(run, epoch, False)
    images, _, modalities, _ = next(iter(run.loader))
    stale = batch_features(run.model, images, modalities, config)
    assert not torch.isfinite(stale).all()
    recompute_batch_norm_statistics(run.model, [(images, modalities)])
    assert torch.isfinite(batch_features(run.model, images, modalities, config)).all()


@pytest.mark.slow  # long: make test-slow (and CI) runs it
def test_an_evaluation_meeting_non_finite_features_is_counted_failed_and_the_run_goes_on(
    sysu_root, tmp_path, monkeypatch, capsys
):
    real = selection_module.extract_test_features

    def overflowing(*arguments, **keywords):
        features = real(*arguments, **keywords)
        features.features[3] = np.inf
        return features

    monkeypatch.setattr(selection_module, "extract_test_features", overflowing)
    config = load_config(
        "tiny",
        [f"data.root={sysu_root}", "train.steps_per_epoch=1", "train.epochs=2", "train.eval_every=1"],
    )
    last = train(config, tmp_path / "run", progress=False)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    epochs = [record for record in records if record["kind"] == "epoch"]
    assert [record["epoch"] for record in epochs] == [1, 2]
    assert all("1 of " in record["sysu-all/failed"] for record in epochs)
    assert all("sysu-all/rank1" not in record and not record.get("best") for record in epochs)
    assert not (tmp_path / "run" / "best.pt").exists()
    checkpoint = load_checkpoint(last)
    assert checkpoint.epoch == 2 and checkpoint.best["epoch"] == -1
    printed = capsys.readouterr().out
    assert printed.count("sysu-all evaluation failed, never best: the features: 1 of ") == 2
