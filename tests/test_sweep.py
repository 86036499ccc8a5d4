"""`vireid sweep`: the grid and its checks before anything runs, the rows and files written from
the study, and (slow) real sweeps of the tiny model: a stopped sweep continuing where it stopped,
and two workers sharing one SQLite study."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

import vireid.engine.trainer as trainer_module
from vireid.cli import main
from vireid.errors import ConfigError, UserError
from vireid.recipe import load_config
from vireid.sweep import SweepPoint, parse_grid, shipped_values, sweep_points, sweep_rows, write_sweep_files
from vireid.viz.sweep import draw_sweep

PROJECT = Path(__file__).resolve().parents[1]


def test_a_grid_parses_yaml_typed_values_in_order():
    grid = parse_grid(["loss.alpha=0.4,1.2", "loss.cross_loss=hard,soft", "model.cmimpl=true,false"])
    assert grid == {"loss.alpha": [0.4, 1.2], "loss.cross_loss": ["hard", "soft"], "model.cmimpl": [True, False]}
    points = sweep_points("tiny", {"loss.alpha": [0.4, 1.2], "loss.beta": [0.2]}, 2, [])
    assert [point.folder for point in points] == [
        "loss.alpha=0.4,loss.beta=0.2/seed0",
        "loss.alpha=0.4,loss.beta=0.2/seed1",
        "loss.alpha=1.2,loss.beta=0.2/seed0",
        "loss.alpha=1.2,loss.beta=0.2/seed1",
    ]
    assert points[3].overrides() == ["loss.alpha=1.2", "loss.beta=0.2", "train.seed=1"]


@pytest.mark.parametrize(
    "specs, message",
    [
        (["loss.alpha"], "--grid 'loss.alpha': expected KEY=VALUE,VALUE,..."),
        (["loss.alpha=1", "loss.alpha=2"], "--grid loss.alpha: given twice"),
        (["train.seed=0,1"], "--grid train.seed: the seeds are --seeds N"),
        (["loss.alpha=0.4,0.4"], "--grid loss.alpha: a value is listed twice"),
        ([], "--grid: give at least one"),
    ],
)
def test_a_malformed_grid_is_refused_naming_it(specs, message):
    with pytest.raises(UserError, match=message):
        parse_grid(specs)


@pytest.mark.parametrize(
    "grid, message",
    [
        ({"loss.alpha": [0.4, -1]}, "loss.alpha: expected at least 0, got -1.0"),
        ({"loss.nothing": [1]}, "loss.nothing: unknown config key; valid keys here: loss.label_smoothing"),
    ],
)
def test_every_value_is_checked_before_anything_runs(grid, message):
    with pytest.raises(ConfigError, match=message):
        sweep_points("tiny", grid, 1, [])


def test_dry_run_lists_the_runs_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", "tiny", "--grid", "loss.alpha=0.4,1.2", "--seeds", "2", "--out", str(out), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"4 runs (2 points x 2 seeds) into {out}:"
    assert lines[1:] == [f"  {out}/loss.alpha={value}/seed{seed}" for value in ("0.4", "1.2") for seed in (0, 1)]
    assert not out.exists()
    assert main(["sweep", "tiny", "--grid", "loss.alpha=0.4,-1", "--out", str(out), "--dry-run"]) == 2
    assert "loss.alpha: expected at least 0, got -1.0" in capsys.readouterr().err


def test_the_rows_and_files_follow_the_grid_with_each_points_state(tmp_path):
    """A study as the sweep leaves it: one point complete (its figures as user attributes), one failed."""
    grid = {"loss.alpha": [0.4, 1.2]}
    points = [SweepPoint({"loss.alpha": value}, 0) for value in (0.4, 1.2)]
    study = optuna.create_study(direction="maximize")
    distributions = {"loss.alpha": optuna.distributions.CategoricalDistribution(["0.4", "1.2"])}
    distributions["seed"] = optuna.distributions.CategoricalDistribution([0])
    figures = {"sysu-all mAP": 0.25, "sysu-all rank1": 0.5, "sysu-all mINP": 0.125}
    study.add_trial(
        optuna.trial.create_trial(
            params={"loss.alpha": "1.2", "seed": 0}, distributions=distributions, value=0.25, user_attrs=figures
        )
    )
    study.add_trial(
        optuna.trial.create_trial(
            params={"loss.alpha": "0.4", "seed": 0}, distributions=distributions, state=optuna.trial.TrialState.FAIL
        )
    )
    rows = sweep_rows(study, points)
    assert rows == [
        {"loss.alpha": 0.4, "seed": 0, "run": "loss.alpha=0.4/seed0", "state": "fail"},
        {"loss.alpha": 1.2, "seed": 0, "run": "loss.alpha=1.2/seed0", "state": "complete", **figures},
    ]
    write_sweep_files(tmp_path, rows)
    with open(tmp_path / "sweep.csv") as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0]) == ["loss.alpha", "seed", "run", "state", "sysu-all rank1", "sysu-all mAP", "sysu-all mINP"]
    assert table[1]["sysu-all mAP"] == "0.25" and table[0]["sysu-all mAP"] == ""
    assert json.loads((tmp_path / "sweep.json").read_text()) == rows
    markdown = (tmp_path / "sweep.md").read_text().splitlines()
    assert markdown[2] == "| 0.4 | 0 | loss.alpha=0.4/seed0 | fail | – | – | – |"
    assert markdown[3] == "| 1.2 | 0 | loss.alpha=1.2/seed0 | complete | 50.00 | 25.00 | 12.50 |"
    shipped = shipped_values(load_config("tiny", ["loss.beta=0.6"]), {"loss.alpha": [], "loss.beta": []})
    assert shipped == {"loss.alpha": 1.2, "loss.beta": 0.6}  # the config's own values, its overrides applied
    picture = draw_sweep(rows, grid, shipped, "sysu-all", tmp_path / "sweep.png")
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _tiny_sweep(root: Path, out: Path, seeds: int = 1) -> list[str]:
    settings = [f"data.root={root}", "data.height=32", "data.width=16", "train.epochs=1", "train.steps_per_epoch=1"]
    settings += ["train.workers=0", "train.eval_every=0"]
    arguments = ["sweep", "tiny", "--grid", "loss.alpha=0.4,1.2", "--seeds", str(seeds), "--out", str(out), "--quiet"]
    return arguments + [argument for setting in settings for argument in ("--set", setting)]


@pytest.mark.slow  # two short trainings, then a third: make test-slow (and CI) runs it
def test_a_stopped_sweep_continues_where_it_stopped(sysu_root, tmp_path, capsys, monkeypatch):
    out = tmp_path / "sweep"
    trained = []
    real_train = trainer_module.train

    def stopped_on_the_second(config, run_dir, **keywords):
        trained.append(Path(run_dir).relative_to(out).as_posix())
        if len(trained) == 2:
            raise KeyboardInterrupt
        return real_train(config, run_dir, **keywords)

    monkeypatch.setattr(trainer_module, "train", stopped_on_the_second)
    assert main(_tiny_sweep(sysu_root, out)) == 130
    assert "interrupted; run the same command again to continue where it stopped" in capsys.readouterr().err
    monkeypatch.setattr(trainer_module, "train", lambda *a, **k: (trained.append("again"), real_train(*a, **k))[1])
    assert main(_tiny_sweep(sysu_root, out)) == 0
    assert trained[2:] == ["again"]  # the finished point is not run again
    rows = json.loads((out / "sweep.json").read_text())
    assert [row["state"] for row in rows] == ["complete", "complete"]
    assert all(0 <= row["sysu-all mAP"] <= 1 for row in rows)
    assert (out / rows[0]["run"] / "results.json").is_file()  # each point an ordinary run folder


@pytest.mark.slow  # two processes training four short points: make test-slow (and CI) runs it
def test_two_workers_share_one_sqlite_study_and_run_each_point_once(sysu_root, tmp_path):
    out = tmp_path / "sweep"
    command = [sys.executable, "-m", "vireid.cli", *_tiny_sweep(sysu_root, out, seeds=2)]
    environment = {**os.environ, "PYTHONPATH": str(PROJECT), "OMP_NUM_THREADS": "1"}
    workers = [subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    workers.append(
        subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    )
    outputs = [worker.communicate(timeout=600) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs
    started = [line for stdout, _ in outputs for line in stdout.splitlines() if line.startswith("sweep point")]
    assert len(started) == 4 and all(stdout.count("sweep point") >= 1 for stdout, _ in outputs)  # both took points
    study = optuna.load_study(study_name="vireid-sweep", storage=f"sqlite:///{out / 'study.db'}")
    complete = [trial.params for trial in study.trials if trial.state.name == "COMPLETE"]
    assert sorted(map(json.dumps, complete)) == sorted(
        json.dumps({"loss.alpha": alpha, "seed": seed}) for alpha in ("0.4", "1.2") for seed in (0, 1)
    )
    rows = json.loads((out / "sweep.json").read_text())
    assert all(row["state"] == "complete" for row in rows) and (out / "sweep.png").is_file()
