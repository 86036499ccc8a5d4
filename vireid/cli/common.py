"""What several commands share: parsers of flag values, the sub-command's help page, the model
and re-ranking options."""

from __future__ import annotations

import argparse
import textwrap

from vireid.modality import Modality
from vireid.ranges import Range


def parse_size(text: str) -> tuple[int, int]:
    height, separator, width = text.lower().partition("x")
    if not separator or not height.isdigit() or not width.isdigit():
        raise argparse.ArgumentTypeError(f"expected HxW such as 128x64, got {text!r}")
    return int(height), int(width)


def number_in(accepted: Range, kind: type[int] | type[float] = int):
    """A parser of a flag's number: a ``kind`` within ``accepted`` (NaN and infinity are in no range),
    else argparse's one-line error naming the flag, the range and the text."""

    def parse(text: str) -> int | float:
        try:
            number = kind(text)
        except ValueError:
            number = None
        if number is None or number not in accepted:
            integer = " (an integer)" if kind is int else ""
            raise argparse.ArgumentTypeError(f"expected {accepted.describe()}{integer}, got {text!r}")
        return number

    return parse


COUNT = number_in(Range(1))
"""A flag counting things (identities, lists, matches): at least 1."""
NON_NEGATIVE = number_in(Range(0))
"""A flag that may be 0 (worker processes: 0 works in this process; seeds; trial numbers)."""


def parse_modality(text: str) -> Modality:
    try:
        return Modality[text.upper()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"expected visible or infrared, got {text!r}") from None


def number_list(what: str):
    """A parser of '0-9', '3' or '0,2,5' as a list of numbers (``what``: trials, seeds)."""

    def parse(text: str) -> list[int]:
        numbers: list[int] = []
        for part in text.split(","):
            first, dash, last = part.strip().partition("-")
            if not first.isdigit() or (dash and not last.isdigit()) or (dash and int(last) < int(first)):
                raise argparse.ArgumentTypeError(f"expected {what} such as 0-9 or 0,2,5 (first ≤ last), got {text!r}")
            numbers += list(range(int(first), int(last) + 1)) if dash else [int(first)]
        return numbers

    return parse


parse_trials = number_list("trials")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override the checkpoint's config, e.g. test.flip=true (repeatable)",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or progress lines")


def add_command(commands, name: str, summary: str, description: str, examples: str) -> argparse.ArgumentParser:
    """A sub-command whose --help page has a description and examples."""
    return commands.add_parser(
        name,
        help=summary,
        description=textwrap.fill(f"{summary[0].upper()}{summary[1:]}. {description}", 79),
        epilog=f"examples:\n{examples}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_plugin_option(parser: argparse.ArgumentParser) -> None:
    """--plugin FILE.py, repeatable. main has imported the files before the parser was built (the
    choices of --protocol, --dataset and --layout come from the registries), so a command finds
    them in ``arguments.plugin`` only to keep them (vireid train writes them into the run's config)."""
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="FILE.py",
        help="a Python file that registers methods or datasets (repeatable)",
    )


def add_rerank_options(parser: argparse.ArgumentParser, also: str = "") -> None:
    """--rerank and its settings (each of which asks for re-ranking too)."""
    parser.add_argument(
        "--rerank",
        action="store_true",
        help=f"also score k-reciprocal re-ranked distances, in rows of their own{also}",
    )
    from vireid.config import value_range

    parser.add_argument(
        "--k1",
        type=number_in(value_range("test.rerank_k1")),
        help="re-ranking: k-reciprocal neighbourhood (default 20)",
    )
    parser.add_argument(
        "--k2", type=number_in(value_range("test.rerank_k2")), help="re-ranking: local query expansion (default 6)"
    )
    parser.add_argument(
        "--lambda",
        dest="rerank_lambda",
        type=number_in(value_range("test.rerank_lambda"), float),
        help="re-ranking: weight of the original distance (default 0.3)",
    )


def rerank_asked(arguments: argparse.Namespace) -> bool:
    """Whether re-ranking is asked for: --rerank, or one of its settings."""
    return arguments.rerank or any(value is not None for value in (arguments.k1, arguments.k2, arguments.rerank_lambda))


def rerank_settings(arguments: argparse.Namespace):
    """The re-ranking of --k1, --k2, --lambda, the defaults where not given."""
    from vireid.evaluation.rerank import RerankSettings

    given = {"k1": arguments.k1, "k2": arguments.k2, "lambda_value": arguments.rerank_lambda}
    return RerankSettings(**{name: value for name, value in given.items() if value is not None})
