"""A run folder belongs to one run: its lock, resume into another run's folder, what --set may change
on resume, a folder given for a config, and SIGTERM during training, evaluation and a checkpoint write."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import vireid.engine.selection as selection_module
from vireid.cli import main
from vireid.engine.checkpoint import TRAINING_KEYS, load_checkpoint
from vireid.engine.run_folder import LOCK_NAME, claimed_run_folder
from vireid.errors import Terminated, UserError
from vireid.signals import sigterm_as_interrupt, stop_if_terminated


def _train_arguments(root, out, *overrides):
    settings = [f"data.root={root}", "train.steps_per_epoch=1", "train.eval_every=0", "train.workers=0", *overrides]
    return [
        "train",
        "tiny",
        *[part for setting in settings for part in ("--set", setting)],
        "--out",
        str(out),
        "--quiet",
    ]


def _one_line(capsys, code, expected_code, message):
    error = capsys.readouterr().err
    assert code == expected_code, error
    assert message in error and len(error.strip().splitlines()) == 1 and "Traceback" not in error
    return error


def _leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.rglob("*") if "partial" in path.name or path.name == LOCK_NAME)


def test_a_second_writer_is_refused_and_the_lock_of_an_ended_process_is_no_obstacle(sysu_root, tmp_path, capsys):
    run = tmp_path / "run"
    with claimed_run_folder(run):  # a training in this process holds the folder
        code = main(_train_arguments(sysu_root, run, "train.epochs=1"))
        _one_line(capsys, code, 2, f"{run}: another vireid train (pid {os.getpid()} on ")
        assert not (run / "last.pt").exists()
    assert not (run / LOCK_NAME).exists() and not run.exists()  # made for the lock, left empty: removed
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import fcntl; f = open({str(tmp_path / LOCK_NAME)!r}, 'a+'); fcntl.flock(f, 2)"]
    )
    holder.wait()  # a process that took the lock and died without releasing it
    with claimed_run_folder(tmp_path):
        assert (tmp_path / LOCK_NAME).read_text().startswith(f"pid {os.getpid()} ")


@pytest.mark.slow  # long: make test-slow (and CI) runs it
def test_resume_writes_only_into_its_own_folder_or_a_new_one(sysu_root, tmp_path, capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    assert main(_train_arguments(sysu_root, first, "train.epochs=1")) == 0
    assert main(_train_arguments(sysu_root, second, "train.epochs=1")) == 0
    kept = {name: (second / name).read_bytes() for name in ("last.pt", "config.yaml", "metrics.jsonl")}
    capsys.readouterr()
    code = main(["train", "--resume", str(first / "last.pt"), "--set", "train.epochs=2", "--out", str(second)])
    _one_line(capsys, code, 2, f"{second}: holds another run (last.pt, config.yaml, metrics.jsonl); --resume")
    assert {name: (second / name).read_bytes() for name in kept} == kept
    fresh = tmp_path / "fresh"
    assert main(["train", "--resume", str(first / "last.pt"), "--set", "train.epochs=2", "--out", str(fresh)]) == 0
    assert load_checkpoint(fresh / "last.pt").epoch == 2 and load_checkpoint(first / "last.pt").epoch == 1


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.method=agw", "model.method: the run of {last} trained with 'agw_fgfl_cmimpl'; it cannot change"),
        ("model.parts=2", "model.parts: the run of {last} trained with 4; it cannot change on --resume (only "),
        ("loss.alpha=2.0", "loss.alpha: the run of {last} trained with 1.2"),
        ("train.lr=0.5", "train.lr: the run of {last} trained with 0.001"),
    ],
)
@pytest.mark.slow  # long: make test-slow (and CI) runs it
def test_resume_refuses_overrides_that_change_the_network_or_the_method(sysu_root, tmp_path, capsys, override, message):
    run = tmp_path / "run"
    assert main(_train_arguments(sysu_root, run, "train.epochs=1")) == 0
    before = (run / "last.pt").read_bytes()
    capsys.readouterr()
    code = main(["train", "--resume", str(run / "last.pt"), "--set", "train.epochs=2", "--set", override])
    error = _one_line(capsys, code, 2, message.format(last=run / "last.pt"))
    assert "data.root, train.epochs" in error and "test.*" in error
    assert (run / "last.pt").read_bytes() == before


def test_a_folder_given_for_a_config_is_named_as_a_folder(sysu_root, tmp_path, capsys):
    _one_line(capsys, main(["train", str(tmp_path)]), 2, f"{tmp_path}: expected a YAML config file, but it is a folder")
    run = tmp_path / "run"
    assert main(_train_arguments(sysu_root, run, "train.epochs=1")) == 0
    capsys.readouterr()
    _one_line(capsys, main(["train", str(run)]), 2, f"(a run folder: continue its run with --resume {run / 'last.pt'})")


@pytest.mark.slow  # long: make test-slow (and CI) runs it
def test_sigterm_during_training_stops_like_ctrl_c_and_resume_continues_exactly(sysu_root, tmp_path):
    run, straight = tmp_path / "run", tmp_path / "straight"
    arguments = _train_arguments(sysu_root, run, "train.epochs=100", "train.workers=2")
    process = subprocess.Popen(
        [sys.executable, "-m", "vireid.cli", *arguments], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    deadline = time.monotonic() + 120
    while not (run / "last.pt").exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, error = process.communicate(timeout=60)
    assert process.returncode == 143, error
    assert error.strip().splitlines()[-1] == (
        f"vireid train: error: terminated (SIGTERM); continue with vireid train --resume {run / 'last.pt'}"
    )
    assert _leftovers(run) == []
    stopped_at = load_checkpoint(run / "last.pt").epoch
    epochs = f"train.epochs={stopped_at + 1}"
    assert main(["train", "--resume", str(run / "last.pt"), "--set", epochs, "--quiet"]) == 0
    assert main(_train_arguments(sysu_root, straight, epochs, "train.workers=2")) == 0
    resumed, whole = load_checkpoint(run / "last.pt"), load_checkpoint(straight / "last.pt")
    assert resumed.epoch == whole.epoch == stopped_at + 1
    for name, tensor in whole.model.items():
        assert torch.equal(tensor, resumed.model[name]), name  # one computation repeated on one machine


@pytest.mark.slow  # long: make test-slow (and CI) runs it
def test_sigterm_while_a_checkpoint_is_written_finishes_it_before_stopping(sysu_root, tmp_path, monkeypatch, capsys):
    """Checkpoints are written by a background thread; the signal reaches the main thread while half a
    file is on disk. The write is finished and renamed into place before the run stops."""
    run = tmp_path / "run"
    assert main(_train_arguments(sysu_root, run, "train.epochs=1")) == 0
    real_save, signalled = torch.save, []

    def save_slowly_terminated_half_way(state, file, *rest, **options):
        written = io.BytesIO()
        real_save(state, written, *rest, **options)
        data = written.getvalue()
        file.write(data[: len(data) // 2])  # save_checkpoint writes through an open file
        file.flush()
        if not signalled:
            signalled.append(threading.current_thread().name)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.5)  # the main thread meets the signal while half the file is written
        file.write(data[len(data) // 2 :])

    monkeypatch.setattr(torch, "save", save_slowly_terminated_half_way)
    capsys.readouterr()
    code = main(["train", "--resume", str(run / "last.pt"), "--set", "train.epochs=2", "--quiet"])
    _one_line(capsys, code, 143, f"terminated (SIGTERM); continue with vireid train --resume {run / 'last.pt'}")
    assert signalled[0].startswith("vireid-checkpoint")  # written off the main thread
    assert load_checkpoint(run / "last.pt", needs=TRAINING_KEYS).epoch == 2 and _leftovers(run) == []
    monkeypatch.setattr(torch, "save", real_save)
    assert main(["train", "--resume", str(run / "last.pt"), "--set", "train.epochs=3", "--quiet"]) == 0
    assert load_checkpoint(run / "last.pt").epoch == 3


def test_sigterm_during_an_evaluation_leaves_it_due_and_resume_runs_it(sysu_root, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    real_extract = selection_module.extract_test_features

    def terminated_extraction(*arguments, **options):
        os.kill(os.getpid(), signal.SIGTERM)
        return real_extract(*arguments, **options)

    monkeypatch.setattr(selection_module, "extract_test_features", terminated_extraction)
    code = main(_train_arguments(sysu_root, run, "train.epochs=1"))
    _one_line(capsys, code, 143, "terminated (SIGTERM); continue with vireid train --resume")
    checkpoint = load_checkpoint(run / "last.pt")
    assert checkpoint.epoch == 1 and checkpoint.evaluated is False and _leftovers(run) == []
    monkeypatch.setattr(selection_module, "extract_test_features", real_extract)
    assert main(["train", "--resume", str(run / "last.pt"), "--quiet"]) == 0
    finished = load_checkpoint(run / "last.pt")
    assert finished.evaluated is True and "sysu-all/rank1" in finished.metrics


def test_the_lock_is_refused_in_one_line_naming_the_folder(tmp_path):
    with claimed_run_folder(tmp_path):
        with pytest.raises(UserError, match="another vireid train"):
            with claimed_run_folder(tmp_path):
                pass


def test_a_sigterm_while_a_loader_iterator_is_built_is_kept_for_the_next_batch():
    # A function whose code claims torch's dataloader module: the handler sees the signal land in a
    # loader iterator's constructor, where an exception would leave a half-built iterator behind.
    namespace = {}
    source = "def __init__(send):\n    send()\n    return 'built'\n"
    exec(compile(source, os.path.join("torch", "utils", "data", "dataloader.py"), "exec"), namespace)
    with sigterm_as_interrupt():
        assert namespace["__init__"](lambda: os.kill(os.getpid(), signal.SIGTERM)) == "built"  # not raised there
        with pytest.raises(Terminated):
            stop_if_terminated()  # but kept: the next batch stops
        with pytest.raises(Terminated):
            os.kill(os.getpid(), signal.SIGTERM)  # anywhere else it is raised where it lands
            time.sleep(1)
