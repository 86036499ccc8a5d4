"""CMC curves as a PNG: per curve the mean over trials as a line and ± one sample std over
trials shaded, optionally chance as a dashed line. The curves come as fractions, from
ProtocolResults, or from the results.json files of `vireid test` (labelled by run name)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import yaml
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from vireid.errors import UserError
from vireid.viz.png import save_png

if TYPE_CHECKING:
    from vireid.evaluation.protocols import ProtocolResult

DPI = 150
FIGURE_SIZE = (6.4, 4.8)  # inches
DEFAULT_SHOT = "single"
DEFAULT_DRAWS = "agw"
BAND_ALPHA = 0.2
CHANCE_COLOUR = "grey"
GENERIC_RUN_FOLDER = "run"  # as in the demo's runs/demo/run: such a run is named by its config instead


def _checked_trials(label: str, values: Sequence[float] | Sequence[Sequence[float]]) -> np.ndarray:
    """(T, R) float64 fractions at ranks 1..R of T trials (one curve is one trial), or a UserError naming ``label``."""
    try:
        trials = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise UserError(
            f"CMC curve {label!r}: expected a list of numbers, or one "
            f"such list per trial, all of one length; got {values!r}"
        ) from error
    trials = trials[None] if trials.ndim == 1 else trials
    if trials.ndim != 2 or trials.size == 0:
        raise UserError(f"CMC curve {label!r}: expected a non-empty list of fractions, got shape {trials.shape}")
    if not np.isfinite(trials).all() or trials.min() < 0 or trials.max() > 1:
        raise UserError(
            f"CMC curve {label!r}: expected fractions between 0 and 1, got values in [{trials.min()}, {trials.max()}]"
        )
    drops = np.argwhere(np.diff(trials, axis=1) < 0)  # (drops, 2) of (trial, rank - 2)
    if drops.size:
        trial, rank = drops[0] + (1, 2)
        which = f" (trial curve {trial} of {trials.shape[0]})" if trials.shape[0] > 1 else ""
        raise UserError(f"CMC curve {label!r}: expected a non-decreasing curve, but it drops at rank {rank}{which}")
    return trials


def chance_cmc(num_identities: int, max_rank: int) -> np.ndarray:
    """(max_rank,) CMC of a random ranking of ``num_identities`` identities, each once
    (an identity-deduplicated CMC): the right one is within rank r with probability r / N."""
    if num_identities < 1:
        raise UserError(f"chance: expected a positive number of identities, got {num_identities}")
    return np.minimum(np.arange(1, max_rank + 1) / num_identities, 1.0)


def _plot_curve(axes: Axes, label: str, trials: np.ndarray) -> None:
    """The mean of the (T, R) ``trials`` as a line; ± one sample std shaded when T > 1."""
    ranks = np.arange(1, trials.shape[1] + 1)
    mean = trials.mean(axis=0)
    marker = "." if ranks.size <= 30 else None
    if trials.shape[0] == 1:
        axes.plot(ranks, 100 * mean, marker=marker, label=f"{label}: R1 {100 * mean[0]:.1f}%")
        return
    std = trials.std(axis=0, ddof=1)
    (line,) = axes.plot(
        ranks, 100 * mean, marker=marker, label=f"{label}: R1 {100 * mean[0]:.1f} ± {100 * std[0]:.1f}%"
    )
    low, high = np.clip(mean - std, 0, 1), np.clip(mean + std, 0, 1)
    axes.fill_between(ranks, 100 * low, 100 * high, color=line.get_color(), alpha=BAND_ALPHA, linewidth=0)


def _band_meaning(trial_counts: list[int]) -> str:
    return f"shaded: ± 1 std over {'/'.join(str(count) for count in trial_counts)} trials"


def cmc_figure(
    curves: Mapping[str, Sequence[float] | Sequence[Sequence[float]]],
    title: str | None = None,
    chance_identities: int | None = None,
) -> Figure:
    """CMC curves (label -> fractions 0..1 at ranks 1..R, or one such list per trial), rank on x,
    percent on y; with ``chance_identities``, also the chance curve of that many identities."""
    if not curves:
        raise UserError("curves: expected at least one CMC curve to draw, got none")
    checked = {label: _checked_trials(label, values) for label, values in curves.items()}
    figure = Figure(figsize=FIGURE_SIZE, dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for label, trials in checked.items():
        _plot_curve(axes, label, trials)
    if chance_identities is not None:
        chance = chance_cmc(chance_identities, max(trials.shape[1] for trials in checked.values()))
        axes.plot(
            np.arange(1, chance.size + 1),
            100 * chance,
            linestyle="--",
            color=CHANCE_COLOUR,
            label=f"chance, {chance_identities} identities: R1 {100 * chance[0]:.1f}%",
        )
    handles, _ = axes.get_legend_handles_labels()
    trial_counts = sorted({trials.shape[0] for trials in checked.values() if trials.shape[0] > 1})
    if trial_counts:
        handles.append(Patch(facecolor=CHANCE_COLOUR, alpha=BAND_ALPHA, label=_band_meaning(trial_counts)))
    axes.legend(handles=handles, loc="lower right", fontsize="small")
    axes.set_xlabel("rank")
    axes.set_ylabel("matching rate (%)")
    axes.set_ylim(0, 100)
    axes.set_xlim(left=1)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(True, alpha=0.3)
    if title:
        axes.set_title(title)
    figure.tight_layout()
    return figure


def draw_cmc_curves(
    curves: Mapping[str, Sequence[float] | Sequence[Sequence[float]]],
    out: str | Path,
    title: str | None = None,
    chance_identities: int | None = None,
) -> Path:
    """Writes the PNG ``out`` of :func:`cmc_figure`."""
    return save_png(cmc_figure(curves, title, chance_identities), out)


def _protocol_name(protocol: str, shot: str, draws: str, reranked: bool = False) -> str:
    """The protocol, with the SYSU-MM01 gallery settings when they are not the defaults,
    and "re-ranked" for re-ranked figures."""
    name = protocol
    if shot != DEFAULT_SHOT:
        name += f" {shot}-shot"
    if draws != DEFAULT_DRAWS:
        name += f" {draws} draws"
    return f"{name} re-ranked" if reranked else name


def _labelled(run: str | None, protocol_name: str) -> str:
    return f"{run} {protocol_name}" if run else protocol_name


def protocol_cmc_curves(results: Sequence[ProtocolResult], run: str | None = None) -> dict[str, np.ndarray]:
    """label ("RUN PROTOCOL", or "PROTOCOL" without ``run``) -> (trials, R) CMC of every trial."""
    return {
        _labelled(
            run, _protocol_name(result.protocol.name, result.options.shot, result.options.draws, bool(result.rerank))
        ): np.array([trial.metrics.cmc for trial in result.trials], dtype=np.float64)
        for result in results
    }


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
    return all(
        isinstance(trial, dict) and isinstance(trial.get("cmc"), list) and bool(trial["cmc"]) for trial in trials
    )


def _trial_cmcs(path: Path, result: dict) -> np.ndarray:
    """(trials, R) the CMC curve of each trial."""
    lengths = {len(trial["cmc"]) for trial in result["trials"]}
    if len(lengths) != 1:
        raise UserError(
            f"{path}: the trials of {result['protocol']} have CMC curves of different lengths {sorted(lengths)}"
        )
    try:
        return np.array([trial["cmc"] for trial in result["trials"]], dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise UserError(f"{path}: the CMC curves of {result['protocol']} must hold numbers only") from error


def _config_name(config_file: Path) -> str | None:
    """The ``name`` in a run's config.yaml, or None where there is no readable one."""
    try:
        config = yaml.safe_load(config_file.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    name = config.get("name") if isinstance(config, dict) else None
    return name if isinstance(name, str) and name else None


def run_name(results_file: str | Path) -> str:
    """What the run of a results.json is called: its folder's name; for a folder named just
    "run" (as in runs/demo/run), the config name stored beside it, else the folder above's name."""
    folder = Path(results_file).resolve().parent
    if folder.name != GENERIC_RUN_FOLDER:
        return folder.name
    return _config_name(folder / "config.yaml") or folder.parent.name


def cmc_curves_from_results(results_files: Sequence[str | Path]) -> dict[str, np.ndarray]:
    """label ("RUN PROTOCOL") -> (trials, R) CMC of every trial, for every protocol result in each results.json.

    RUN is the :func:`run_name`; where several files have the same one, RUN is the file's folder as given.
    """
    paths = [Path(path) for path in results_files]
    if not paths:
        raise UserError("results files: expected at least one results.json, got none")
    repeated = [path for path, count in Counter(path.resolve() for path in paths).items() if count > 1]
    if repeated:
        raise UserError(f"{repeated[0]}: the same results file is given more than once")
    names = [run_name(path) for path in paths]
    name_counts = Counter(names)
    curves = {}
    for path, name in zip(paths, names):
        run = name if name_counts[name] == 1 else str(path.parent)
        for result in _read_results(path):
            protocol = _protocol_name(
                result["protocol"],
                result.get("shot", DEFAULT_SHOT),
                result.get("draws", DEFAULT_DRAWS),
                bool(result.get("reranked")),
            )
            label = _labelled(run, protocol)
            if label in curves:
                raise UserError(f"{path}: holds the results of {protocol} more than once")
            curves[label] = _trial_cmcs(path, result)
    return curves
