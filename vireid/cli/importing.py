"""`vireid import`: a checkpoint saved by a method's reference code, as a vireid checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

from vireid.cli.common import add_command
from vireid.errors import UserError


def command_import(arguments: argparse.Namespace) -> int:
    from vireid.engine.reference_import import import_reference, reported_line

    out = Path(arguments.out)
    if out.exists() and not arguments.force:
        raise UserError(f"{out}: exists already; --force replaces it")
    checkpoint = import_reference(
        arguments.file,
        arguments.format,
        arguments.dataset,
        out,
        arguments.num_classes,
        arguments.plugin,
        arguments.trial,
    )
    imported = checkpoint.provenance["imported"]
    print(
        f"wrote {out}: {checkpoint.config['name']} ({checkpoint.config['model']['method']}, "
        f"{checkpoint.num_classes} identities{_trial(checkpoint)}) from {arguments.file} "
        f"(sha256 {imported['sha256'][:12]}...)"
    )
    print(reported_line(checkpoint))
    return 0


def _trial(checkpoint) -> str:
    from vireid.datasets import get_dataset

    one_per_trial = get_dataset(checkpoint.dataset).one_model_per_trial
    return f", trial {checkpoint.config['data']['trial']}" if one_per_trial else ""


def add_import_parser(commands: argparse._SubParsersAction) -> None:
    from vireid.datasets import dataset_names
    from vireid.engine.reference_import import reference_formats

    formats = reference_formats()
    command = add_command(
        commands,
        "import",
        "turn a checkpoint saved by a method's reference code into a vireid checkpoint",
        "The file is read without running anything in it; each tensor its network uses is renamed onto "
        "vireid's network of that method and dataset, and every tensor must fit, or nothing is written. "
        "vireid test (with --root DATASET), evaluate, extract, search and export then read the result as any "
        "checkpoint. Formats: " + "; ".join(f"{name}: {fmt.description}" for name, (_, fmt) in formats.items()) + ".",
        "  vireid import sysu_agw_p4_n8_lr_0.1_seed_0_best.t --format agw --dataset sysu --out agw_sysu.pt\n"
        "  vireid import regdb_deen_p4_n6_lr_0.1_seed_0_trial_1_best.t --format deen --dataset regdb "
        "--out deen_regdb_1.pt\n"
        "  vireid import my_model.t --format agw --dataset sysu --num-classes 296 --out agw_296.pt --force",
    )
    command.add_argument("file", help="the reference's checkpoint (.t)")
    command.add_argument("--format", required=True, choices=sorted(formats), help="whose code saved it")
    command.add_argument("--dataset", required=True, choices=dataset_names(), help="the dataset it was trained on")
    command.add_argument(
        "--num-classes",
        type=int,
        help="the identities its classifier must have (default: the dataset's official training split)",
    )
    command.add_argument(
        "--trial", type=int, help="RegDB: the trial it was trained on (default: the trial_N in the file's name)"
    )
    command.add_argument("--out", required=True, help="the vireid checkpoint to write (.pt)")
    command.add_argument("--force", action="store_true", help="replace --out if it exists")
    command.set_defaults(handler=command_import, outputs={"out": "file"})
