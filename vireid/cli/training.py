"""Commands that train: train (a config, a resumed run, or one run per seed) and demo (the whole
pipeline on a generated dataset)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from vireid.atomic import require_writable
from vireid.cli.common import NON_NEGATIVE, add_command, number_list
from vireid.errors import Interrupted, Terminated, UserError

if TYPE_CHECKING:
    from vireid.config import ExperimentConfig


def command_train(arguments: argparse.Namespace) -> int:
    from vireid.engine.checkpoint import load_checkpoint
    from vireid.engine.run_folder import unfinished_run
    from vireid.recipe import load_config

    if arguments.pretrained:
        arguments.set.append(f"model.pretrained={arguments.pretrained}")
    if bool(arguments.config) == bool(arguments.resume):
        raise UserError("give a CONFIG to start a run, or --resume CHECKPOINT (without CONFIG) to continue one")
    if arguments.resume:
        if arguments.seeds:
            raise UserError("--seeds starts (or continues) every seed's run from CONFIG; give CONFIG, not --resume")
        config = load_config(None, arguments.set, base=load_checkpoint(arguments.resume).config)
        run_dir = Path(arguments.out) if arguments.out else Path(arguments.resume).parent
    else:
        config = load_config(arguments.config, arguments.set, plugins=arguments.plugin)
        run_dir = Path(arguments.out) if arguments.out else Path("runs") / config.name
    if not arguments.seeds:
        _train_run(config, run_dir, arguments.resume, arguments)
        return 0
    for seed in dict.fromkeys(arguments.seeds):  # each seed once
        seed_config = load_config(arguments.config, [*arguments.set, f"train.seed={seed}"], plugins=arguments.plugin)
        seed_dir = run_dir / f"seed{seed}"
        resume = unfinished_run(seed_dir, seed_config)
        if resume is not False:
            _train_run(seed_config, seed_dir, resume, arguments)
    if os.environ.get("RANK", "0") == "0":
        print(f"seeds {', '.join(map(str, arguments.seeds))} in {run_dir}; score them together: vireid test {run_dir}")
    return 0


def _train_run(
    config: ExperimentConfig, run_dir: Path, resume: str | Path | None, arguments: argparse.Namespace
) -> None:
    from vireid.engine.trainer import train

    if config.train.cache_dir:
        try:
            require_writable(config.train.cache_dir, "folder")
        except UserError as error:
            raise UserError(f"train.cache_dir: {error}") from None
    try:
        last = train(config, run_dir, resume=resume, device=arguments.device, progress=not arguments.quiet)
    except KeyboardInterrupt as stop:
        last = run_dir / "last.pt"
        hint = f"continue with vireid train --resume {last}" if last.exists() else "no epoch had finished"
        if arguments.seeds:
            hint = f"run the same command again to continue ({hint.replace('continue with ', 'or ')})"
        raise _stopped(stop, hint) from None
    if os.environ.get("RANK", "0") == "0":
        print(f"run folder: {run_dir} (last checkpoint: {last})")


def _stopped(stop: KeyboardInterrupt, hint: str) -> Interrupted:
    """The one-line error of a run stopped by Ctrl-C or SIGTERM, with how to continue it."""
    if isinstance(stop, Terminated):
        return Interrupted(f"terminated (SIGTERM); {hint}", exit_code=143)
    return Interrupted(f"interrupted; {hint}")


def add_train_parser(commands: argparse._SubParsersAction) -> None:
    train = add_command(
        commands,
        "train",
        "train a model from a YAML config (or resume a run)",
        "CONFIG is a YAML file or the name of a shipped config (vireid configs lists them). "
        "The run folder gets config.yaml, metrics.jsonl, TensorBoard events, last.pt and best.pt.",
        "  vireid train sysu_full --set data.root=/data/SYSU-MM01\n"
        "  vireid train my_config.yaml --set train.lr=1e-3 --out runs/try1\n"
        "  vireid train --resume runs/sysu_full/last.pt\n"
        "  vireid train sysu_full --seeds 0,1,2 --out runs/sysu_full_seeds",
    )
    train.add_argument("config", nargs="?", help="YAML config file, or a shipped config's name such as sysu_full")
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set data.root=/data/SYSU-MM01 (repeatable)",
    )
    train.add_argument("--out", help="run folder (default runs/<config name>, or the resumed run's folder)")
    train.add_argument(
        "--seeds",
        type=number_list("seeds"),
        help="train one run per seed (train.seed) into OUT/seed<N>, e.g. 0,1,2; run again to continue or "
        "finish them; vireid test OUT gives mean ± std over seeds",
    )
    train.add_argument("--resume", metavar="CHECKPOINT", help="continue a run exactly from its checkpoint")
    train.add_argument(
        "--pretrained",
        metavar="PATH",
        help="ImageNet weights from a local torchvision state-dict file (same as --set model.pretrained=PATH)",
    )
    train.add_argument("--device", default="auto", help="auto (GPU if present), cpu, cuda")
    train.add_argument("--quiet", action="store_true", help="no progress bar or progress lines")
    train.set_defaults(handler=command_train, outputs={"out": "folder"})


def command_demo(arguments: argparse.Namespace) -> int:
    from vireid.demo import run_demo

    run_demo(Path(arguments.out), workers=arguments.workers, compare=arguments.compare)
    return 0


def add_demo_parser(commands: argparse._SubParsersAction) -> None:
    demo = add_command(
        commands,
        "demo",
        "the whole pipeline on a generated dataset",
        "Generates a synthetic SYSU-MM01 set (once), trains the paper's model with the tiny config on the CPU, "
        "tests it with all 10 trials, plainly and re-ranked, and puts it side by side with a hand-made "
        "descriptor and chance.",
        "  vireid demo\n  vireid demo --compare   # AGW and CAJ trained and compared too (about 3 times longer)\n"
        "  vireid demo --out runs/demo2 --workers 2",
    )
    demo.add_argument("--out", default="runs/demo", help="run folder (default runs/demo)")
    demo.add_argument("--workers", type=NON_NEGATIVE, help="worker processes for data generation")
    demo.add_argument(
        "--compare", action="store_true", help="also train and test the tiny AGW baseline and CAJ, and compare them"
    )
    demo.set_defaults(handler=command_demo, outputs={"out": "folder"})


def command_sweep(arguments: argparse.Namespace) -> int:
    from vireid.sweep import parse_grid, run_sweep, sweep_points

    grid = parse_grid(arguments.grid)
    points = sweep_points(arguments.config, grid, arguments.seeds, arguments.set)
    out = Path(arguments.out)
    if arguments.dry_run:
        print(f"{len(points)} runs ({len(points) // arguments.seeds} points x {arguments.seeds} seeds) into {out}:")
        for point in points:
            print(f"  {out / point.folder}")
        return 0
    try:
        rows = run_sweep(
            arguments.config,
            grid,
            arguments.seeds,
            out,
            arguments.set,
            arguments.storage,
            arguments.device,
            progress=not arguments.quiet,
        )
    except KeyboardInterrupt as stop:
        hint = "run the same command again to continue where it stopped"
        raise _stopped(stop, hint) from None
    complete = sum(row["state"] == "complete" for row in rows)
    print(f"{complete} of {len(rows)} runs complete; wrote {out / 'sweep.csv'}, sweep.json and sweep.md")
    return 0


def add_sweep_parser(commands: argparse._SubParsersAction) -> None:
    sweep = add_command(
        commands,
        "sweep",
        "train and test a grid of config values, each point and seed an ordinary run",
        "An Optuna study (grid sampler) in the sweep folder's study.db, or in --storage: a stopped sweep "
        "continues where it stopped, and several workers (processes, GPUs, machines sharing --storage) take "
        "points from the same study. Writes sweep.csv, sweep.json and sweep.md.",
        "  vireid sweep sysu_full --grid loss.alpha=0.1,0.4,0.8,1.2,1.6,2.0 --grid loss.beta=0.2,0.4,0.6 "
        "--seeds 3 --out runs/sweep-alpha-beta\n"
        "  vireid sweep tiny --grid loss.alpha=0.4,1.2 --seeds 2 --out runs/sweep --dry-run\n"
        "  vireid sweep sysu_full --grid loss.beta=0.2,0.4 --out runs/sweep --storage postgresql://host/db",
    )
    sweep.add_argument("config", help="a YAML config or the name of a shipped one")
    sweep.add_argument(
        "--grid", action="append", default=[], metavar="KEY=VALUE,VALUE", help="a config key and its values"
    )
    sweep.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 for every point (default 1)")
    sweep.add_argument("--out", required=True, help="the sweep folder: a run folder per point and seed")
    sweep.add_argument(
        "--storage", help="the study's database URL (default: sqlite in --out), shared by workers on several machines"
    )
    sweep.add_argument("--dry-run", action="store_true", help="list the points and their run folders, run nothing")
    sweep.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key for every point"
    )
    sweep.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    sweep.add_argument("--quiet", action="store_true", help="no progress bars")
    sweep.set_defaults(handler=command_sweep, outputs={"out": "folder"})
