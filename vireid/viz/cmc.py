"""CMC curves as a PNG: per curve the mean over trials as a line and ± one sample std over
trials shaded, optionally chance as a dashed line. The curves come as fractions, from
ProtocolResults, or from the results.json files of `vireid test` (labelled by run name)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from vireid.errors import UserError
from vireid.evaluation.results_file import protocol_label, results_to_compare
from vireid.viz.png import save_png

if TYPE_CHECKING:
    from vireid.evaluation.protocols import ProtocolResult

DPI = 150
FIGURE_SIZE = (6.4, 4.8)  # inches
BAND_ALPHA = 0.2
CHANCE_COLOUR = "grey"


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


def protocol_cmc_curves(results: Sequence[ProtocolResult], run: str | None = None) -> dict[str, np.ndarray]:
    """label ("RUN PROTOCOL", or "PROTOCOL" without ``run``) -> (trials, R) CMC of every trial."""
    curves = {}
    for result in results:
        options, rerank = result.options, result.rerank.to_dict() if result.rerank else None
        protocol = protocol_label(result.protocol.name, options.shot, options.draws, rerank)
        curves[f"{run} {protocol}" if run else protocol] = np.array(
            [trial.metrics.cmc for trial in result.trials], dtype=np.float64
        )
    return curves


def cmc_curves_from_results(
    inputs: Sequence[str | Path], protocols: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """label ("RUN PROTOCOL") -> (trials, R) CMC of every trial (of every seed's mean, for runs of
    several seeds), for every protocol result (of ``protocols``) in each results.json or run folder;
    runs of other data, or not scored on the same protocols, are refused (vireid.evaluation.results_file)."""
    return {result.label: result.cmc for result in results_to_compare(inputs, protocols)}
