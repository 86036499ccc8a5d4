"""The documentation cannot drift from the CLI: every vireid command shown in a code block of the
README, CONTRIBUTING.md or the docs site parses with vireid's own parser (the subcommand, its
flags and their values exist), and the pages link nothing outside the repository."""

import re
import shlex
from pathlib import Path

import pytest

from vireid.cli import build_parser
from vireid.datasets import DATASETS

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", ROOT / "CONTRIBUTING.md", *(ROOT / "docs").rglob("*.md")])
CODE_BLOCK = re.compile(r"^```([a-z]*)\n(.*?)^```", re.S | re.M)
SHELL_LANGUAGES = ("", "bash", "console", "sh", "shell")
COMMAND_START = re.compile(r"^(?:\$ )?\s*(?:[A-Z_]+=\S+ )*(?:\.venv/bin/)?vireid |-m vireid\.cli ")
REDIRECTION = re.compile(r"^\d?>{1,2}")


def _shell_lines(text: str) -> list[str]:
    """The command lines of every shell code block, continuation lines (ending in a backslash)
    joined; in a block that shows output, the lines after a ``$`` prompt alone."""
    lines = []
    for language, body in CODE_BLOCK.findall(text):
        if language in SHELL_LANGUAGES:
            block = re.sub(r"\\\n\s*", " ", body).splitlines()
            prompted = [line for line in block if line.startswith("$ ")]
            lines.extend(prompted or block)
    return lines


def _vireid_arguments(line: str) -> list[str] | None:
    """The arguments after ``vireid`` (or ``-m vireid.cli``) on a shown command line, None for other lines.

    Shell syntax around the command is dropped: a ``$`` prompt, environment assignments, comments,
    redirections and what follows ``|`` or ``;``. Optional parts written as ``[--flag value]`` are
    taken as given, and ``...`` (more of the same) is left out.
    """
    match = COMMAND_START.search(line)
    if not match:
        return None
    tokens = shlex.split(line[match.end() :], comments=True)
    arguments, optional = [], False
    for token in tokens:
        if token in ("|", ";", "&&") or REDIRECTION.match(token):
            break
        if token.startswith("[-"):
            token, optional = token[1:], True
        if optional and token.endswith("]"):
            token, optional = token[:-1], False
        if token != "...":
            arguments.append(token)
    return arguments


def _shown_commands() -> list[tuple[str, list[str]]]:
    commands = []
    for page in PAGES:
        for line in _shell_lines(page.read_text()):
            arguments = _vireid_arguments(line)
            if arguments is not None:
                commands.append((f"{page.relative_to(ROOT)}: {line.strip()}", arguments))
    return commands


SHOWN = _shown_commands()


@pytest.fixture(scope="module")
def parser_with_the_docs_dataset():
    """vireid's parser, with the "Add a dataset" page's protocol among the choices (the page
    registers it before using it)."""
    code = re.search(r"```python\n(.*?)```", (ROOT / "docs" / "add-a-dataset.md").read_text(), re.S).group(1)
    registered = dict(DATASETS)
    try:
        exec(compile(code, "add-a-dataset.md", "exec"), {"__name__": "mylayout"})
        yield build_parser()
    finally:
        DATASETS.clear()
        DATASETS.update(registered)


def test_the_pages_show_many_commands_of_every_kind():
    subcommands = {arguments[0] for _, arguments in SHOWN if arguments}
    assert len(SHOWN) > 50
    assert {"train", "test", "evaluate", "sweep", "import", "extract", "index", "search", "compare"} <= subcommands


@pytest.mark.parametrize("where, arguments", SHOWN, ids=[where for where, _ in SHOWN])
def test_every_shown_command_parses(where, arguments, parser_with_the_docs_dataset, capsys):
    try:
        parser_with_the_docs_dataset.parse_args(arguments)
    except SystemExit as exited:
        assert exited.code == 0, f"{where}\n{capsys.readouterr().err.strip().splitlines()[-1]}"


@pytest.mark.parametrize(
    "line, arguments",
    [
        ("$ vireid test runs/x --rerank", ["test", "runs/x", "--rerank"]),
        ("vireid configs sysu_full > my.yaml   # a copy", ["configs", "sysu_full"]),
        (
            "  vireid synth --out d [--ids 120 --seed 0] --layout sysu",
            ["synth", "--out", "d", "--ids", "120", "--seed", "0", "--layout", "sysu"],
        ),
        ("CUDA_VISIBLE_DEVICES=1 vireid sweep c --grid a=1,2", ["sweep", "c", "--grid", "a=1,2"]),
        ("torchrun --nproc_per_node=4 -m vireid.cli train sysu_full", ["train", "sysu_full"]),
        (
            "vireid evaluate --features a.npz b.npz ... --protocol p",
            ["evaluate", "--features", "a.npz", "b.npz", "--protocol", "p"],
        ),
        ("vireid train c --set train.milestones=[20,50]", ["train", "c", "--set", "train.milestones=[20,50]"]),
        ("make demo   # sets up .venv", None),
    ],
)
def test_shown_lines_become_vireid_arguments(line, arguments):
    assert _vireid_arguments(line) == arguments


def test_a_flag_the_parser_does_not_know_is_caught(parser_with_the_docs_dataset, capsys):
    with pytest.raises(SystemExit) as exited:
        parser_with_the_docs_dataset.parse_args(_vireid_arguments("vireid test runs/x --re-rank"))
    assert exited.value.code == 2 and "unrecognized arguments: --re-rank" in capsys.readouterr().err


def test_the_pages_link_nothing_outside_the_repository():
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)", page.read_text()):
            assert "://" not in target and "../shared" not in target, f"{page.relative_to(ROOT)} links {target}"
            if page.parent == ROOT / "docs" or ROOT / "docs" in page.parents:
                assert not target.startswith("../") or (page.parent / target.split("#")[0]).resolve().is_relative_to(
                    ROOT / "docs"
                ), f"{page.relative_to(ROOT)} links {target} outside the docs site"
