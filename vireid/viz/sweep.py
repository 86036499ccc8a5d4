"""A sweep as the paper's Fig. 3: a row of panels per swept key (rank-1, then mAP, of the sweep's
first protocol, against that key's values), a line per combination of the other keys' values
(the one at their shipped values drawn bold), mean ± std over seeds as error bars, and the key's
shipped value marked by a dotted line."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from vireid.viz.png import save_png

DPI = 150
PANEL_INCHES = (3.6, 2.8)
PANEL_METRICS = (("rank1", "rank-1 (%)"), ("mAP", "mAP (%)"))


def _key(value: Any) -> str:
    return str(value)


def draw_sweep(
    rows: list[dict], grid: dict[str, list[Any]], shipped: dict[str, Any], protocol: str, out: str | Path
) -> Path:
    """The picture of the complete ``rows`` of a sweep over ``grid`` at ``out``; ``shipped``: each
    key's value in the config itself."""
    complete = [row for row in rows if row["state"] == "complete"]
    figure = Figure(figsize=(PANEL_INCHES[0] * len(PANEL_METRICS), PANEL_INCHES[1] * len(grid)), dpi=DPI)
    FigureCanvasAgg(figure)
    panels = figure.subplots(len(grid), len(PANEL_METRICS), squeeze=False)
    for row_index, (key, values) in enumerate(grid.items()):
        others = [other for other in grid if other != key]
        for column, (metric, label) in enumerate(PANEL_METRICS):
            axes = panels[row_index][column]
            for combination in itertools.product(*(grid[other] for other in others)):
                fixed = dict(zip(others, combination))
                at_shipped = all(_key(fixed[other]) == _key(shipped.get(other)) for other in others)
                means, spreads = [], []
                for value in values:
                    scores = [
                        100 * row[f"{protocol} {metric}"]
                        for row in complete
                        if _key(row[key]) == _key(value) and all(_key(row[o]) == _key(fixed[o]) for o in others)
                    ]
                    means.append(np.mean(scores) if scores else np.nan)
                    spreads.append(np.std(scores, ddof=1) if len(scores) > 1 else 0.0)
                legend = ", ".join(f"{other} {fixed[other]}" for other in others) or "seeds"
                axes.errorbar(
                    range(len(values)),
                    means,
                    yerr=spreads,
                    marker="o",
                    capsize=3,
                    linewidth=2.2 if at_shipped else 1.0,
                    label=f"{legend}{' (shipped)' if at_shipped and others else ''}",
                )
            if _key(shipped.get(key)) in map(_key, values):
                axes.axvline([_key(v) for v in values].index(_key(shipped.get(key))), color="grey", linestyle=":")
            axes.set_xticks(range(len(values)), [_key(value) for value in values])
            axes.set_xlabel(f"{key} (dotted: shipped {shipped.get(key)})")
            axes.set_ylabel(f"{protocol} {label}")
            axes.legend(fontsize=6)
    seeds = len({row["seed"] for row in complete}) or 1
    figure.suptitle(f"sweep: mean ± std over {seeds} seed{'s' if seeds > 1 else ''}", fontsize=9)
    figure.tight_layout()
    return save_png(figure, out)
