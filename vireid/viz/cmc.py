"""CMC curves as a PNG, drawn from given fractions or from the results.json files of `vireid test`."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from vireid.atomic import atomic_path
from vireid.errors import UserError

DPI = 150
FIGURE_SIZE = (6.4, 4.8)  # inches
DEFAULT_SHOT = "single"
DEFAULT_DRAWS = "agw"


def _checked_curve(label: str, values: Sequence[float]) -> np.ndarray:
    """(R,) float64 fractions at ranks 1..R, or a UserError naming ``label``."""
    try:
        curve = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise UserError(f"CMC curve {label!r}: expected a list of numbers, got {values!r}") from error
    if curve.ndim != 1 or curve.size == 0:
        raise UserError(f"CMC curve {label!r}: expected a non-empty list of fractions, got shape {curve.shape}")
    if not np.isfinite(curve).all() or curve.min() < 0 or curve.max() > 1:
        raise UserError(
            f"CMC curve {label!r}: expected fractions between 0 and 1, got values in [{curve.min()}, {curve.max()}]"
        )
    if (np.diff(curve) < 0).any():
        rank = int(np.flatnonzero(np.diff(curve) < 0)[0]) + 2
        raise UserError(f"CMC curve {label!r}: expected a non-decreasing curve, but it drops at rank {rank}")
    return curve


def draw_cmc_curves(curves: Mapping[str, Sequence[float]], out: str | Path, title: str | None = None) -> Path:
    """CMC curves (label -> fractions 0..1 at ranks 1..R), one line each, rank on x, percent on y."""
    if not curves:
        raise UserError("curves: expected at least one CMC curve to draw, got none")
    checked = {label: _checked_curve(label, values) for label, values in curves.items()}
    figure = Figure(figsize=FIGURE_SIZE, dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for label, curve in checked.items():
        ranks = np.arange(1, curve.size + 1)
        marker = "." if curve.size <= 30 else None
        axes.plot(ranks, 100 * curve, marker=marker, label=f"{label} (R1 {100 * curve[0]:.1f}%)")
    axes.set_xlabel("rank")
    axes.set_ylabel("matching rate (%)")
    axes.set_ylim(0, 100)
    axes.set_xlim(left=1)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(True, alpha=0.3)
    axes.legend(loc="lower right", fontsize="small")
    if title:
        axes.set_title(title)
    figure.tight_layout()
    with atomic_path(out) as temporary:
        figure.savefig(temporary, format="png", dpi=DPI)
    return Path(out)


def _read_results(path: Path) -> list[dict]:
    """The protocol results in a results.json: a list (`vireid test`) or one object (`vireid evaluate --json`)."""
    expected = "expected a results.json written by `vireid test` (a list of protocol results with trials and their cmc)"
    if not path.is_file():
        raise UserError(f"{path}: {expected}, but it does not exist")
    try:
        results = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{path}: {expected}, but it is not JSON ({error})") from error
    if isinstance(results, dict):
        results = [results]
    if not (isinstance(results, list) and results and all(_is_protocol_result(result) for result in results)):
        raise UserError(f"{path}: {expected}")
    return results


def _is_protocol_result(result: object) -> bool:
    """Whether ``result`` has a protocol name and a non-empty CMC list in each of its (one or more) trials."""
    if not (isinstance(result, dict) and isinstance(result.get("protocol"), str)):
        return False
    trials = result.get("trials")
    if not (isinstance(trials, list) and trials):
        return False
    return all(isinstance(trial, dict) and isinstance(trial.get("cmc"), list) and bool(trial["cmc"]) for trial in trials)


def _protocol_name(result: dict) -> str:
    """The protocol, with the SYSU-MM01 gallery settings when they are not the defaults."""
    name = result["protocol"]
    if result.get("shot", DEFAULT_SHOT) != DEFAULT_SHOT:
        name += f" {result['shot']}-shot"
    if result.get("draws", DEFAULT_DRAWS) != DEFAULT_DRAWS:
        name += f" {result['draws']} draws"
    return name


def _mean_cmc(path: Path, result: dict) -> np.ndarray:
    """(R,) elementwise mean of the trials' CMC curves."""
    lengths = {len(trial["cmc"]) for trial in result["trials"]}
    if len(lengths) != 1:
        raise UserError(
            f"{path}: the trials of {result['protocol']} have CMC curves of different lengths {sorted(lengths)}"
        )
    try:
        trial_curves = np.array([trial["cmc"] for trial in result["trials"]], dtype=np.float64)  # (trials, R)
    except (TypeError, ValueError) as error:
        raise UserError(f"{path}: the CMC curves of {result['protocol']} must hold numbers only") from error
    return trial_curves.mean(axis=0)


def cmc_curves_from_results(results_files: Sequence[str | Path]) -> dict[str, np.ndarray]:
    """label -> mean CMC over trials, for every protocol result in each results.json.

    The label is "RUN PROTOCOL", RUN being the folder holding the file; when
    several files lie in folders of the same name, RUN is the file's path instead.
    """
    paths = [Path(path) for path in results_files]
    if not paths:
        raise UserError("results files: expected at least one results.json, got none")
    repeated = [path for path, count in Counter(path.resolve() for path in paths).items() if count > 1]
    if repeated:
        raise UserError(f"{repeated[0]}: the same results file is given more than once")
    folder_names = Counter(path.resolve().parent.name for path in paths)
    curves = {}
    for path in paths:
        folder_name = path.resolve().parent.name
        run = folder_name if folder_names[folder_name] == 1 else str(path)
        for result in _read_results(path):
            label = f"{run} {_protocol_name(result)}"
            if label in curves:
                raise UserError(f"{path}: holds the results of {_protocol_name(result)} more than once")
            curves[label] = _mean_cmc(path, result)
    return curves
