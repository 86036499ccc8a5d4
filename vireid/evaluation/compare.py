"""Results side by side, from the results.json files of `vireid test` (vireid.evaluation.results_file).

One row per run (and per re-ranking), one group of columns per protocol (R1, R10, R20, mAP,
mINP, mean ± std): the shape of the paper's Table 4.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from vireid.evaluation.results_file import RecordedResult

if TYPE_CHECKING:
    from vireid.published import PublishedRow

COLUMNS = ("R1", "R10", "R20", "mAP", "mINP")


def figures(result: RecordedResult) -> dict[str, np.ndarray]:
    """Each column's values (percent), one per trial (or seed).

    CMC beyond the curve's end keeps its last value.

    Args:
        result: One protocol result of one run.

    Returns:
        Each of COLUMNS -> (S,) values in percent.
    """
    ranks = {name: int(name[1:]) for name in COLUMNS if name.startswith("R")}
    last = result.cmc.shape[1]
    return {
        **{name: 100 * result.cmc[:, min(rank, last) - 1] for name, rank in ranks.items()},
        "mAP": 100 * result.mAP,
        "mINP": 100 * result.mINP,
    }


def _cell(values: np.ndarray) -> str:
    spread = values.std(ddof=1) if values.size > 1 else 0.0
    return f"{values.mean():.2f} ± {spread:.2f}"


def method_label(config: dict | None) -> str:
    """The run's ``model.method``, with the keys the run changed from the method's own values.

    The keys are those of any section the method sets: its model switches, a recipe's loss, train
    and test keys.

    Args:
        config: The run's config, or None.

    Returns:
        For example "agw (parts 6)"; "–" where the config names no method.
    """
    from vireid.method import registered_methods  # here: the methods import the networks

    methods = registered_methods()
    model = (config or {}).get("model")
    if not isinstance(model, dict) or "method" not in model:
        return "–"
    method = str(model["method"])
    changed = []
    for section, defaults in (methods[method].defaults if method in methods else {}).items():
        values = config.get(section, {})
        for key, value in defaults.items():
            if isinstance(values, dict) and key in values and values[key] != value:
                changed.append(f"{key} {values[key]}" if section == "model" else f"{section}.{key} {values[key]}")
    return f"{method} ({', '.join(changed)})" if changed else method


def comparison_table(
    results: Sequence[RecordedResult],
    protocols: Sequence[str] | None = None,
    published: Sequence[PublishedRow] = (),
) -> str:
    """The Markdown comparison table.

    A row per run and re-ranking, R1 / R10 / R20 / mAP / mINP of each protocol as mean ± std in
    percent; then a row per ``published`` method (and re-ranking), its figures as published, and
    their sources.

    Args:
        results: The runs' results.
        protocols: The protocols, in order; None: every one found, in order of appearance.
        published: Published figures to show beside them.

    Returns:
        The table and the notes under it.
    """
    protocols = list(protocols or dict.fromkeys(result.protocol for result in results))
    rows: dict[tuple[str, str], dict[str, RecordedResult]] = {}
    for result in results:
        rows.setdefault((result.run, result.reranking or ""), {})[result.protocol] = result
    header = ["run", "method", *(f"{protocol} {column}" for protocol in protocols for column in COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    spreads = set()
    for (run, reranking), by_protocol in rows.items():
        first = next(iter(by_protocol.values()))
        cells = [f"{run}{f', {reranking}' if reranking else ''}", method_label(first.config)]
        for protocol in protocols:
            result = by_protocol.get(protocol)
            if result is not None:
                spreads.add(result.spread)
            values = figures(result) if result is not None else {}
            cells += [_cell(values[column]) if column in values else "–" for column in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    lines += _published_lines(published, protocols)
    lines.append("")
    over = " (over seeds for runs of several seeds)" if spreads == {"trials", "seeds"} else ""
    lines.append(f"mean ± standard deviation over {'seeds' if spreads == {'seeds'} else 'trials'}{over}, in percent")
    if published:
        lines += _published_notes(published, plain_runs=any(not result.reranked for result in results))
    return "\n".join(lines)


def _published_lines(published: Sequence[PublishedRow], protocols: Sequence[str]) -> list[str]:
    """A table row per published method and re-ranking: its figures as published, '–' where none."""
    rows: dict[tuple[str, bool], dict[str, PublishedRow]] = {}
    for row in published:
        rows.setdefault((row.name, row.reranked), {})[row.protocol] = row
    lines = []
    for (name, reranked), by_protocol in rows.items():
        first = next(iter(by_protocol.values()))
        label = f"published: {name} ({first.citation}{', re-ranked' if reranked else ''})"
        cells = [label, first.method]
        for protocol in protocols:
            figures = by_protocol[protocol].figures if protocol in by_protocol else {}
            cells += [f"{figures[column]:.2f}" if figures.get(column) is not None else "–" for column in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _published_notes(published: Sequence[PublishedRow], plain_runs: bool) -> list[str]:
    """The lines under the table: what the published rows are and their sources.

    A warning is added where re-ranked published figures stand beside plain runs.
    """
    notes = ["", "Published rows: the figures as their source gives them (no spread; – where it gives none):"]
    notes += [f"- {row.name}, {row.protocol}: {row.source}" for row in published]
    if plain_runs and any(row.reranked for row in published):
        notes.append(
            "Rows marked re-ranked hold re-ranked figures: compare them with re-ranked runs (vireid test --rerank), "
            "not with plain ones."
        )
    return notes


__all__ = ["COLUMNS", "comparison_table", "figures", "method_label"]
