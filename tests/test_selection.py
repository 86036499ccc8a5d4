"""Model selection (train.select_on), the epochs it chooses from (the in-training evaluations)
and the validation split of held-out identities; runs of several seeds (--seeds) and their
mean ± std over seeds."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import vireid.engine.selection as selection_module
from vireid.cli import main
from vireid.config import ConfigError, TrainConfig
from vireid.data.files import read_id_list
from vireid.datasets import read_trial_split
from vireid.datasets.regdb import regdb_train_split
from vireid.datasets.sysu import sysu_train_split
from vireid.engine.checkpoint import load_checkpoint, save_checkpoint
from vireid.engine.selection import (
    evaluate_validation,
    evaluated_epochs,
    held_out_ids,
    split_off_validation,
    validation_rows,
)
from vireid.engine.tester import find_checkpoints
from vireid.engine.trainer import train
from vireid.errors import UserError
from vireid.evaluation.metrics import evaluate_features
from vireid.evaluation.protocols import scored_rows
from vireid.recipe import load_config
from vireid.synthetic.writer import write_synthetic_dataset


@pytest.fixture(scope="module")
def small_sysu(tmp_path_factory):
    root = tmp_path_factory.mktemp("selection") / "SYSU-MM01"
    write_synthetic_dataset("sysu", root, identities=30, images_per_id=4, size=(64, 32), seed=6, workers=2)
    return root


def _config(root, *overrides):
    settings = ["train.epochs=2", "train.steps_per_epoch=1", "train.eval_every=1", "train.workers=0"]
    return load_config("tiny", [f"data.root={root}", *settings, *overrides])


def test_held_out_ids_are_a_seeded_fraction_the_same_every_time():
    ids = list(range(100, 140))
    chosen = held_out_ids(ids, 0.1)
    assert len(chosen) == 4 and chosen == sorted(chosen) and set(chosen) <= set(ids)
    assert held_out_ids(list(reversed(ids)), 0.1) == chosen  # whatever the order of the training split
    assert len(held_out_ids(ids[:5], 0.1)) == 2  # at least two
    with pytest.raises(UserError, match="train.validation_fraction: holding out 2 of 3 training identities"):
        held_out_ids([1, 2, 3], 0.1)


def test_sysu_validation_is_val_id_txt_held_out_of_training(small_sysu):
    config = _config(small_sysu, "train.select_on=validation-map")
    training, validation = split_off_validation(config, sysu_train_split(small_sysu))
    val_ids = set(read_id_list(small_sysu / "exp/val_id.txt"))
    assert set(validation.person_ids.tolist()) == val_ids
    assert not val_ids & set(training.person_ids.tolist())
    assert set(training.person_ids.tolist()) == set(read_id_list(small_sysu / "exp/train_id.txt"))
    assert set(training.labels.tolist()) == set(range(training.num_identities))


def test_validation_is_scored_with_the_protocols_rule(small_sysu):
    """sysu-all on the held-out images: every infrared image (cam3, cam6) a query, one visible image
    per person and camera (cam1, 2, 4, 5) in the gallery."""
    config = _config(small_sysu, "train.select_on=validation-map")
    _, validation = split_off_validation(config, sysu_train_split(small_sysu))
    query_rows, gallery_rows = validation_rows(config, validation)
    assert sorted(query_rows) == np.flatnonzero(np.isin(validation.camera_ids, [3, 6])).tolist()
    folders = {(validation.person_ids[row], validation.camera_ids[row]) for row in range(len(validation))}
    visible_folders = {folder for folder in folders if folder[1] in (1, 2, 4, 5)}
    gallery_folders = [(validation.person_ids[row], validation.camera_ids[row]) for row in gallery_rows]
    assert sorted(gallery_folders) == sorted(visible_folders)  # exactly one image per visible folder


def test_regdb_validation_is_a_fraction_of_the_trials_training_ids(regdb_root):
    config = load_config("tiny", ["data.dataset=regdb", f"data.root={regdb_root}", "train.validation_fraction=0.25"])
    split = regdb_train_split(regdb_root, 1)
    training, validation = split_off_validation(config, split)
    assert set(validation.person_ids.tolist()) == set(held_out_ids(split.person_ids.tolist(), 0.25))
    assert len(training) + len(validation) == len(split)


@pytest.mark.slow  # long: make test-slow (and CI) runs it
def test_validation_selection_never_touches_the_test_data(small_sysu, tmp_path, monkeypatch):
    def no_test_data(*arguments, **keywords):
        raise AssertionError("the test images were read during training")

    monkeypatch.setattr(selection_module, "extract_test_features", no_test_data)
    train(_config(small_sysu, "train.select_on=validation-map"), tmp_path / "run", progress=False)
    records = [json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    scores = [record["validation/mAP"] for record in records if record["kind"] == "epoch"]
    assert len(scores) == 2 and not any(key.startswith("sysu-") for record in records for key in record)
    best = load_checkpoint(tmp_path / "run/best.pt")
    assert best.selected_on == "validation mAP" and best.epoch == 1 + scores.index(max(scores))
    training = load_checkpoint(tmp_path / "run/last.pt")
    assert training.num_classes == len(read_id_list(small_sysu / "exp/train_id.txt"))


@pytest.mark.slow  # long: make test-slow (and CI) runs it
def test_test_map_selection_keeps_the_best_map(small_sysu, tmp_path):
    train(_config(small_sysu, "train.select_on=test-map"), tmp_path / "run", progress=False)
    records = [json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    scores = [record["sysu-all/mAP"] for record in records if record["kind"] == "epoch"]
    best = load_checkpoint(tmp_path / "run/best.pt")
    assert best.selected_on == "test mAP" and best.epoch == 1 + scores.index(max(scores))


@pytest.mark.slow  # long: make test-slow (and CI) runs it
def test_last_epoch_selection_writes_no_best_and_results_say_so(small_sysu, tmp_path, capsys):
    run = tmp_path / "run"
    train(_config(small_sysu, "train.select_on=last"), run, progress=False)
    assert not (run / "best.pt").exists() and find_checkpoints(run) == [run / "last.pt"]
    assert main(["test", str(run), "--trials", "0", "--quiet", "--protocol", "sysu-all"]) == 0
    assert "\n\nSelected on: last epoch (2 of 2)\n\nSeed: 0\n\n" in (run / "results.md").read_text()
    saved = json.loads((run / "results.json").read_text())
    assert saved[0]["selected_on"] == "last epoch (2 of 2)" and saved[0]["seed"] == 0


@pytest.mark.slow  # long: make test-slow (and CI) runs it
def test_a_run_folder_is_tested_with_its_selected_checkpoint(small_sysu, tmp_path, capsys):
    run = tmp_path / "run"
    train(_config(small_sysu), run, progress=False)
    assert find_checkpoints(run) == [run / "best.pt"]
    epoch = load_checkpoint(run / "best.pt").epoch
    assert main(["test", str(run), "--trials", "0", "--quiet", "--protocol", "sysu-all"]) == 0
    assert f"Selected on: test rank-1 (reference habit), epoch {epoch}\n" in (run / "results.md").read_text()


@pytest.mark.slow  # long: make test-slow (and CI) runs it
def test_seeds_train_into_sub_folders_and_test_reports_mean_and_std_over_seeds(small_sysu, tmp_path, capsys):
    out = tmp_path / "seeds"
    arguments = ["train", "tiny", "--set", f"data.root={small_sysu}", "--set", "train.epochs=1", "--quiet"]
    arguments += ["--set", "train.steps_per_epoch=1", "--seeds", "0,1", "--out", str(out)]
    assert main(arguments) == 0
    assert [load_checkpoint(out / f"seed{seed}/last.pt").config["train"]["seed"] for seed in (0, 1)] == [0, 1]
    assert f"seeds 0, 1 in {out}; score them together: vireid test {out}" in capsys.readouterr().out
    assert main(arguments) == 0  # finished runs are skipped, not refused or retrained
    assert f"{out / 'seed1'}: finished (1 epochs), skipped" in capsys.readouterr().out

    assert main(["test", str(out), "--trials", "0-2", "--quiet", "--protocol", "sysu-all"]) == 0
    printed = capsys.readouterr().out
    per_seed = [json.loads((out / f"seed{seed}/results.json").read_text())[0] for seed in (0, 1)]
    assert [record["seed"] for record in per_seed] == [0, 1]
    combined = json.loads((out / "results.json").read_text())[0]
    for metric in ("rank1", "mAP"):
        values = [record["mean"][metric] for record in per_seed]
        assert combined["mean"][metric] == pytest.approx(np.mean(values))
        assert combined["std_over_seeds"][metric] == pytest.approx(abs(values[0] - values[1]) / np.sqrt(2))
        trial_std = np.mean([record["std"][metric] for record in per_seed])
        assert combined["std_over_trials"][metric] == pytest.approx(trial_std)
    mean, std, trial_std = (100 * combined[key]["rank1"] for key in ("mean", "std_over_seeds", "std_over_trials"))
    assert f"| 2 | {mean:.2f} ± {std:.2f} ({trial_std:.2f}) |" in printed
    assert combined["seeds"] == [0, 1] and (out / "results.md").read_text().startswith("# Results over seeds 0, 1")


def test_seeds_refuse_a_folder_of_another_config_and_resume(small_sysu, tmp_path, capsys):
    out = tmp_path / "seeds"
    base = ["train", "tiny", "--set", f"data.root={small_sysu}", "--set", "train.steps_per_epoch=1", "--quiet"]
    assert main([*base, "--set", "train.epochs=1", "--seeds", "3", "--out", str(out)]) == 0
    assert main([*base, "--set", "train.epochs=1", "--set", "train.lr=0.01", "--seeds", "3", "--out", str(out)]) == 2
    assert f"{out / 'seed3'}: holds a run of another config; choose another --out" in capsys.readouterr().err
    assert main([*base, "--set", "train.epochs=2", "--seeds", "3", "--out", str(out)]) == 2  # epochs differ too
    assert main(["train", "--resume", str(out / "seed3/last.pt"), "--seeds", "3"]) == 2
    assert "--seeds starts (or continues) every seed's run from CONFIG" in capsys.readouterr().err


@pytest.mark.slow  # long: make test-slow (and CI) runs it
def test_seeds_continue_an_interrupted_run(small_sysu, tmp_path, capsys):
    """A seed's run stopped after epoch 1 of 2 (written here as its last.pt) is continued, not restarted."""
    out = tmp_path / "seeds"
    base = ["train", "tiny", "--set", f"data.root={small_sysu}", "--set", "train.steps_per_epoch=1", "--quiet"]
    assert main([*base, "--set", "train.epochs=1", "--seeds", "4", "--out", str(out)]) == 0
    stopped = load_checkpoint(out / "seed4/last.pt")
    stopped.config["train"]["epochs"] = 2
    save_checkpoint(out / "seed4/last.pt", stopped)
    capsys.readouterr()
    assert main([*base, "--set", "train.epochs=2", "--seeds", "4", "--out", str(out)]) == 0
    assert "epochs 2 to 2 (resumed)" in capsys.readouterr().out
    assert load_checkpoint(out / "seed4/last.pt").epoch == 2


def _reference_test_epochs(epochs: int) -> list[int]:
    """The epochs after which the reference tests, as vireid counts them (from 1): its loop
    ``for epoch in range(0, epochs)`` tests after ``if epoch > 0 and epoch % 2 == 0``."""
    return [epoch + 1 for epoch in range(0, epochs) if epoch > 0 and epoch % 2 == 0]


def test_reproduction_configs_evaluate_after_the_references_test_epochs():
    """AGW (train.py: range(0, 81)) tests after its epochs 2, ..., 80; CAJ (train_ext.py:
    range(0, 100)) after 2, ..., 98, not after its last, 99; neither after its first."""
    assert _reference_test_epochs(81) == list(range(3, 82, 2)) and _reference_test_epochs(100) == list(range(3, 100, 2))
    for dataset in ("sysu", "regdb", "llcm"):
        for variant, epochs in (("agw", 81), ("fgfl", 81), ("full", 81), ("caj", 100), ("full_caj", 100)):
            config = load_config(f"{dataset}_{variant}")
            assert evaluated_epochs(config.train) == _reference_test_epochs(epochs), config.name
            assert config.train.select_on == "test-rank1" and not config.train.eval_flip, config.name
    assert evaluated_epochs(load_config("tiny").train) == [4, 8, 12]


def test_the_evaluation_schedule_and_a_schedule_without_evaluations():
    assert evaluated_epochs(TrainConfig(epochs=10, eval_every=4)) == [4, 8, 10]  # and after the last
    assert evaluated_epochs(TrainConfig(epochs=10, eval_every=4, eval_last=False)) == [4, 8]
    assert evaluated_epochs(TrainConfig(epochs=10, eval_every=3, eval_offset=2)) == [5, 8, 10]
    assert evaluated_epochs(TrainConfig(epochs=10, eval_every=0, eval_last=False)) == [10]  # 0: the last alone
    with pytest.raises(
        ConfigError, match=r"^train.eval_every: every 2 epochs after 1, without the last .* none of the 2"
    ):
        load_config("sysu_agw", ["train.epochs=2"])  # the reference's first test follows epoch 3
    with pytest.raises(ConfigError, match="evaluates none of the 12 epochs, yet train.select_on 'test-map'"):
        load_config("tiny", ["train.eval_offset=12", "train.eval_last=false", "train.select_on=test-map"])
    assert evaluated_epochs(load_config("sysu_agw", ["train.epochs=2", "train.eval_every=0"]).train) == [2]
    assert evaluated_epochs(load_config("sysu_agw", ["train.epochs=2", "train.select_on=last"]).train) == []


@pytest.mark.slow  # long: make test-slow (and CI) runs it
def test_a_run_evaluates_after_the_scheduled_epochs_alone_and_unflipped(small_sysu, tmp_path, monkeypatch):
    """The reference's rule at 4 epochs: evaluations after epoch 3 alone (its 0-based epoch 2; not
    after epoch 1, nor after the last); the feature unflipped though test.flip is on."""
    flips = []

    def recording(model, config, *rest):
        flips.append(config.test.flip)
        return extract(model, config, *rest)

    extract = selection_module.extract_test_features
    monkeypatch.setattr(selection_module, "extract_test_features", recording)
    schedule = ["train.epochs=4", "train.eval_every=2", "train.eval_offset=1", "train.eval_last=false"]
    config = _config(small_sysu, *schedule, "test.flip=true")
    train(config, tmp_path / "run", progress=False)
    records = [json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    evaluated = [record["epoch"] for record in records if record["kind"] == "epoch" and "sysu-all/rank1" in record]
    assert evaluated == [3] and flips == [False]
    assert load_checkpoint(tmp_path / "run/best.pt").epoch == 3


def test_in_training_evaluations_extract_only_the_images_their_trials_score(small_sysu, tmp_path, monkeypatch):
    """Two trials of sysu-all: the features of their queries and galleries alone (as read from disk),
    each as the features of every test image give it, the trials drawn from every test image (the
    synthetic folders are too small for a draw from the scored images alone to differ: checked in
    test_protocols), and the recorded figures those of these features."""
    extracted, drawn_from = [], []

    def recording(model, config, device, progress, held=None, rows=None):
        feature_set = extract(model, config, device, progress, held, rows)
        extracted.append((feature_set, extract(model, config, device, progress)))
        return feature_set

    def scoring(*arguments, **keywords):
        drawn_from.append(keywords["drawn_from"])
        return evaluate(*arguments, **keywords)

    extract, evaluate = selection_module.extract_test_features, selection_module.evaluate_protocol
    monkeypatch.setattr(selection_module, "extract_test_features", recording)
    monkeypatch.setattr(selection_module, "evaluate_protocol", scoring)
    train(_config(small_sysu, "train.epochs=1", "train.eval_trials=2"), tmp_path / "run", progress=False)
    ((scored, every),) = extracted
    on_disk = set()
    for trial in (0, 1):
        query, gallery = read_trial_split("sysu-all", small_sysu, trial)
        on_disk |= set(query.paths) | set(gallery.paths)
    assert set(scored.images.paths) == on_disk and len(scored.images) < len(every.images)
    row_of = {path: row for row, path in enumerate(every.images.paths)}
    same_images = every.features[[row_of[path] for path in scored.images.paths]]
    np.testing.assert_allclose(scored.features, same_images, atol=1e-5)
    assert drawn_from[0].images.paths == every.images.paths
    figures = evaluate("sysu-all", [scored], [0, 1], drawn_from=scored_rows("sysu-all", every.images, [0, 1])).mean()
    record = json.loads((tmp_path / "run/metrics.jsonl").read_text().splitlines()[-1])
    assert (record["sysu-all/rank1"], record["sysu-all/mAP"]) == (figures["rank1"], figures["mAP"])


def test_a_validation_extracts_only_the_images_its_trial_scores(small_sysu, monkeypatch):
    """The validation's features of its queries and gallery alone, scored as features of every
    validation image score (features here a function of the path: the same whatever the batch)."""
    config = _config(small_sysu, "train.select_on=validation-map")
    _, validation = split_off_validation(config, sysu_train_split(small_sysu))
    extracted = []

    def by_path(model, images, *rest):
        extracted.append(images.paths)
        return np.stack([np.random.default_rng(list(path.encode())).normal(size=8) for path in images.paths])

    monkeypatch.setattr(selection_module, "extract_features", by_path)
    metrics = evaluate_validation(torch.nn.Identity(), config, validation, torch.device("cpu"), progress=False)
    query_rows, gallery_rows = validation_rows(config, validation)
    assert sorted(extracted[0]) == sorted({validation.paths[row] for row in query_rows + gallery_rows})
    assert len(extracted[0]) < len(validation)
    every = by_path(None, validation)
    expected = evaluate_features(
        every[query_rows],
        every[gallery_rows],
        validation.person_ids[query_rows],
        validation.person_ids[gallery_rows],
        validation.camera_ids[query_rows],
        validation.camera_ids[gallery_rows],
        "sysu",
    )
    assert metrics.mAP == pytest.approx(expected.mAP, abs=1e-9) and metrics.mAP != pytest.approx(0, abs=1e-3)
    np.testing.assert_allclose(metrics.cmc, expected.cmc, atol=1e-9)
