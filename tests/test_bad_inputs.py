"""Wrong input never gives wrong numbers: every mismatch a careful new user can make
ends in one line naming the file or key, before anything is scored or trained."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

import vireid.engine.trainer as trainer
from vireid.atomic import write_text
from vireid.cli import _first_cause, main
from vireid.config import ConfigError, config_to_dict
from vireid.datasets.regdb import regdb_test_images
from vireid.datasets.sysu import sysu_test_images, sysu_train_split
from vireid.demo import remove_demo_outputs
from vireid.engine.checkpoint import load_checkpoint
from vireid.errors import DatasetError, DatasetWarning
from vireid.evaluation.feature_file import FeatureSet, save_features
from vireid.recipe import load_config
from vireid.synthetic.writer import write_synthetic_dataset


def _features(images, metadata: dict, seed: int = 0) -> FeatureSet:
    return FeatureSet(np.random.default_rng(seed).normal(size=(len(images), 8)).astype(np.float32), images, metadata)


@pytest.fixture
def feature_files(sysu_root, regdb_root, tmp_path):
    """A SYSU-MM01 feature file, two RegDB files of trial 1, one with a NaN row, one of unknown identities."""
    sysu = _features(sysu_test_images(sysu_root), {"dataset": "sysu"})
    regdb = _features(regdb_test_images(regdb_root, 1), {"dataset": "regdb", "trial": 1})
    broken = _features(sysu_test_images(sysu_root), {"dataset": "sysu"})
    broken.features[5, 3] = np.nan
    own = sysu_test_images(sysu_root)
    unknown = _features(type(own)(own.paths, [-1] * len(own), [-1] * len(own), own.modalities), {})
    files = {"sysu": sysu, "regdb": regdb, "nan": broken, "own": unknown}
    for name, feature_set in files.items():
        save_features(tmp_path / f"{name}.npz", feature_set)
    return {name: str(tmp_path / f"{name}.npz") for name in files}


def _fails_in_one_line(capsys, arguments: list[str], message: str) -> str:
    code = main(arguments)
    error = capsys.readouterr().err
    assert code == 2, error
    assert message in error
    assert len(error.strip().splitlines()) == 1 and "Traceback" not in error
    return error


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--features", "{sysu}", "--protocol", "regdb-v2t"], "sysu.npz: features of the sysu dataset, but regdb-v2t"),
        (["--features", "{sysu}", "--protocol", "llcm-ir2vis"], "is a protocol of LLCM; score them with sysu-all"),
        (["--features", "{regdb}", "--protocol", "sysu-indoor"], "regdb.npz: features of the regdb dataset"),
        (["--features", "{sysu}", "--protocol", "sysu-all", "--trials", "12"], "--trials: sysu-all has trials 0 to 9"),
        (["--features", "{sysu}", "--protocol", "sysu-all", "--trials", "3,3"], "each once; got [3, 3]"),
        (["--features", "{regdb}", "{regdb}", "--protocol", "regdb-t2v"], "regdb.npz: trial 1 again (also "),
        (["--features", "{nan}", "--protocol", "sysu-all"], "nan.npz: 1 of "),
        (["--features", "{own}", "--protocol", "sysu-all"], "own.npz: its images have no person ids"),
        (["--features", "{sysu}", "--protocol", "sysu-all", "--trials", "0"], None),  # the same file, scored
    ],
)
def test_evaluate_refuses_features_and_trials_that_do_not_fit(feature_files, capsys, arguments, message):
    arguments = ["evaluate", *[argument.format(**feature_files) for argument in arguments]]
    if message is None:
        assert main(arguments) == 0 and "| sysu-all single-shot (agw draws) |" in capsys.readouterr().out
    else:
        _fails_in_one_line(capsys, arguments, message)


def test_a_backwards_trial_range_is_refused_by_the_parser(feature_files, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["evaluate", "--features", feature_files["sysu"], "--protocol", "sysu-all", "--trials", "5-2"])
    assert exited.value.code == 2
    assert "expected trials such as 0-9 or 0,2,5 (first ≤ last), got '5-2'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "features, arguments, message",
    [
        ("sysu", ["--protocol", "regdb-v2t"], "sysu.npz: features of the sysu dataset, but regdb-v2t"),
        ("sysu", ["--protocol", "sysu-all", "--trial", "12"], "--trial: sysu-all has trials 0 to 9"),
        ("own", ["--protocol", "sysu-all"], "own.npz: its images have no person ids"),
    ],
)
def test_plot_ranks_refuses_what_evaluate_refuses(feature_files, capsys, tmp_path, features, arguments, message):
    picture = tmp_path / "ranks.png"
    _fails_in_one_line(capsys, ["plot", "ranks", feature_files[features], *arguments, "--out", str(picture)], message)
    assert not picture.exists()


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "train.eval_protocol=regdb-v2t",
            "train.eval_protocol: expected a protocol of SYSU-MM01 (sysu-all, sysu-indoor)",
        ),
        ("data.trial=11", None),  # SYSU-MM01 has no per-trial models: data.trial is not used
        ("test.batch_size=0", "test.batch_size: expected at least 1, got 0"),
        ("train.lr=-0.1", "train.lr: expected more than 0, got -0.1"),
        ("train.epochs=0", "train.epochs: expected at least 1, got 0"),
        ("model.parts=-1", "model.parts: expected at least 0, got -1"),
        ("data.height=0", "data.height: expected 16 to 2048, got 0"),
        ("train.workers=-2", "train.workers: expected at least 0, got -2"),
        ("train.random_erasing=1.5", "train.random_erasing: expected 0 to 1, got 1.5"),
        ("train.milestones=[20,-5]", "train.milestones: expected at least 1, got [20, -5]"),
    ],
)
def test_config_values_out_of_range_are_refused_when_loaded(override, message):
    if message is None:
        assert load_config("sysu_full", [override]).data.trial == 11
        return
    with pytest.raises(ConfigError) as caught:
        load_config("sysu_full", [override])
    assert message in str(caught.value)


def test_regdb_trials_are_checked_against_the_dataset():
    with pytest.raises(ConfigError, match="data.trial: RegDB has trials 1 to 10, got 11"):
        load_config("regdb_full", ["data.trial=11"])


def test_ids_listed_without_images_are_named_in_one_warning_line(sysu_root, tmp_path):
    root = tmp_path / "SYSU-MM01"
    shutil.copytree(sysu_root, root)
    test_ids = root / "exp" / "test_id.txt"
    test_ids.write_text(test_ids.read_text().strip() + ",9998,9999\n")
    with pytest.warns(DatasetWarning, match=r"test_id.txt list 2 id\(s\) with no image: 9998, 9999"):
        sysu_test_images(root)
    settings = ["--set", f"data.root={root}", "--set", "data.height=32", "--set", "data.width=16"]
    short = ["--set", "train.epochs=1", "--set", "train.steps_per_epoch=1", "--set", "train.workers=0"]
    command = [sys.executable, "-m", "vireid.cli", "train", "tiny", *settings, *short, "--out", str(tmp_path / "run")]
    completed = subprocess.run([*command, "--quiet"], capture_output=True, text=True)  # Python's own warning machinery
    assert completed.returncode == 0, completed.stderr
    warning_lines = [line for line in completed.stderr.splitlines() if line.startswith("vireid: warning:")]
    assert warning_lines == [f"vireid: warning: {test_ids} list 2 id(s) with no image: 9998, 9999"]
    assert "Traceback" not in completed.stderr and "UserWarning" not in completed.stderr


@pytest.fixture
def damaged_sysu(sysu_root, tmp_path):
    """A copy of the synthetic SYSU-MM01 set with a broken JPEG, a 1x1 image and a 16-bit image in training folders."""
    root = tmp_path / "SYSU-MM01"
    shutil.copytree(sysu_root, root)
    folder = Path(sysu_train_split(root).paths[0]).parent
    (folder / "9001.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    Image.new("RGB", (1, 1)).save(folder / "9002.jpg")
    Image.fromarray(np.full((32, 16), 40000, dtype=np.uint16)).save(folder / "9003.png")
    return root, folder


def test_vireid_check_reads_every_image_and_names_what_cannot_be_used(damaged_sysu, capsys):
    root, folder = damaged_sysu
    assert main(["check", str(root), "--quiet"]) == 1
    printed = capsys.readouterr().out.splitlines()
    assert f"cannot be used: {folder / '9001.jpg'}: expected a readable image" in "\n".join(printed)
    assert any(line.startswith(f"cannot be used: {folder / '9002.jpg'}: an image of 1x1 pixels") for line in printed)
    assert f"read by its range (I;16): {folder / '9003.png'}" in printed
    assert any(line.startswith("train  visible  camera") for line in printed)
    checked = sum(int(line.rsplit(": ", 1)[1].split()[0]) for line in printed if "camera" in line)
    assert (
        printed[-1]
        == f"{root}: {checked} images checked, 2 cannot be used, 1 of another bit depth (read by their range)"
    )


def test_training_stops_before_its_first_step_on_an_unusable_image_or_a_missing_test_split(
    damaged_sysu, tmp_path, capsys
):
    root, folder = damaged_sysu
    run = tmp_path / "run"
    arguments = ["train", "tiny", "--set", f"data.root={root}", "--set", "train.epochs=1", "--out", str(run), "--quiet"]
    error = _fails_in_one_line(capsys, arguments, "2 image(s) of")
    assert (
        f"{folder / '9001.jpg'}: expected a readable image" in error
        and f"`vireid check {root} --dataset sysu`" in error
    )
    (folder / "9001.jpg").unlink()
    (folder / "9002.jpg").unlink()
    (root / "exp" / "test_id.txt").unlink()
    _fails_in_one_line(capsys, arguments, "test_id.txt: expected a one-line file of comma-separated person ids")
    assert not run.exists()


def test_the_epoch_is_on_disk_before_its_evaluation_runs(sysu_root, tmp_path, monkeypatch):
    def failing_evaluation(*arguments):
        raise RuntimeError("evaluation broke")

    monkeypatch.setattr(trainer, "_evaluate", failing_evaluation)
    config = load_config("tiny", [f"data.root={sysu_root}", "data.height=32", "data.width=16", "train.epochs=1"])
    with pytest.raises(RuntimeError, match="evaluation broke"):
        trainer.train(load_config(None, ["train.steps_per_epoch=1", "train.workers=0"], base=config_to_dict(config)),
                      tmp_path / "run", progress=False)  # fmt: skip
    assert load_checkpoint(tmp_path / "run" / "last.pt").epoch == 1


def _small_training(root, out) -> list[str]:
    settings = ["--set", f"data.root={root}", "--set", "data.height=32", "--set", "data.width=16"]
    settings += ["--set", "train.steps_per_epoch=1", "--set", "train.workers=0"]
    return ["train", "tiny", *settings, "--out", str(out), "--quiet"]


def test_imagenet_weights_offline_say_how_to_go_on(sysu_root, tmp_path, capsys, monkeypatch):
    def offline(*arguments, **keywords):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.models._api.WeightsEnum, "get_state_dict", offline)
    arguments = ["train", "sysu_agw", "--set", f"data.root={sysu_root}", "--out", str(tmp_path / "run")]
    error = _fails_in_one_line(
        capsys, arguments, "model.pretrained=imagenet: the ImageNet weights of resnet50 could not be downloaded"
    )
    assert "--pretrained FILE" in error and "--set model.pretrained=none" in error


@pytest.mark.parametrize(
    "arguments, message",
    [
        (
            ["evaluate", "--features", "{sysu}", "--protocol", "sysu-all", "--json", "{blocker}/r.json"],
            "is a file, not a folder",
        ),
        (["index", "{sysu}", "--out", "{blocker}/index.npz"], "index.npz: cannot be written"),
        (["plot", "tsne", "{sysu}", "--out", "{folder}"], "expected a file to write, but it is a folder"),
        (["export", "{checkpoint}", "--out", "{blocker}"], "expected a folder to write into, but it is a file"),
        (
            ["evaluate", "--features", "{sysu}", "--protocol", "sysu-all", "--device", "gpu0"],
            "--device: expected cpu, cuda, cuda:N or mps",
        ),
    ],
)
def test_outputs_and_devices_are_checked_before_any_work(feature_files, tmp_path, capsys, arguments, message):
    (tmp_path / "blocker").write_text("a file where a folder is expected")
    (tmp_path / "folder").mkdir()
    paths = {
        **feature_files,
        "blocker": str(tmp_path / "blocker"),
        "folder": str(tmp_path / "folder"),
        "checkpoint": "x.pt",
    }
    _fails_in_one_line(capsys, [argument.format(**paths) for argument in arguments], message)
    assert (tmp_path / "blocker").read_text() == "a file where a folder is expected"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_one_line(feature_files, capsys):
    arguments = ["evaluate", "--features", feature_files["sysu"], "--protocol", "sysu-all", "--device", "cuda"]
    _fails_in_one_line(capsys, arguments, "--device cuda: PyTorch sees no CUDA GPU on this machine; use --device cpu")


def test_ctrl_c_says_how_to_resume(sysu_root, tmp_path, capsys, monkeypatch):
    original = trainer.train_one_epoch

    def interrupted_in_the_second_epoch(run, epoch, progress):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(run, epoch, progress)

    monkeypatch.setattr(trainer, "train_one_epoch", interrupted_in_the_second_epoch)
    run = tmp_path / "run"
    code = main([*_small_training(sysu_root, run), "--set", "train.epochs=3"])
    error = capsys.readouterr().err
    assert (
        code == 130
        and error == f"vireid train: error: interrupted; continue with vireid train --resume {run / 'last.pt'}\n"
    )
    assert load_checkpoint(run / "last.pt").epoch == 1


def test_resume_with_another_architecture_is_refused_before_any_tensor_is_loaded(sysu_root, tmp_path, capsys):
    run = tmp_path / "run"
    assert main([*_small_training(sysu_root, run), "--set", "train.epochs=1"]) == 0
    capsys.readouterr()
    arguments = [
        "train",
        "--resume",
        str(run / "last.pt"),
        "--set",
        "model.parts=2",
        "--set",
        "train.epochs=2",
        "--quiet",
    ]
    _fails_in_one_line(capsys, arguments, "model.parts: the run of ")
    assert load_checkpoint(run / "last.pt").epoch == 1


def test_a_binary_id_file_is_named(sysu_root, tmp_path, capsys):
    root = tmp_path / "SYSU-MM01"
    shutil.copytree(sysu_root, root)
    (root / "exp" / "test_id.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    _fails_in_one_line(
        capsys,
        _small_training(root, tmp_path / "run"),
        "test_id.txt: expected a one-line file of comma-separated person ids, but it is not a text file",
    )


def test_an_image_that_breaks_in_a_loader_worker_is_named_in_one_line(sysu_root, tmp_path, capsys):
    root = tmp_path / "SYSU-MM01"
    shutil.copytree(sysu_root, root)
    victim = Path(sysu_train_split(root).paths[0])
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 3])  # its header reads, its pixels do not
    arguments = [*_small_training(root, tmp_path / "run"), "--set", "train.workers=1", "--set", "train.epochs=1"]
    _fails_in_one_line(
        capsys, arguments, f"{victim}: expected a readable image (jpg, png, bmp, ...), could not decode it"
    )


def test_a_closed_pipe_ends_quietly(tmp_path):
    environment = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}  # output buffered
    command = [sys.executable, "-m", "vireid.cli", "configs"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment)
    process.stdout.close()  # the reader is gone before the command prints
    assert process.wait(timeout=120) == 141
    assert process.stderr.read() == b""


def test_synth_force_replaces_only_a_synthetic_dataset(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    arguments = [
        "synth",
        "--layout",
        "regdb",
        "--ids",
        "4",
        "--images-per-id",
        "1",
        "--size",
        "32x16",
        "--workers",
        "1",
    ]
    _fails_in_one_line(
        capsys, [*arguments, "--out", str(mine), "--force"], "not a synthetic dataset of vireid (no synthetic.json"
    )
    assert (mine / "thesis.tex").read_text() == "years of work"
    synthetic = tmp_path / "RegDB"
    assert main([*arguments, "--out", str(synthetic)]) == 0
    (synthetic / "Visible" / "note.txt").write_text("replaced with the set")
    assert main([*arguments, "--out", str(synthetic), "--force"]) == 0
    assert not (synthetic / "Visible" / "note.txt").exists() and (synthetic / "synthetic.json").is_file()
    empty = tmp_path / "mount_point"
    empty.mkdir()
    assert main([*arguments, "--out", str(empty), "--force"]) == 0  # an empty folder holds nothing to lose


def test_partials_of_killed_processes_are_removed_and_live_ones_kept(tmp_path):
    out = tmp_path / "RegDB"
    dead, live = tmp_path / ".RegDB.partial-999999999", tmp_path / f".RegDB.partial-{os.getppid()}"
    for partial in (dead, live):
        (partial / "Visible").mkdir(parents=True)
    stale_checkpoint = tmp_path / ".last.pt.partial-999999999"
    stale_checkpoint.write_bytes(b"half a checkpoint")
    fresh = tmp_path / ".best.pt.partial-999999998"  # maybe a writer on another machine: too recent to judge
    fresh.write_bytes(b"being written")
    an_hour_ago = time.time() - 3600
    for partial in (dead, live, stale_checkpoint):
        os.utime(partial, (an_hour_ago, an_hour_ago))
    write_synthetic_dataset("regdb", out, identities=4, images_per_id=1, size=(32, 16), workers=1)
    assert not dead.exists() and live.exists()
    write_text(tmp_path / "last.pt", "a whole one")
    write_text(tmp_path / "best.pt", "a whole one")
    assert not stale_checkpoint.exists() and fresh.exists()


@pytest.mark.slow  # long: make test-slow (and CI) runs it
def test_test_into_another_runs_folder_needs_force(sysu_root, tmp_path, capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    for run in (first, second):
        assert main([*_small_training(sysu_root, run), "--set", "train.epochs=1"]) == 0
    assert main(["test", str(first / "last.pt"), "--trials", "0", "--quiet"]) == 0
    before = (first / "results.json").read_text()
    capsys.readouterr()
    arguments = ["test", str(second / "last.pt"), "--trials", "0-1", "--out", str(first), "--quiet"]
    _fails_in_one_line(capsys, arguments, f"{first}: already holds results (results.json) of other checkpoints")
    assert (first / "results.json").read_text() == before
    assert main([*arguments, "--force"]) == 0 and (first / "results.json").read_text() != before
    assert main(arguments) == 0  # the same checkpoint into the same folder again: its own results
    assert main(["test", str(first / "last.pt"), "--trials", "0", "--quiet"]) == 0  # its own folder: no question


def test_a_new_demo_removes_only_what_the_last_one_wrote(tmp_path):
    run = tmp_path / "run"
    (run / "tensorboard").mkdir(parents=True)
    for name in (
        "last.pt",
        "best.pt",
        "metrics.jsonl",
        "results.json",
        "ranks_sysu-all.png",
        "tsne.png",
        "config.yaml",
    ):
        (run / name).write_text("the demo's")
    for name in ("last.visible.onnx", "notes.txt"):
        (run / name).write_text("the user's")
    remove_demo_outputs(run)
    assert sorted(path.name for path in run.iterdir()) == ["last.visible.onnx", "notes.txt"]


@pytest.mark.slow  # long: make test-slow (and CI) runs it
def test_logs_hold_each_step_once_after_a_dead_run_and_a_resume(sysu_root, tmp_path):
    def steps(run):
        return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]

    base = [
        *_small_training(sysu_root, tmp_path / "x")[:-3],
        "--set",
        "train.log_every=1",
        "--set",
        "train.steps_per_epoch=2",
    ]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main([*base, "--set", "train.epochs=2", "--out", str(straight), "--quiet"]) == 0
    split.mkdir()
    (split / "metrics.jsonl").write_text('{"kind": "step", "step": 7}\n{"kind": "st')  # a run that died early
    assert main([*base, "--set", "train.epochs=1", "--out", str(split), "--quiet"]) == 0
    assert steps(split) == [1, 2, 2]  # the dead run's lines are gone
    with open(split / "metrics.jsonl", "a") as handle:  # the run went on past its checkpoint, then died
        handle.write('{"kind": "step", "step": 3}\n{"kind": "step", "st')
    assert main(["train", "--resume", str(split / "last.pt"), "--set", "train.epochs=2", "--quiet"]) == 0
    assert steps(split) == steps(straight) == [1, 2, 2, 3, 4, 4]


def test_a_batch_of_more_identities_than_the_data_hold_names_the_key(sysu_root, tmp_path, capsys):
    arguments = [*_small_training(sysu_root, tmp_path / "run"), "--set", "train.identities_per_batch=100"]
    _fails_in_one_line(
        capsys, arguments, "train.identities_per_batch: a batch needs 100 identities with images of both"
    )
    assert not (tmp_path / "run" / "last.pt").exists()


def test_a_run_stopped_during_its_evaluation_evaluates_on_resume(sysu_root, tmp_path, capsys, monkeypatch):
    original = trainer._evaluate
    monkeypatch.setattr(trainer, "_evaluate", lambda *arguments: (_ for _ in ()).throw(KeyboardInterrupt))
    run = tmp_path / "run"
    assert main([*_small_training(sysu_root, run), "--set", "train.epochs=1"]) == 130
    assert "continue with vireid train --resume" in capsys.readouterr().err and not (run / "best.pt").exists()
    monkeypatch.setattr(trainer, "_evaluate", original)
    assert main(["train", "--resume", str(run / "last.pt"), "--quiet"]) == 0
    assert load_checkpoint(run / "best.pt").best["epoch"] == 1 and load_checkpoint(run / "last.pt").evaluated
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [record["kind"] for record in records] == ["epoch"] and "sysu-all/mAP" in records[0]


def test_the_first_cause_of_a_worker_error_keeps_all_its_lines():
    wrapped = DatasetError(
        "Caught DatasetError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 1, in <module>\nvireid.errors.DatasetError: /data/a.jpg: first line\nsecond line'
    )
    assert _first_cause(wrapped) == "/data/a.jpg: first line\nsecond line"
    assert _first_cause(DatasetError("plain")) == "plain"


def test_id_files_saved_with_a_byte_order_mark_read_alike(sysu_root, tmp_path):
    root = tmp_path / "SYSU-MM01"
    shutil.copytree(sysu_root, root)
    test_ids = root / "exp" / "test_id.txt"
    test_ids.write_bytes(b"\xef\xbb\xbf" + test_ids.read_bytes())  # as some Windows editors save
    original = sysu_test_images(sysu_root).paths
    assert sysu_test_images(root).paths == tuple(path.replace(str(sysu_root), str(root)) for path in original)
