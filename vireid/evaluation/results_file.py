"""Reading the results.json files that `vireid test` and `vireid evaluate --json` write.

Each protocol result of each run is read as its per-trial (or, for runs of several seeds, per-seed)
figures, labelled by run name, protocol and re-ranking.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import yaml

from vireid.errors import UserError
from vireid.evaluation.rerank import RerankSettings

DEFAULT_SHOT = "single"
DEFAULT_DRAWS = "agw"
GENERIC_RUN_FOLDER = "run"  # as in the demo's runs/demo/run: such a run is named by its config instead
EXPECTED = "expected a results.json written by `vireid test` (a list of protocol results with trials and their cmc)"


@dataclass(frozen=True)
class RecordedResult:
    """One protocol result of one run, as a results.json holds it.

    Attributes:
        run: The run's name, unique among the files read together.
        config: The run's config.yaml beside the file, where there is one.
        protocol: The protocol, with SYSU-MM01's gallery setting where not the default.
        reranked: The re-ranking settings (k1, k2, lambda_value), or None.
        cmc: (S, R) each trial's CMC (fractions), or each seed's mean over its trials.
        mAP: (S,) mAP.
        mINP: (S,) mINP.
        spread: What S counts: "trials" or "seeds".
        data: The dataset fingerprint of the figures (None in files written before it).
    """

    run: str  # the run's name, unique among the files read together
    config: dict | None  # the run's config.yaml beside the file, where there is one
    protocol: str  # the protocol, with SYSU-MM01's gallery setting where not the default
    reranked: dict | None  # the re-ranking settings (k1, k2, lambda_value), or None
    cmc: np.ndarray  # (S, R): each trial's CMC (fractions), or each seed's mean over its trials
    mAP: np.ndarray  # (S,)
    mINP: np.ndarray  # (S,)
    spread: str  # what S counts: "trials" or "seeds"
    data: dict | None = None  # the dataset fingerprint of the figures (None in files written before it)

    @property
    def reranking(self) -> str | None:
        """The re-ranking that made the figures, described ("re-ranked (k1 20, k2 6, λ 0.3)"), or None."""
        return RerankSettings.from_dict(self.reranked).describe() if self.reranked else None

    @property
    def label(self) -> str:
        """The run's name and protocol, with the re-ranking where the figures are re-ranked."""
        return f"{self.run} {protocol_label(self.protocol, reranked=self.reranked)}"


def protocol_label(
    protocol: str, shot: str = DEFAULT_SHOT, draws: str = DEFAULT_DRAWS, reranked: dict | None = None
) -> str:
    """The protocol as tables label it.

    The SYSU-MM01 gallery settings are added when they are not the defaults, and for re-ranked
    figures their settings.

    Args:
        protocol: The protocol's name.
        shot: The gallery's shot setting.
        draws: The gallery's draws.
        reranked: The re-ranking settings (RerankSettings.to_dict), or None.

    Returns:
        The label.
    """
    name = protocol
    if shot != DEFAULT_SHOT:
        name += f" {shot}-shot"
    if draws != DEFAULT_DRAWS:
        name += f" {draws} draws"
    return f"{name}, {RerankSettings.from_dict(reranked).describe()}" if reranked else name


def results_path(path: str | Path) -> Path:
    """A results.json itself, or the one in a run folder (which must hold one).

    Args:
        path: A results.json or a run folder.

    Returns:
        The results.json's path.

    Raises:
        UserError: Where a folder holds no results.json.
    """
    path = Path(path)
    if path.is_dir() and not (path / "results.json").is_file():
        raise UserError(f"{path}: holds no results.json; score the run first: vireid test {path}")
    return path / "results.json" if path.is_dir() else path


def _load_json(path: Path) -> list:
    if not path.is_file():
        raise UserError(f"{path}: {EXPECTED}, but it does not exist")
    try:
        records = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{path}: {EXPECTED}, but it is not JSON ({error})") from error
    records = [records] if isinstance(records, dict) else records
    if not (isinstance(records, list) and records and all(isinstance(record, dict) for record in records)):
        raise UserError(f"{path}: {EXPECTED}")
    return records


def _trials(path: Path, record: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(T, R) CMC, (T,) mAP, (T,) mINP of a record's trials, or a UserError naming the file."""
    trials = record.get("trials")
    if not (
        isinstance(record.get("protocol"), str)
        and isinstance(trials, list)
        and trials
        and all(isinstance(trial, dict) and isinstance(trial.get("cmc"), list) and trial["cmc"] for trial in trials)
    ):
        raise UserError(f"{path}: {EXPECTED}")
    lengths = {len(trial["cmc"]) for trial in trials}
    if len(lengths) != 1:
        raise UserError(
            f"{path}: the trials of {record['protocol']} have CMC curves of different lengths {sorted(lengths)}"
        )
    try:
        cmc = np.array([trial["cmc"] for trial in trials], dtype=np.float64)
        scores = [np.array([trial.get(name, np.nan) for trial in trials], dtype=np.float64) for name in ("mAP", "mINP")]
    except (TypeError, ValueError) as error:
        raise UserError(f"{path}: the figures of {record['protocol']} must be numbers") from error
    return cmc, scores[0], scores[1]


def _figures(path: Path, record: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """A record's (S, R) CMC, (S,) mAP and mINP, and what S counts.

    S counts its trials, or for a results file of several seeds (``per_seed``) each seed's means over its trials.
    """
    if isinstance(record.get("per_seed"), list) and record["per_seed"]:
        seeds = [_trials(path, {"protocol": record.get("protocol"), **seed}) for seed in record["per_seed"]]
        return (*(np.stack([values.mean(0) for values in figure]) for figure in zip(*seeds)), "seeds")
    return (*_trials(path, record), "trials")


def _config(folder: Path) -> dict | None:
    """The run's config.yaml in ``folder``, or None where there is no readable one."""
    try:
        config = yaml.safe_load((folder / "config.yaml").read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return config if isinstance(config, dict) else None


def run_name(results_file: str | Path) -> str:
    """What the run of a results.json is called.

    Its folder's name; for a folder named just "run" (as in runs/demo/run), the config name stored
    beside it, else the folder above's name.

    Args:
        results_file: The results.json.

    Returns:
        The run's name.
    """
    folder = Path(results_file).resolve().parent
    if folder.name != GENERIC_RUN_FOLDER:
        return folder.name
    name = (_config(folder) or {}).get("name")
    return name if isinstance(name, str) and name else folder.parent.name


def read_results(inputs: Sequence[str | Path]) -> list[RecordedResult]:
    """Every protocol result of each results.json (or run folder holding one), in order.

    A run is named by :func:`run_name`; where two have the same name, by the file's folder as given.

    Args:
        inputs: results.json files or run folders.

    Returns:
        The results.

    Raises:
        UserError: Where no file is given, a file is given twice, is unreadable, or holds one protocol twice.
    """
    paths = [results_path(path) for path in inputs]
    if not paths:
        raise UserError("results files: expected at least one results.json, got none")
    repeated = [path for path, count in Counter(path.resolve() for path in paths).items() if count > 1]
    if repeated:
        raise UserError(f"{repeated[0]}: the same results file is given more than once")
    names = [run_name(path) for path in paths]
    name_counts = Counter(names)
    recorded, labels = [], set()
    for path, name in zip(paths, names):
        run = name if name_counts[name] == 1 else str(path.parent)
        for record in _load_json(path):
            cmc, mean_ap, mean_inp, spread = _figures(path, record)
            protocol = protocol_label(
                record["protocol"], record.get("shot", DEFAULT_SHOT), record.get("draws", DEFAULT_DRAWS)
            )
            result = RecordedResult(
                run,
                _config(path.parent),
                protocol,
                record.get("reranked"),
                cmc,
                mean_ap,
                mean_inp,
                spread,
                record.get("data") if isinstance(record.get("data"), dict) else None,
            )
            if result.label in labels:
                what = protocol_label(protocol, reranked=result.reranked)
                raise UserError(f"{path}: holds the results of {what} more than once")
            labels.add(result.label)
            recorded.append(result)
    return recorded


def results_to_compare(inputs: Sequence[str | Path], protocols: Sequence[str] | None = None) -> list[RecordedResult]:
    """The results of :func:`read_results` of ``protocols`` (default: all), checked by :func:`require_comparable`.

    Args:
        inputs: results.json files or run folders.
        protocols: The protocols to keep; None: all.

    Returns:
        The results of those protocols.

    Raises:
        UserError: Where a protocol is not in the results, or the results do not compare.
    """
    results = read_results(inputs)
    found = list(dict.fromkeys(result.protocol for result in results))
    unknown = [protocol for protocol in protocols or [] if protocol not in found]
    if unknown:
        raise UserError(f"--protocol {unknown[0]}: the results hold {', '.join(found)}")
    chosen = [result for result in results if not protocols or result.protocol in protocols]
    require_comparable(chosen)
    return chosen


def require_comparable(results: Sequence[RecordedResult]) -> None:
    """A UserError unless the runs of ``results`` can stand side by side.

    They must hold figures of one dataset folder (where they record its fingerprint) and every
    protocol scored for every run.

    Args:
        results: The results.

    Raises:
        UserError: Where they cannot stand side by side.
    """
    from vireid.datasets import describe_fingerprint  # here: the dataset registry imports the readers

    recorded = [result for result in results if result.data is not None]
    for result in recorded[1:]:
        if result.data != recorded[0].data:
            raise UserError(
                f"{result.run}: results of other data than {recorded[0].run} ({describe_fingerprint(result.data)} "
                f"vs {describe_fingerprint(recorded[0].data)}); compare runs scored on one dataset folder"
            )
    protocols_of: dict[str, set[str]] = {}
    for result in results:
        protocols_of.setdefault(result.run, set()).add(result.protocol)
    every = set().union(*protocols_of.values())
    for run, protocols in protocols_of.items():
        missing = sorted(every - protocols)
        if missing:
            raise UserError(
                f"{run}: has no results of {', '.join(missing)} (it holds {', '.join(sorted(protocols))}); "
                "figures of different protocols do not compare: choose the protocols every run holds with --protocol"
            )


__all__ = [
    "RecordedResult",
    "protocol_label",
    "read_results",
    "require_comparable",
    "results_path",
    "results_to_compare",
    "run_name",
]
