"""CMC curves as a PNG: per curve the mean over trials as a line and ± one sample std over
trials shaded, optionally chance as a dashed grey line. The curves come as fractions, from
ProtocolResults, or from the results.json files of `vireid test` (labelled by run name).

Curves are told apart by more than colour: each run has its colour (each protocol, when one run
is drawn), each protocol its marker, and re-ranked curves are dashed. Red and green are left out
of the colours: the rank-list pictures use them for wrong and right.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Mapping, NamedTuple, Sequence

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
    from vireid.evaluation.results_file import RecordedResult

DPI = 150
FIGURE_SIZE = (6.4, 4.8)  # inches
BAND_ALPHA = 0.2
CHANCE_COLOUR = "grey"
COLOURS = ("tab:blue", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:cyan", "black")  # no red, no green
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
MARKER_SIZE = 3.5
MOST_RANKS_MARKED = 30  # more ranks than this: lines without markers (each protocol then differs by colour alone)


class CurveName(NamedTuple):
    """What a curve shows: whose figures (``run``), on which ``protocol``, and the re-ranking
    that made them (its settings described, or None); ``str()`` is the curve's legend label."""

    run: str
    protocol: str = ""
    reranked: str | None = None

    def __str__(self) -> str:
        protocol = f"{self.protocol}, {self.reranked}" if self.reranked else self.protocol
        return " ".join(part for part in (self.run, protocol) if part)


def _curve_name(label: str | CurveName) -> CurveName:
    """A plain string label is a run of its own, on no named protocol."""
    return label if isinstance(label, CurveName) else CurveName(str(label))


def _styles(names: Sequence[CurveName], marked: bool) -> list[dict]:
    """matplotlib line keywords per curve: a colour per run (per protocol when every curve is of
    one run), a marker per protocol where ``marked``, dashed where re-ranked."""
    runs = list(dict.fromkeys(name.run for name in names))
    protocols = list(dict.fromkeys(name.protocol for name in names))
    coloured_by = (
        (lambda name: protocols.index(name.protocol)) if len(runs) == 1 else (lambda name: runs.index(name.run))
    )
    return [
        {
            "color": COLOURS[coloured_by(name) % len(COLOURS)],
            "marker": MARKERS[protocols.index(name.protocol) % len(MARKERS)] if marked else None,
            "markersize": MARKER_SIZE,
            "linestyle": "--" if name.reranked else "-",
        }
        for name in names
    ]


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


def _plot_curve(axes: Axes, label: str, trials: np.ndarray, style: dict) -> None:
    """The mean of the (T, R) ``trials`` as a line drawn in ``style``; ± one sample std shaded when T > 1."""
    ranks = np.arange(1, trials.shape[1] + 1)
    mean = trials.mean(axis=0)
    if trials.shape[0] == 1:
        axes.plot(ranks, 100 * mean, label=f"{label}: R1 {100 * mean[0]:.1f}%", **style)
        return
    std = trials.std(axis=0, ddof=1)
    axes.plot(ranks, 100 * mean, label=f"{label}: R1 {100 * mean[0]:.1f} ± {100 * std[0]:.1f}%", **style)
    low, high = np.clip(mean - std, 0, 1), np.clip(mean + std, 0, 1)
    axes.fill_between(ranks, 100 * low, 100 * high, color=style["color"], alpha=BAND_ALPHA, linewidth=0)


def _band_meaning(trial_counts: list[int]) -> str:
    return f"shaded: ± 1 std over {'/'.join(str(count) for count in trial_counts)} trials"


def cmc_figure(
    curves: Mapping[str | CurveName, Sequence[float] | Sequence[Sequence[float]]],
    title: str | None = None,
    chance_identities: int | None = None,
) -> Figure:
    """CMC curves (label or CurveName -> fractions 0..1 at ranks 1..R, or one such list per trial),
    rank on x, percent on y, the legend under the chart; with ``chance_identities``, also the
    chance curve of that many identities."""
    if not curves:
        raise UserError("curves: expected at least one CMC curve to draw, got none")
    checked = {_curve_name(label): _checked_trials(str(label), values) for label, values in curves.items()}
    figure = Figure(figsize=FIGURE_SIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    marked = max(trials.shape[1] for trials in checked.values()) <= MOST_RANKS_MARKED
    for (name, trials), style in zip(checked.items(), _styles(list(checked), marked)):
        _plot_curve(axes, str(name), trials, style)
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
    figure.legend(handles=handles, loc="outside lower center", fontsize="small")
    axes.set_xlabel("rank")
    axes.set_ylabel("matching rate (%)")
    axes.set_ylim(0, 100)
    axes.set_xlim(left=1)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(True, alpha=0.3)
    if title:
        axes.set_title(title)
    return figure


def draw_cmc_curves(
    curves: Mapping[str | CurveName, Sequence[float] | Sequence[Sequence[float]]],
    out: str | Path,
    title: str | None = None,
    chance_identities: int | None = None,
) -> Path:
    """Writes the PNG ``out`` of :func:`cmc_figure`."""
    return save_png(cmc_figure(curves, title, chance_identities), out)


def protocol_cmc_curves(results: Sequence[ProtocolResult], run: str = "") -> dict[CurveName, np.ndarray]:
    """CurveName (``run``, or no run, and the protocol) -> (trials, R) CMC of every trial."""
    curves = {}
    for result in results:
        protocol = protocol_label(result.protocol.name, result.options.shot, result.options.draws)
        reranked = result.rerank.describe() if result.rerank else None
        curves[CurveName(run, protocol, reranked)] = np.array(
            [trial.metrics.cmc for trial in result.trials], dtype=np.float64
        )
    return curves


def recorded_cmc_curves(results: Sequence[RecordedResult]) -> dict[CurveName, np.ndarray]:
    """CurveName (run, protocol, re-ranking) -> (S, R) CMC of every trial, or of every seed's mean,
    of each result read from a results.json."""
    return {CurveName(result.run, result.protocol, result.reranking): result.cmc for result in results}


def cmc_curves_from_results(
    inputs: Sequence[str | Path], protocols: Sequence[str] | None = None
) -> dict[CurveName, np.ndarray]:
    """The recorded_cmc_curves of every protocol result (of ``protocols``) in each results.json or run
    folder (for runs of several seeds, each seed's mean); runs of other data, or not scored on the same
    protocols, are refused (vireid.evaluation.results_file)."""
    return recorded_cmc_curves(results_to_compare(inputs, protocols))
