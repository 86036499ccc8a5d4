"""Commands that write or read a dataset folder: synth (a synthetic dataset in an official layout)
and check (every image read once)."""

from __future__ import annotations

import argparse

from vireid.cli.common import COUNT, NON_NEGATIVE, add_command, parse_size
from vireid.synthetic.writer import DEFAULT_SIZE, synthetic_layouts, write_synthetic_dataset

SYNTH_SEED = 0


def command_synth(arguments: argparse.Namespace) -> int:
    summary = write_synthetic_dataset(
        arguments.layout,
        arguments.out,
        identities=arguments.ids,
        images_per_id=arguments.images_per_id,
        seed=arguments.seed,
        size=arguments.size,
        workers=arguments.workers,
        force=arguments.force,
    )
    print(
        f"wrote a synthetic {summary.layout} dataset to {summary.root}: "
        f"{summary.identities} identities, {summary.images} images in {summary.seconds:.1f} s"
    )
    return 0


def add_synth_parser(commands: argparse._SubParsersAction) -> None:
    synth = add_command(
        commands,
        "synth",
        "write a synthetic dataset in an official layout",
        "The real readers run on it: folder names, id and index files and image formats are the official ones.",
        "  vireid synth --layout sysu --out data/SYSU-MM01\n  vireid "
        "synth --layout regdb --out data/RegDB --ids 40 --size 128x64",
    )
    layouts = synthetic_layouts()
    synth.add_argument("--layout", required=True, choices=list(layouts), help="which dataset's layout to write")
    synth.add_argument("--out", required=True, help="folder to create (the dataset root)")
    defaults = {
        what: ", ".join(f"{getattr(layout, what)} {name}" for name, layout in layouts.items())
        for what in ("identities", "images_per_id")
    }
    synth.add_argument("--ids", type=COUNT, help=f"number of identities (default: {defaults['identities']})")
    synth.add_argument(
        "--images-per-id",
        type=COUNT,
        help=f"images per identity in EACH modality (default: {defaults['images_per_id']})",
    )
    synth.add_argument(
        "--seed",
        type=NON_NEGATIVE,
        default=SYNTH_SEED,
        help=f"random seed; same seed, same files (default {SYNTH_SEED})",
    )
    synth.add_argument(
        "--size",
        type=parse_size,
        default=DEFAULT_SIZE,
        help=f"image size HxW (default {DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]})",
    )
    synth.add_argument("--workers", type=NON_NEGATIVE, help="worker processes (default: number of cores, at most 8)")
    synth.add_argument(
        "--force", action="store_true", help="replace the folder if it holds a synthetic dataset of vireid"
    )
    synth.set_defaults(handler=command_synth, outputs={"out": "folder"})


def command_check(arguments: argparse.Namespace) -> int:
    from vireid.dataset_check import check_dataset

    report = check_dataset(
        arguments.dataset, arguments.root, arguments.trial, decode=True, progress=not arguments.quiet
    )
    for line in report.lines():
        print(line)
    total = sum(report.counts.values())
    print(
        f"{arguments.root}: {total} images checked, {len(report.unusable)} cannot be used, "
        f"{len(report.deep)} of another bit depth (read by their range)"
    )
    return 1 if report.unusable else 0


def add_check_parser(commands: argparse._SubParsersAction) -> None:
    from vireid.datasets import dataset_names

    check = add_command(
        commands,
        "check",
        "read every image of a dataset once and report what cannot be used",
        "Counts the images per split, modality and camera, and names every unreadable or too small image "
        "(exit code 1 if there is any) and every image of another bit depth (16-bit, float). A training run "
        "does the cheap part of this (file headers only) before its first step.",
        "  vireid check data/SYSU-MM01\n  vireid check data/RegDB --dataset regdb --trial 3",
    )
    check.add_argument("root", help="the dataset's root folder")
    check.add_argument("--dataset", default="sysu", choices=dataset_names(), help="its layout (default sysu)")
    check.add_argument(
        "--trial", type=NON_NEGATIVE, help="one model per trial (RegDB): only this trial's splits (default: all)"
    )
    check.add_argument("--quiet", action="store_true", help="no progress bar or progress lines")
    check.set_defaults(handler=command_check)
