"""Published figures (``figures.yaml`` beside this file): what papers and repositories report,
for ``vireid compare --published`` to put beside a user's runs. Each entry is a method with its
paper, venue, year and code, and a row per protocol with the figures as published, whether they
are re-ranked, and the row's source. The file is checked when read: a wrong key, a protocol vireid
does not know or a figure outside 0-100 names the entry and the key."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from vireid.errors import UserError
from vireid.evaluation.compare import COLUMNS

FIGURE_NAMES = COLUMNS  # the columns of vireid compare
ENTRY_KEYS = ("name", "method", "paper", "venue", "year", "code", "results")
ROW_KEYS = ("protocol", *FIGURE_NAMES, "reranked", "source")


@dataclass(frozen=True)
class PublishedRow:
    """One method's published figures on one protocol (percent; None where not published)."""

    name: str  # the entry's name: what --published picks
    method: str
    citation: str  # "venue year"
    protocol: str
    figures: dict[str, float | None]
    reranked: bool
    source: str


def published_file() -> Path:
    return Path(str(resources.files("vireid.published") / "figures.yaml"))


def _checked_row(where: str, row: object, protocols: set[str]) -> dict:
    if not isinstance(row, dict) or set(row) != set(ROW_KEYS):
        found = sorted(row) if isinstance(row, dict) else type(row).__name__
        raise UserError(f"{where}: expected the keys {', '.join(ROW_KEYS)}, found {found}")
    if row["protocol"] not in protocols:
        raise UserError(f"{where}.protocol: expected one of {', '.join(sorted(protocols))}, got {row['protocol']!r}")
    for name in FIGURE_NAMES:
        value = row[name]
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100
        ):
            raise UserError(f"{where}.{name}: expected a percentage from 0 to 100 or null, got {value!r}")
    if not isinstance(row["reranked"], bool) or not isinstance(row["source"], str) or not row["source"]:
        raise UserError(f"{where}: expected reranked true or false and a source in words")
    return row


def load_published(path: str | Path | None = None) -> list[PublishedRow]:
    """Every published row of the file (default: the shipped one), checked."""
    from vireid.datasets import protocol_names

    path = Path(path) if path else published_file()
    entries = yaml.safe_load(path.read_text())
    if not isinstance(entries, list):
        raise UserError(f"{path}: expected a list of methods")
    protocols, rows, names = set(protocol_names()), [], set()
    for position, entry in enumerate(entries):
        where = f"{path}: entry {position + 1}"
        if not isinstance(entry, dict) or set(entry) != set(ENTRY_KEYS):
            found = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
            raise UserError(f"{where}: expected the keys {', '.join(ENTRY_KEYS)}, found {found}")
        if entry["name"] in names:
            raise UserError(f"{where}: the name {entry['name']!r} again; each method once")
        names.add(entry["name"])
        citation = " ".join(str(part) for part in (entry["venue"], entry["year"]) if part)
        for number, row in enumerate(entry["results"] or [], 1):
            row = _checked_row(f"{where} ({entry['name']}) result {number}", row, protocols)
            figures = {name: None if row[name] is None else float(row[name]) for name in FIGURE_NAMES}
            rows.append(
                PublishedRow(
                    entry["name"], entry["method"], citation, row["protocol"], figures, row["reranked"], row["source"]
                )
            )
    return rows


def published_rows(names: list[str] | None, protocols: list[str]) -> list[PublishedRow]:
    """The published rows of the methods ``names`` (all where empty) on ``protocols``; an unknown
    name is a UserError listing the known ones."""
    rows = load_published()
    known = list(dict.fromkeys(row.name for row in rows))
    unknown = [name for name in names or [] if name not in known]
    if unknown:
        raise UserError(f"--published: unknown {', '.join(unknown)}; the published methods: {', '.join(known)}")
    return [row for row in rows if (not names or row.name in names) and row.protocol in protocols]
