"""Results of runs that differ only in their seed.

Mean ± std over the seeds, beside the spread over trials that each run's own table shows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vireid.evaluation.protocols import REPORTED_RANKS, ProtocolResult

METRICS = [f"rank{rank}" for rank in REPORTED_RANKS] + ["mAP", "mINP"]


@dataclass(frozen=True)
class SeedResults:
    """One protocol scored for every seed: ``results[i]`` is seed ``seeds[i]``'s ProtocolResult.

    Attributes:
        seeds: The seeds.
        results: Each seed's ProtocolResult.
    """

    seeds: tuple[int, ...]
    results: tuple[ProtocolResult, ...]

    def per_seed(self) -> dict[str, np.ndarray]:
        """Each metric (fractions 0..1): every seed's mean over its trials."""
        return {name: np.array([result.mean()[name] for result in self.results]) for name in METRICS}

    def mean(self) -> dict[str, float]:
        """Each metric's mean over seeds of the per-seed means (fractions 0..1)."""
        return {name: float(values.mean()) for name, values in self.per_seed().items()}

    def std(self) -> dict[str, float]:
        """Sample standard deviation over seeds (ddof = 1) of the per-seed means."""
        return {name: float(values.std(ddof=1)) for name, values in self.per_seed().items()}

    def trial_std(self) -> dict[str, float]:
        """The spread over trials: each seed's std over its trials, averaged over seeds."""
        return {name: float(np.mean([result.std()[name] for result in self.results])) for name in METRICS}

    def to_dict(self) -> dict:
        """The results as results.json records them: settings, mean, both spreads and every seed's result."""
        first = self.results[0].to_dict()
        return {
            **{key: first[key] for key in ("protocol", "query", "gallery", "shot", "draws", "data", "reranked")},
            "seeds": list(self.seeds),
            "mean": self.mean(),
            "std_over_seeds": self.std(),
            "std_over_trials": self.trial_std(),
            "per_seed": [{"seed": seed, **result.to_dict()} for seed, result in zip(self.seeds, self.results)],
        }


def seeds_table(results: list[SeedResults]) -> str:
    """Markdown: mean ± std over seeds, and in brackets the std over trials, in percent.

    Args:
        results: One row each.

    Returns:
        The table and a note under it.
    """
    header = "| protocol | query → gallery | seeds | " + " | ".join(["R1", "R5", "R10", "R20", "mAP", "mINP"]) + " |"
    lines = [header, "|" + "---|" * (3 + len(METRICS))]
    for result in results:
        mean, std, trial_std = result.mean(), result.std(), result.trial_std()
        cells = [f"{100 * mean[name]:.2f} ± {100 * std[name]:.2f} ({100 * trial_std[name]:.2f})" for name in METRICS]
        protocol = result.results[0].protocol
        direction = f"{protocol.query} → {protocol.gallery}"
        lines.append(f"| {result.results[0].label} | {direction} | {len(result.seeds)} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("mean ± standard deviation over seeds (in brackets: the standard deviation over trials)")
    return "\n".join(lines)


__all__ = ["SeedResults", "seeds_table"]
