"""Commands that list what vireid has: configs (the shipped configs), methods and datasets (the
registered ones: built in, from plugin files and from installed distributions)."""

from __future__ import annotations

import argparse

from vireid.cli.common import add_command
from vireid.errors import UserError


def command_configs(arguments: argparse.Namespace) -> int:
    from vireid.config import shipped_configs

    shipped = shipped_configs()
    if arguments.name:
        name = arguments.name.removesuffix(".yaml")
        if name not in shipped:
            raise UserError(f"{arguments.name}: not a shipped config; expected one of {', '.join(sorted(shipped))}")
        print(shipped[name].read_text(), end="")
        return 0
    width = max(len(name) for name in shipped)
    for name in sorted(shipped):
        print(f"{name:<{width}}  {config_description(shipped[name].read_text())}")
    return 0


def config_description(text: str) -> str:
    """A config file's description: the first sentence of its leading comment lines."""
    comments = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        comments.append(line.removeprefix("#").strip())
    joined = " ".join(comments)
    end = joined.find(". ")
    return joined if end < 0 else joined[: end + 1]


def add_configs_parser(commands: argparse._SubParsersAction) -> None:
    configs = add_command(
        commands,
        "configs",
        "list the shipped configs, or print one",
        "Shipped configs are found by name by vireid train; print one to start your own from it.",
        "  vireid configs\n  vireid configs sysu_full > my_config.yaml",
    )
    configs.add_argument("name", nargs="?", help="a shipped config to print (default: list them all)")
    configs.set_defaults(handler=command_configs)


def _print_rows(rows: list[tuple[str, str, str]]) -> None:
    """Rows of name, description and source, in aligned columns."""
    name_width = max(len(name) for name, _, _ in rows)
    description_width = max(len(description) for _, description, _ in rows)
    for name, description, source in rows:
        print(f"{name:<{name_width}}  {description:<{description_width}}  {source}")


def command_methods(arguments: argparse.Namespace) -> int:
    from vireid.method import registered_methods

    _print_rows([(method.name, method.description, method.source) for method in registered_methods().values()])
    return 0


def add_methods_parser(commands: argparse._SubParsersAction) -> None:
    methods = add_command(
        commands,
        "methods",
        "list the registered methods: name, description, where each comes from",
        "A config picks one with model.method. Besides the built-in ones: those that plugin files (--plugin, "
        "or a config's plugins) and installed distributions (entry points of the group vireid.methods) register.",
        "  vireid methods\n  vireid methods --plugin my_method.py",
    )
    methods.set_defaults(handler=command_methods)


def command_datasets(arguments: argparse.Namespace) -> int:
    from vireid.datasets import DATASETS

    _print_rows([(dataset.name, dataset.description, dataset.source) for dataset in DATASETS.values()])
    return 0


def add_datasets_parser(commands: argparse._SubParsersAction) -> None:
    datasets = add_command(
        commands,
        "datasets",
        "list the registered datasets: name, description, where each comes from",
        "A config picks one with data.dataset. Besides the built-in ones: those that plugin files (--plugin, "
        "or a config's plugins) and installed distributions (entry points of the group vireid.datasets) register.",
        "  vireid datasets\n  vireid datasets --plugin my_dataset.py",
    )
    datasets.set_defaults(handler=command_datasets)
