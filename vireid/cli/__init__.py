"""The ``vireid`` command: one entry point with a sub-command per job, one module per group of them
(data, training, scoring, retrieval, listing; common: what they share). Here: the parser of them all,
and ``main``, which runs one and turns a user's error into one line."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import Sequence

from vireid import __version__
from vireid.atomic import require_writable, write_failure, written_path
from vireid.cli.common import add_plugin_option
from vireid.cli.data import add_check_parser, add_synth_parser
from vireid.cli.importing import add_import_parser
from vireid.cli.listing import add_configs_parser, add_datasets_parser, add_methods_parser
from vireid.cli.retrieval import add_export_parser, add_extract_parser, add_index_parser, add_search_parser
from vireid.cli.scoring import add_compare_parser, add_evaluate_parser, add_plot_parser, add_test_parser
from vireid.cli.training import add_demo_parser, add_sweep_parser, add_train_parser
from vireid.errors import DatasetWarning, Interrupted, Terminated, UserError
from vireid.signals import sigterm_as_interrupt

_PYTHON_WARNING_FORMAT = warnings.formatwarning


def build_parser() -> argparse.ArgumentParser:
    from vireid.datasets import protocol_names as registered_protocols

    protocol_names = registered_protocols()
    parser = argparse.ArgumentParser(
        prog="vireid",
        description=(
            "Visible-infrared person re-identification toolkit. Each COMMAND has its own --help page with examples."
        ),
        epilog=(
            "examples:\n  vireid demo\n  vireid train sysu_full --set "
            "data.root=/data/SYSU-MM01\n  vireid test runs/sysu_full/best.pt"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"vireid {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_synth_parser(commands)
    add_evaluate_parser(commands, protocol_names)
    add_train_parser(commands)
    add_sweep_parser(commands)
    add_test_parser(commands, protocol_names)
    add_extract_parser(commands)
    add_index_parser(commands)
    add_search_parser(commands)
    add_export_parser(commands)
    add_import_parser(commands)
    add_plot_parser(commands, protocol_names)
    add_compare_parser(commands)
    add_configs_parser(commands)
    add_methods_parser(commands)
    add_datasets_parser(commands)
    add_check_parser(commands)
    add_demo_parser(commands)
    for command in commands.choices.values():
        add_plugin_option(command)
    return parser


def named_plugin_files(argv: Sequence[str]) -> list[str]:
    """The files of ``--plugin FILE`` and ``--plugin=FILE`` in ``argv`` (up to a ``--``), read before
    the parser is built."""
    files = []
    for position, argument in enumerate(argv):
        if argument == "--":
            break
        if argument == "--plugin" and position + 1 < len(argv):
            files.append(argv[position + 1])
        elif argument.startswith("--plugin="):
            files.append(argument.removeprefix("--plugin="))
    return files


def load_plugins(files: Sequence[str]) -> None:
    """The installed distributions' plugins and ``files``, registered (each once)."""
    from vireid.plugins import load_installed_plugins, load_plugin_files

    load_installed_plugins()
    load_plugin_files(list(files))


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """vireid's own warnings (odd datasets) as one line; any other as Python prints it."""
    if issubclass(category, DatasetWarning):
        return f"vireid: warning: {message}\n"
    return _PYTHON_WARNING_FORMAT(message, category, filename, lineno, line)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a user error, an interruption or a closed pipe ends in one line, never a traceback."""
    warnings.formatwarning = _one_line_warning
    argv = sys.argv[1:] if argv is None else list(argv)
    try:  # before the parser: its choices of protocols, datasets and layouts include the plugins'
        load_plugins(named_plugin_files(argv))
    except UserError as error:
        print(f"vireid: error: {error}", file=sys.stderr)
        return 2
    arguments = build_parser().parse_args(argv)
    try:
        with sigterm_as_interrupt():
            load_plugins(arguments.plugin)  # loaded already, unless --plugin was abbreviated (--plug)
            _check_before_working(arguments)
            code = arguments.handler(arguments)
            sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except UserError as error:
        print(f"vireid {arguments.command}: error: {_first_cause(error)}", file=sys.stderr)
        return error.exit_code if isinstance(error, Interrupted) else 2
    except KeyboardInterrupt as stop:
        terminated = isinstance(stop, Terminated)
        print(f"vireid {arguments.command}: {'terminated (SIGTERM)' if terminated else 'interrupted'}", file=sys.stderr)
        return 143 if terminated else 130
    except BrokenPipeError:  # the reader went away (``vireid search ... | head -1``): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as error:  # a write the system refused outside atomic_path (logs, a synthetic dataset)
        failure = write_failure(error)
        if failure is None:
            raise
        print(
            f"vireid {arguments.command}: error: {_written(arguments, failure)} ({failure.strerror})", file=sys.stderr
        )
        return 2


def _written(arguments: argparse.Namespace, failure: OSError) -> str:
    """What a refused write was writing: the command's outputs as given, else the failing file."""
    outputs = [str(getattr(arguments, name)) for name in getattr(arguments, "outputs", {}) if getattr(arguments, name)]
    return f"{', '.join(outputs) or failure.filename or 'a file'}: could not be written"


def _check_before_working(arguments: argparse.Namespace) -> None:
    """The device exists and every output can be written, before any work is done (a folder given
    as a symbolic link: its target, the link staying)."""
    for name, kind in getattr(arguments, "outputs", {}).items():
        if getattr(arguments, name, None):
            require_writable(getattr(arguments, name), kind)
            if kind == "folder":  # a link's target is the folder the command creates and fills
                setattr(arguments, name, str(written_path(Path(getattr(arguments, name)))))
    if getattr(arguments, "device", None):
        from vireid.engine.distributed import checked_device

        arguments.device = checked_device(arguments.device)


def _first_cause(error: UserError) -> str:
    """The error's message; for one raised in a DataLoader worker, the worker's own message
    (PyTorch wraps it in "Caught ... in DataLoader worker process N" and a traceback)."""
    message = str(error)
    if "\nOriginal Traceback" not in message:
        return message
    raised = f"\n{type(error).__module__}.{type(error).__qualname__}: "  # "vireid.errors.DatasetError: "
    return message.rsplit(raised, 1)[-1].strip()
