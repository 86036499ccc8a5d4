"""`vireid sweep`: a grid of config values, each point and seed trained and tested as an ordinary run.

The grid is an Optuna study (grid sampler) stored in SQLite inside the sweep folder (study.db;
workers on one machine take study.lock while they open it), or in any database Optuna reaches
(``--storage``, e.g. ``postgresql://...``). Every worker that opens the same
study takes the points no one has taken: processes on one machine, one per GPU, or machines sharing
a database. A stopped sweep starts again where it stopped: a finished point is not run again, and a
point stopped mid-run continues from its last checkpoint (its run folder's last.pt); a point whose
worker died is taken again once its heartbeat is stale.

Each point is a run folder ``<out>/<key>=<value>,.../seed<seed>`` (config, checkpoints,
results.json), so ``vireid test``, ``compare`` and the pictures work on any of them. After its
points, a worker writes ``sweep.csv``, ``sweep.json`` and ``sweep.md``: a row per point with the
swept values, the seed, each protocol's R1, mAP and mINP, and its state; and ``sweep.png``, the
picture of the paper's Fig. 3 (vireid.viz.sweep).
"""

from __future__ import annotations

import csv
import fcntl
import io
import itertools
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vireid.atomic import write_text
from vireid.config import ExperimentConfig, config_to_dict
from vireid.datasets import get_dataset
from vireid.errors import UserError
from vireid.recipe import load_config

STUDY_NAME = "vireid-sweep"
HEARTBEAT_SECONDS = 60  # a running point records it this often; one silent for twice as long is taken again
METRICS = ("rank1", "mAP", "mINP")


@dataclass(frozen=True)
class SweepPoint:
    """One point of the grid with one seed."""

    values: dict[str, Any]  # config key -> value, in the order of --grid
    seed: int

    @property
    def folder(self) -> str:
        """The run folder's path inside the sweep folder: 'loss.alpha=0.4,loss.beta=0.2/seed0'."""
        return ",".join(f"{key}={_text(value)}" for key, value in self.values.items()) + f"/seed{self.seed}"

    def overrides(self) -> list[str]:
        return [f"{key}={_text(value)}" for key, value in self.values.items()] + [f"train.seed={self.seed}"]

    @property
    def params(self) -> dict[str, Any]:
        """The point as the study's trials hold it: each value as its YAML text, and the seed."""
        return {**{key: _text(value) for key, value in self.values.items()}, "seed": self.seed}


def _text(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def parse_grid(specs: list[str]) -> dict[str, list[Any]]:
    """``["loss.alpha=0.4,1.2", ...]`` -> {key: [values]} with YAML-typed values, or a UserError naming the spec."""
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        key, equals, values = spec.partition("=")
        if not equals or not key or not values:
            raise UserError(f"--grid {spec!r}: expected KEY=VALUE,VALUE,... (e.g. loss.alpha=0.4,1.2)")
        if key in grid:
            raise UserError(f"--grid {key}: given twice; list all its values in one --grid")
        if key == "train.seed":
            raise UserError("--grid train.seed: the seeds are --seeds N (0..N-1)")
        parsed = [yaml.safe_load(value) for value in values.split(",")]
        if len(set(map(_text, parsed))) != len(parsed):
            raise UserError(f"--grid {key}: a value is listed twice")
        grid[key] = parsed
    if not grid:
        raise UserError("--grid: give at least one KEY=VALUE,VALUE,...")
    return grid


def sweep_points(config: str, grid: dict[str, list[Any]], seeds: int, overrides: list[str]) -> list[SweepPoint]:
    """Every point of ``grid`` with seeds 0..``seeds``-1, each value checked as a config override
    first (an unknown key or a value out of its range is a ConfigError naming it, before anything runs)."""
    if seeds < 1:
        raise UserError(f"--seeds: expected at least 1, got {seeds}")
    for key, values in grid.items():
        for value in values:
            load_config(config, [*overrides, f"{key}={_text(value)}"])
    return [
        SweepPoint(dict(zip(grid, combination)), seed)
        for combination in itertools.product(*grid.values())
        for seed in range(seeds)
    ]


def point_config(config: str, point: SweepPoint, overrides: list[str]) -> ExperimentConfig:
    return load_config(config, [*overrides, *point.overrides()])


def _study(storage: str, grid: dict[str, list[Any]], seeds: int, lock_file: Path):
    """The sweep's study, created by the first worker and opened by the others. Workers on this
    machine take ``lock_file`` meanwhile: two creating one database at once collide on its schema."""
    with open(lock_file, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return _opened_study(storage, grid, seeds)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _opened_study(storage: str, grid: dict[str, list[Any]], seeds: int):
    import optuna

    optuna.logging.set_verbosity(logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # the heartbeat's retry
    search_space = {key: [_text(value) for value in values] for key, values in grid.items()}
    search_space["seed"] = list(range(seeds))
    database = optuna.storages.RDBStorage(
        storage,
        heartbeat_interval=HEARTBEAT_SECONDS,
        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(),
    )
    study = optuna.create_study(
        study_name=STUDY_NAME,
        storage=database,
        sampler=optuna.samplers.GridSampler(search_space),
        direction="maximize",
        load_if_exists=True,
    )
    recorded = study.user_attrs.get("search_space")
    if recorded is None:
        study.set_user_attr("search_space", search_space)
    elif recorded != search_space:
        raise UserError(
            f"{storage}: holds a sweep of another grid ({json.dumps(recorded)}); give another --out or --storage"
        )
    return study


def run_sweep(
    config: str,
    grid: dict[str, list[Any]],
    seeds: int,
    out: Path,
    overrides: list[str] = (),
    storage: str | None = None,
    device: str = "auto",
    progress: bool = True,
) -> list[dict]:
    """Take and run the sweep's points until none is left; write and return the rows of every point."""
    import optuna

    from vireid.engine.distributed import checked_device
    from vireid.engine.run_folder import unfinished_run
    from vireid.engine.tester import score_checkpoints, selected_checkpoint
    from vireid.engine.trainer import train

    points = sweep_points(config, grid, seeds, list(overrides))
    device = checked_device(device)  # auto: the GPU if there is one
    out.mkdir(parents=True, exist_ok=True)
    storage = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    study = _study(storage, grid, seeds, out / "study.lock")
    positions = {_key(point.params): position for position, point in enumerate(points)}

    def objective(trial) -> float:
        values = {key: trial.suggest_categorical(key, [_text(v) for v in choices]) for key, choices in grid.items()}
        position = positions[_key({**values, "seed": trial.suggest_categorical("seed", list(range(seeds)))})]
        point, states = points[position], _states(study, points, exclude=trial.number)
        if states[position] in ("complete", "running"):
            raise optuna.TrialPruned(f"{point.folder}: done or running in another worker")  # a duplicate draw
        done = states.count("complete")
        print(f"sweep point {done + 1} of {len(points)}: {point.folder} ({out / point.folder})", flush=True)
        point_configuration = point_config(config, point, list(overrides))
        run_dir = out / point.folder
        resume = unfinished_run(run_dir, point_configuration)
        if resume is not False:
            train(point_configuration, run_dir, resume=resume, device=device, progress=progress)
        results = score_checkpoints(
            [selected_checkpoint(run_dir)], out=run_dir, progress=progress, force=True, device=device
        )
        for result in results:
            for name in METRICS:
                trial.set_user_attr(f"{result.protocol.name} {name}", result.mean()[name])
        return results[0].mean()["mAP"]

    while True:
        optuna.storages.fail_stale_trials(study)  # a dead worker's point: failed, then queued again
        states = _states(study, points)
        for point, state in zip(points, states):
            if state in ("fail", "pruned"):  # stopped or died: run it again (from its last.pt)
                study.enqueue_trial(point.params)
        if all(state in ("complete", "running") for state in states):
            break
        study.optimize(objective, n_trials=1, catch=())
    rows = sweep_rows(study, points)
    write_sweep_files(out, rows)
    if any(row["state"] == "complete" for row in rows):
        from vireid.viz.sweep import draw_sweep

        base = load_config(config, list(overrides))
        protocol = base.train.eval_protocol or get_dataset(base.data.dataset).default_protocol.name
        draw_sweep(rows, grid, shipped_values(base, grid), protocol, out / "sweep.png")
    return rows


def shipped_values(config: ExperimentConfig, grid: dict[str, list[Any]]) -> dict[str, Any]:
    """Each swept key's value in the config itself (its --set overrides applied)."""
    values = config_to_dict(config)
    shipped = {}
    for key in grid:
        node: Any = values
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        shipped[key] = node
    return shipped


def _key(params: dict[str, Any]) -> tuple:
    return tuple(sorted(params.items()))


def _trials_of(study, points: list[SweepPoint], exclude: int | None = None) -> list[list]:
    """Each point's trials (but the trial ``exclude``), oldest first, from one read of the study."""
    by_params: dict[tuple, list] = {}
    for trial in study.get_trials(deepcopy=False):
        if trial.number != exclude:
            by_params.setdefault(_key(trial.params), []).append(trial)
    return [by_params.get(_key(point.params), []) for point in points]


def _state(trials: list) -> str:
    """A point's state: 'complete', 'running' or 'waiting' where any of its trials is, else that of
    its latest trial ('fail', 'pruned'), or 'not started'."""
    states = {trial.state.name.lower() for trial in trials}
    for state in ("complete", "running", "waiting"):
        if state in states:
            return state
    return trials[-1].state.name.lower() if trials else "not started"


def _states(study, points: list[SweepPoint], exclude: int | None = None) -> list[str]:
    return [_state(trials) for trials in _trials_of(study, points, exclude)]


def sweep_rows(study, points: list[SweepPoint]) -> list[dict]:
    """A row per point, in grid order: its values, seed, run folder, state and each protocol's figures."""
    rows = []
    for point, trials in zip(points, _trials_of(study, points)):
        state = _state(trials)
        figures = next((trial.user_attrs for trial in trials if trial.state.name == "COMPLETE"), {})
        rows.append({**point.values, "seed": point.seed, "run": point.folder, "state": state, **figures})
    return rows


def write_sweep_files(out: Path, rows: list[dict]) -> None:
    """sweep.csv, sweep.json and sweep.md: the rows, figures in percent in the table."""
    figures = sorted(
        {column for row in rows for column in row if column.endswith(METRICS)},
        key=lambda column: (column.rsplit(" ", 1)[0], METRICS.index(column.rsplit(" ", 1)[1])),
    )  # per protocol: rank1, mAP, mINP
    columns = [column for column in rows[0] if not column.endswith(METRICS)] + figures
    table = io.StringIO()
    writer = csv.DictWriter(table, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(out / "sweep.csv", table.getvalue())
    write_text(out / "sweep.json", json.dumps(rows, indent=2) + "\n")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [
            f"{100 * row[column]:.2f}" if column.endswith(METRICS) and column in row else str(row.get(column, "–"))
            for column in columns
        ]
        lines.append("| " + " | ".join(cells) + " |")
    write_text(out / "sweep.md", "\n".join(lines) + "\n")
