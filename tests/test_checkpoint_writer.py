"""Checkpoints written in the background (CheckpointWriter): the file holds what was asked for when
it was asked, whatever training does to the live tensors and records afterwards; files are written
in the order asked for; a failed write is raised, not lost; no process forks while one is written."""

from __future__ import annotations

import os
import time

import pytest
import torch

import vireid.engine.checkpoint as checkpoint_module
from vireid.engine.checkpoint import Checkpoint, CheckpointWriter, host_copy, load_checkpoint


def _checkpoint(weight: torch.Tensor, record: dict) -> Checkpoint:
    return Checkpoint(
        config={"name": "tiny", "model": {"method": "agw"}},
        num_classes=2,
        model={"weight": weight},
        epoch=1,
        step=3,
        optimizer={"state": {0: {"momentum_buffer": weight * 2}}, "param_groups": [{"lr": 0.5, "params": [0]}]},
        metrics=record,
    )


def test_the_file_holds_the_checkpoint_as_it_was_when_asked(tmp_path):
    weight, record = torch.tensor([1.0, 2.0]), {"epoch": 1, "total": 0.25}
    writer = CheckpointWriter()
    writer.save(tmp_path / "last.pt", _checkpoint(weight, record))
    weight.add_(10.0)  # the next steps move the live weights, the evaluation adds to the record
    record["sysu-all/rank1"] = 0.5
    writer.close()
    saved = load_checkpoint(tmp_path / "last.pt")
    assert saved.model["weight"].tolist() == [1.0, 2.0]
    assert saved.optimizer["state"][0]["momentum_buffer"].tolist() == [2.0, 4.0]
    assert saved.metrics == {"epoch": 1, "total": 0.25} and saved.step == 3


def test_files_are_written_in_the_order_asked_for(tmp_path):
    writer = CheckpointWriter()
    for value in (1.0, 2.0, 3.0):  # last.pt written three times: the last asked for is what stays
        writer.save(tmp_path / "last.pt", _checkpoint(torch.tensor([value]), {"epoch": int(value)}))
    writer.wait()
    assert load_checkpoint(tmp_path / "last.pt").model["weight"].tolist() == [3.0]
    writer.close()


def test_a_failed_write_is_raised_by_wait(tmp_path):
    (tmp_path / "run").write_text("a file where the run folder should be")
    writer = CheckpointWriter()
    writer.save(tmp_path / "run" / "last.pt", _checkpoint(torch.ones(1), {}))
    with pytest.raises(OSError):
        writer.close()
    assert (tmp_path / "run").read_text() == "a file where the run folder should be"


def test_host_copy_copies_tensors_and_containers_and_keeps_other_values():
    tensor = torch.ones(2)
    value = {"a": [tensor, (tensor, 3)], "b": "text"}
    copied = host_copy(value)
    assert copied == {"a": [copied["a"][0], (copied["a"][1][0], 3)], "b": "text"}
    assert copied["a"][0] is not tensor and torch.equal(copied["a"][0], tensor)
    assert copied["a"] is not value["a"] and isinstance(copied["a"][1], tuple)


def test_a_fork_waits_for_the_checkpoint_being_written(tmp_path, monkeypatch):
    """A loader's workers start by fork: a child forked while a thread is inside torch.save may
    inherit a lock that thread holds and hang, so the fork waits for the write."""
    real_save = checkpoint_module.save_checkpoint

    def slow_save(path, checkpoint):
        time.sleep(0.5)
        real_save(path, checkpoint)

    monkeypatch.setattr(checkpoint_module, "save_checkpoint", slow_save)
    writer = CheckpointWriter()
    writer.save(tmp_path / "last.pt", _checkpoint(torch.ones(1), {}))
    child = os.fork()
    if child == 0:
        os._exit(0)
    assert os.waitpid(child, 0)[1] == 0
    assert (tmp_path / "last.pt").exists()  # written before the fork went on, half a second later
    writer.close()
