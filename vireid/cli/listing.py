"""Commands that list what vireid has: configs (the shipped configs)."""

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
    for name in sorted(shipped):
        first_line = shipped[name].read_text().splitlines()[0]
        print(f"{name:<12} {first_line.removeprefix('#').strip()}")
    return 0


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
