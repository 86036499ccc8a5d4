"""The ``vireid`` command: one entry point with a sub-command per job."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Sequence

from vireid import __version__
from vireid.atomic import write_text
from vireid.data.synthetic import DEFAULT_SIZE, LAYOUTS, write_synthetic_dataset
from vireid.errors import UserError

SYNTH_SEED = 0


def _parse_size(text: str) -> tuple[int, int]:
    height, separator, width = text.lower().partition("x")
    if not separator or not height.isdigit() or not width.isdigit():
        raise argparse.ArgumentTypeError(f"expected HxW such as 128x64, got {text!r}")
    return int(height), int(width)


def _parse_trials(text: str) -> list[int]:
    """'0-9', '3' or '0,2,5' as a list of trial numbers."""
    trials: list[int] = []
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            raise argparse.ArgumentTypeError(f"expected trials such as 0-9 or 0,2,5, got {text!r}")
        trials += list(range(int(first), int(last) + 1)) if dash else [int(first)]
    return trials


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


def command_evaluate(arguments: argparse.Namespace) -> int:
    from vireid.data.sysu import PERMUTATION_FILE, load_official_permutations
    from vireid.evaluation.feature_file import load_features
    from vireid.evaluation.protocols import evaluate_protocol, get_protocol, results_table

    protocol = get_protocol(arguments.protocol)
    feature_sets = [load_features(path, root=arguments.root) for path in arguments.features]
    permutations = None
    if arguments.draws == "official":
        if protocol.dataset != "sysu":
            raise UserError("--draws official applies to SYSU-MM01 protocols only")
        permutation_file = arguments.permutations
        if permutation_file is None:
            root = arguments.root or feature_sets[0].metadata.get("root")
            if not root:
                raise UserError("--draws official needs --permutations PATH (or --root, to read exp/rand_perm_cam.mat)")
            permutation_file = Path(root) / PERMUTATION_FILE
        permutations = load_official_permutations(permutation_file)
    result = evaluate_protocol(
        protocol, feature_sets, arguments.trials, arguments.shot, arguments.draws, permutations, device=arguments.device
    )
    print(results_table([result]))
    if arguments.per_trial:
        print()
        for trial in result.trials:
            metrics = trial.metrics
            print(
                f"trial {trial.trial}: {trial.num_query} queries x {trial.num_gallery} gallery  "
                f"R1 {100 * metrics.cmc[0]:.2f}  mAP {100 * metrics.mAP:.2f}  mINP {100 * metrics.mINP:.2f}"
            )
    if arguments.json:
        write_text(arguments.json, json.dumps(result.to_dict(), indent=2) + "\n")
    return 0


def command_train(arguments: argparse.Namespace) -> int:
    from vireid.config import load_config
    from vireid.engine.checkpoint import load_checkpoint
    from vireid.engine.trainer import train

    if arguments.pretrained:
        arguments.set.append(f"model.pretrained={arguments.pretrained}")
    if bool(arguments.config) == bool(arguments.resume):
        raise UserError("give a CONFIG to start a run, or --resume CHECKPOINT (without CONFIG) to continue one")
    if arguments.resume:
        config = load_config(None, arguments.set, base=load_checkpoint(arguments.resume)["config"])
        run_dir = Path(arguments.out) if arguments.out else Path(arguments.resume).parent
    else:
        config = load_config(arguments.config, arguments.set)
        run_dir = Path(arguments.out) if arguments.out else Path("runs") / config.name
    last = train(config, run_dir, resume=arguments.resume, device=arguments.device, progress=not arguments.quiet)
    if os.environ.get("RANK", "0") == "0":
        print(f"run folder: {run_dir} (last checkpoint: {last})")
    return 0


def command_test(arguments: argparse.Namespace) -> int:
    from vireid.engine.tester import find_checkpoints, score_checkpoints
    from vireid.evaluation.protocols import results_table

    results = score_checkpoints(
        find_checkpoints(arguments.checkpoint),
        arguments.protocol,
        arguments.root,
        arguments.trials,
        arguments.device,
        Path(arguments.out) if arguments.out else None,
        progress=not arguments.quiet,
    )
    print(results_table(results))
    return 0


def command_demo(arguments: argparse.Namespace) -> int:
    from vireid.demo import run_demo

    run_demo(Path(arguments.out), workers=arguments.workers)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vireid", description="Visible-infrared person re-identification toolkit.")
    parser.add_argument("--version", action="version", version=f"vireid {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    synth = commands.add_parser("synth", help="write a synthetic dataset in an official layout")
    synth.add_argument("--layout", required=True, choices=LAYOUTS)
    synth.add_argument("--out", required=True, help="folder to create (the dataset root)")
    synth.add_argument("--ids", type=int, help="number of identities (default: 120 sysu, 40 regdb, 90 llcm)")
    synth.add_argument("--images-per-id", type=int, help="images per identity in EACH modality (default: 12, regdb 10)")
    synth.add_argument("--seed", type=int, default=SYNTH_SEED)
    synth.add_argument("--size", type=_parse_size, default=DEFAULT_SIZE, help=f"image size HxW (default {DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]})")
    synth.add_argument("--workers", type=int, help="worker processes (default: number of cores, at most 8)")
    synth.add_argument("--force", action="store_true", help="replace the folder if it exists")
    synth.set_defaults(handler=command_synth)

    evaluate = commands.add_parser("evaluate", help="score saved features with an evaluation protocol")
    evaluate.add_argument("--features", required=True, nargs="+", help="feature file(s) (.npz); RegDB: one per trial")
    evaluate.add_argument(
        "--protocol",
        required=True,
        help="sysu-all, sysu-indoor, regdb-v2t, regdb-t2v, llcm-ir2vis or llcm-vis2ir",
    )
    evaluate.add_argument("--trials", type=_parse_trials, help="trials to run, e.g. 0-9 or 0,3 (default: all)")
    evaluate.add_argument("--shot", choices=("single", "multi"), default="single", help="SYSU-MM01 gallery setting")
    evaluate.add_argument("--draws", choices=("agw", "official"), default="agw", help="SYSU-MM01 gallery draws")
    evaluate.add_argument("--permutations", help="rand_perm_cam.mat for --draws official")
    evaluate.add_argument("--root", help="dataset root, if the images moved since the features were saved")
    evaluate.add_argument("--device", default="cpu", help="where to score: cpu or cuda (default cpu)")
    evaluate.add_argument("--per-trial", action="store_true", help="also print each trial's figures")
    evaluate.add_argument("--json", help="write the results (every trial, mean, std) to this JSON file")
    evaluate.set_defaults(handler=command_evaluate)

    train = commands.add_parser("train", help="train a model from a YAML config (or resume a run)")
    train.add_argument("config", nargs="?", help="YAML config, e.g. configs/sysu_full.yaml")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key, e.g. --set data.root=/data/SYSU-MM01")
    train.add_argument("--out", help="run folder (default runs/<config name>, or the resumed run's folder)")
    train.add_argument("--resume", metavar="CHECKPOINT", help="continue a run exactly from its checkpoint")
    train.add_argument("--pretrained", metavar="PATH", help="ImageNet weights from a local torchvision state-dict file (same as --set model.pretrained=PATH)")
    train.add_argument("--device", default="auto", help="auto (GPU if present), cpu, cuda")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(handler=command_train)

    test = commands.add_parser("test", help="score a trained checkpoint with every trial of the protocols")
    test.add_argument("checkpoint", help="a checkpoint, or a folder of them (RegDB: one per trial)")
    test.add_argument("--protocol", action="append", help="protocol(s) to run (default: both of the dataset)")
    test.add_argument("--root", "--dataset", dest="root", help="dataset root folder, if not the one the model was trained with")
    test.add_argument("--trials", type=_parse_trials, help="trials, e.g. 0-9 (default: all)")
    test.add_argument("--device", default="cpu")
    test.add_argument("--out", help="where to write results.md/json and features (default: the checkpoint's folder)")
    test.add_argument("--quiet", action="store_true", help="no progress bars")
    test.set_defaults(handler=command_test)

    demo = commands.add_parser("demo", help="the whole pipeline on a generated dataset")
    demo.add_argument("--out", default="runs/demo", help="run folder (default runs/demo)")
    demo.add_argument("--workers", type=int, help="worker processes for data generation")
    demo.set_defaults(handler=command_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    try:
        return arguments.handler(arguments)
    except UserError as error:
        print(f"vireid {arguments.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
