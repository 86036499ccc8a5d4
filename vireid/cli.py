"""The ``vireid`` command: one entry point with a sub-command per job."""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from vireid import __version__
from vireid.atomic import require_writable, write_failure, write_text, written_path
from vireid.errors import DatasetWarning, Interrupted, Terminated, UserError
from vireid.modality import Modality
from vireid.ranges import Range
from vireid.signals import sigterm_as_interrupt
from vireid.synthetic.writer import DEFAULT_SIZE, synthetic_layouts, write_synthetic_dataset

if TYPE_CHECKING:
    from vireid.config import ExperimentConfig

SYNTH_SEED = 0
_PYTHON_WARNING_FORMAT = warnings.formatwarning


def _parse_size(text: str) -> tuple[int, int]:
    height, separator, width = text.lower().partition("x")
    if not separator or not height.isdigit() or not width.isdigit():
        raise argparse.ArgumentTypeError(f"expected HxW such as 128x64, got {text!r}")
    return int(height), int(width)


def _number_in(accepted: Range, kind: type[int] | type[float] = int):
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


_COUNT = _number_in(Range(1))
"""A flag counting things (identities, lists, matches): at least 1."""
_NON_NEGATIVE = _number_in(Range(0))
"""A flag that may be 0 (worker processes: 0 works in this process; seeds; trial numbers)."""


def _parse_modality(text: str) -> Modality:
    try:
        return Modality[text.upper()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"expected visible or infrared, got {text!r}") from None


def _number_list(what: str):
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


_parse_trials = _number_list("trials")


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override the checkpoint's config, e.g. test.flip=true (repeatable)",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or progress lines")


def _add_command(commands, name: str, summary: str, description: str, examples: str) -> argparse.ArgumentParser:
    """A sub-command whose --help page has a description and examples."""
    return commands.add_parser(
        name,
        help=summary,
        description=textwrap.fill(f"{summary[0].upper()}{summary[1:]}. {description}", 79),
        epilog=f"examples:\n{examples}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


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
    synth = _add_command(
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
    synth.add_argument("--ids", type=_COUNT, help=f"number of identities (default: {defaults['identities']})")
    synth.add_argument(
        "--images-per-id",
        type=_COUNT,
        help=f"images per identity in EACH modality (default: {defaults['images_per_id']})",
    )
    synth.add_argument(
        "--seed",
        type=_NON_NEGATIVE,
        default=SYNTH_SEED,
        help=f"random seed; same seed, same files (default {SYNTH_SEED})",
    )
    synth.add_argument(
        "--size",
        type=_parse_size,
        default=DEFAULT_SIZE,
        help=f"image size HxW (default {DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]})",
    )
    synth.add_argument("--workers", type=_NON_NEGATIVE, help="worker processes (default: number of cores, at most 8)")
    synth.add_argument(
        "--force", action="store_true", help="replace the folder if it holds a synthetic dataset of vireid"
    )
    synth.set_defaults(handler=command_synth, outputs={"out": "folder"})


def command_evaluate(arguments: argparse.Namespace) -> int:
    from vireid.datasets import GalleryOptions, get_dataset, get_protocol
    from vireid.evaluation.feature_file import load_features
    from vireid.evaluation.protocols import evaluate_protocol, results_table

    protocol = get_protocol(arguments.protocol)
    dataset = get_dataset(protocol.dataset)
    feature_sets = [load_features(path, root=arguments.root) for path in arguments.features]
    options = GalleryOptions(arguments.shot, arguments.draws)
    if dataset.official_draws is None and options != GalleryOptions():
        raise UserError(f"--shot/--draws: {dataset.title} galleries are drawn one way; the choice is SYSU-MM01's")
    if arguments.draws == "official":
        permutation_file = arguments.permutations
        if permutation_file is None:
            root = arguments.root or feature_sets[0].metadata.get("root")
            if not root:
                raise UserError(
                    f"--draws official needs --permutations PATH (or --root, to read {dataset.official_draws.file})"
                )
            permutation_file = Path(root) / dataset.official_draws.file
        permutations = dataset.official_draws.load(permutation_file)
        options = GalleryOptions(arguments.shot, arguments.draws, permutations, str(permutation_file))
    reranks = [None, _rerank_settings(arguments)] if _reranks(arguments) else [None]
    results = [  # re-ranked first: it needs the more memory, so a refusal comes before any scoring
        evaluate_protocol(protocol, feature_sets, arguments.trials, options, device=arguments.device, rerank=rerank)
        for rerank in reversed(reranks)
    ][::-1]
    print(results_table(results))
    for result in results if arguments.per_trial else []:
        print(f"\n{result.label}:")
        for trial in result.trials:
            metrics = trial.metrics
            print(
                f"trial {trial.trial}: {trial.num_query} queries x {trial.num_gallery} gallery  "
                f"R1 {100 * metrics.cmc[0]:.2f}  mAP {100 * metrics.mAP:.2f}  mINP {100 * metrics.mINP:.2f}"
            )
    if arguments.json:
        records = [result.to_dict() for result in results]
        write_text(arguments.json, json.dumps(records if len(records) > 1 else records[0], indent=2) + "\n")
    return 0


def _add_rerank_options(parser: argparse.ArgumentParser, also: str = "") -> None:
    """--rerank and its settings (each of which asks for re-ranking too)."""
    parser.add_argument(
        "--rerank",
        action="store_true",
        help=f"also score k-reciprocal re-ranked distances, in rows of their own{also}",
    )
    from vireid.config import value_range

    parser.add_argument(
        "--k1",
        type=_number_in(value_range("test.rerank_k1")),
        help="re-ranking: k-reciprocal neighbourhood (default 20)",
    )
    parser.add_argument(
        "--k2", type=_number_in(value_range("test.rerank_k2")), help="re-ranking: local query expansion (default 6)"
    )
    parser.add_argument(
        "--lambda",
        dest="rerank_lambda",
        type=_number_in(value_range("test.rerank_lambda"), float),
        help="re-ranking: weight of the original distance (default 0.3)",
    )


def _reranks(arguments: argparse.Namespace) -> bool:
    """Whether re-ranking is asked for: --rerank, or one of its settings."""
    return arguments.rerank or any(value is not None for value in (arguments.k1, arguments.k2, arguments.rerank_lambda))


def _rerank_settings(arguments: argparse.Namespace):
    """The re-ranking of --k1, --k2, --lambda, the defaults where not given."""
    from vireid.evaluation.rerank import RerankSettings

    given = {"k1": arguments.k1, "k2": arguments.k2, "lambda_value": arguments.rerank_lambda}
    return RerankSettings(**{name: value for name, value in given.items() if value is not None})


def add_evaluate_parser(commands: argparse._SubParsersAction, protocol_names: list[str]) -> None:
    evaluate = _add_command(
        commands,
        "evaluate",
        "score saved features with an evaluation protocol",
        "Every trial of the protocol (or --trials), then mean and standard deviation, as the literature scores them.",
        "  vireid evaluate --features runs/sysu_full/features.npz --protocol sysu-all\n"
        "  vireid evaluate --features f.npz --protocol sysu-indoor --shot multi --per-trial --json results.json\n"
        "  vireid evaluate --features regdb_t1.npz regdb_t2.npz --protocol regdb-t2v\n"
        "  vireid evaluate --features f.npz --protocol sysu-all --rerank --k1 20 --k2 6 --lambda 0.3",
    )
    evaluate.add_argument("--features", required=True, nargs="+", help="feature file(s) (.npz); RegDB: one per trial")
    evaluate.add_argument("--protocol", required=True, choices=protocol_names, help="the evaluation protocol")
    evaluate.add_argument("--trials", type=_parse_trials, help="trials to run, e.g. 0-9 or 0,3 (default: all)")
    evaluate.add_argument(
        "--shot", choices=("single", "multi"), default="single", help="SYSU-MM01 gallery setting (default single)"
    )
    evaluate.add_argument(
        "--draws", choices=("agw", "official"), default="agw", help="SYSU-MM01 gallery draws (default agw)"
    )
    evaluate.add_argument("--permutations", help="rand_perm_cam.mat for --draws official")
    evaluate.add_argument("--root", help="dataset root, if the images moved since the features were saved")
    evaluate.add_argument("--device", default="cpu", help="where to score: cpu or cuda (default cpu)")
    evaluate.add_argument("--per-trial", action="store_true", help="also print each trial's figures")
    evaluate.add_argument(
        "--json", help="write the results (every trial, mean, std) to this JSON file (with --rerank: a list of both)"
    )
    _add_rerank_options(evaluate)
    evaluate.set_defaults(handler=command_evaluate, outputs={"json": "file"})


def command_train(arguments: argparse.Namespace) -> int:
    from vireid.engine.checkpoint import load_checkpoint
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
        config = load_config(arguments.config, arguments.set)
        run_dir = Path(arguments.out) if arguments.out else Path("runs") / config.name
    if not arguments.seeds:
        _train_run(config, run_dir, arguments.resume, arguments)
        return 0
    for seed in dict.fromkeys(arguments.seeds):  # each seed once
        seed_config = load_config(arguments.config, [*arguments.set, f"train.seed={seed}"])
        seed_dir = run_dir / f"seed{seed}"
        resume = _unfinished_run(seed_dir, seed_config)
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
        if isinstance(stop, Terminated):
            raise Interrupted(f"terminated (SIGTERM); {hint}", exit_code=143) from None
        raise Interrupted(f"interrupted; {hint}") from None
    if os.environ.get("RANK", "0") == "0":
        print(f"run folder: {run_dir} (last checkpoint: {last})")


def _unfinished_run(run_dir: Path, config: ExperimentConfig) -> Path | None | bool:
    """Where a seed's run of ``--seeds`` stands: None (not started), its last.pt (to continue), or
    False (finished, skipped). A run folder of another config is refused."""
    from vireid.engine.checkpoint import load_checkpoint
    from vireid.recipe import load_config

    last = run_dir / "last.pt"
    if not last.exists():
        return None
    checkpoint = load_checkpoint(last, mmap=True)  # its config and epoch; the weights stay on disk
    if load_config(None, base=checkpoint.config) != config:
        raise UserError(f"{run_dir}: holds a run of another config; choose another --out")
    if checkpoint.epoch >= config.train.epochs and checkpoint.evaluated:
        print(f"{run_dir}: finished ({checkpoint.epoch} epochs), skipped")
        return False
    return last


def add_train_parser(commands: argparse._SubParsersAction) -> None:
    train = _add_command(
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
        type=_number_list("seeds"),
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


def command_test(arguments: argparse.Namespace) -> int:
    from vireid.engine.tester import find_checkpoints, group_by_seed, score_checkpoints, score_seeds
    from vireid.evaluation.protocols import results_table
    from vireid.evaluation.seeds import seeds_table

    groups = group_by_seed(find_checkpoints(arguments.checkpoint))
    options = dict(
        protocols=arguments.protocol,
        root=arguments.root,
        trials=arguments.trials,
        device=arguments.device,
        out=Path(arguments.out) if arguments.out else None,
        progress=not arguments.quiet,
        overrides=[*arguments.set, *_rerank_overrides(arguments)],
        force=arguments.force,
    )  # score_checkpoints' keywords, which score_seeds passes on
    if len(groups) > 1:
        print(seeds_table(score_seeds(groups, **options)))
    else:
        print(results_table(score_checkpoints(next(iter(groups.values())), **options)))
    return 0


def _rerank_overrides(arguments: argparse.Namespace) -> list[str]:
    """The test.rerank* config keys that --rerank, --k1, --k2, --lambda set."""
    if not _reranks(arguments):
        return []
    given = {"rerank_k1": arguments.k1, "rerank_k2": arguments.k2, "rerank_lambda": arguments.rerank_lambda}
    return ["test.rerank=true", *(f"test.{key}={value}" for key, value in given.items() if value is not None)]


def add_test_parser(commands: argparse._SubParsersAction, protocol_names: list[str]) -> None:
    test = _add_command(
        commands,
        "test",
        "score a trained checkpoint with every trial of the protocols",
        "Writes results.md, results.json, the test features, the CMC curves and a rank-list picture per protocol "
        "into --out (default: the checkpoint's folder; for a folder of RegDB trial models, that folder).",
        "  vireid test runs/sysu_full/best.pt\n  vireid test runs/regdb_full --device cuda\n"
        "  vireid test runs/sysu_full/last.pt --protocol sysu-indoor --trials 0-4 --set test.flip=true\n"
        "  vireid test runs/sysu_caj --rerank",
    )
    test.add_argument("checkpoint", help="a checkpoint, or a folder of them (RegDB: one per trial)")
    test.add_argument(
        "--protocol",
        action="append",
        choices=protocol_names,
        help="protocol to run, repeatable (default: both of the dataset)",
    )
    test.add_argument(
        "--root", "--dataset", dest="root", help="dataset root folder, if not the one the model was trained with"
    )
    test.add_argument("--trials", type=_parse_trials, help="trials, e.g. 0-9 (default: all)")
    test.add_argument("--out", help="where to write the results, features and pictures (default: see above)")
    test.add_argument("--force", action="store_true", help="replace the results an --out folder holds already")
    _add_rerank_options(test, " (test.rerank; --k1 etc. set test.rerank_k1 etc.)")
    _add_model_options(test)
    test.set_defaults(handler=command_test, outputs={"out": "folder"})


def _print_skipped(skipped: list[str]) -> None:
    if skipped:
        print(f"skipped {len(skipped)} file(s) that could not be read as images:", file=sys.stderr)
        for reason in skipped:
            print(f"  {reason}", file=sys.stderr)


def command_extract(arguments: argparse.Namespace) -> int:
    from vireid.evaluation.feature_file import save_features
    from vireid.retrieval.encoders import load_encoder
    from vireid.retrieval.own_images import extract_own_images

    encoder = load_encoder(arguments.checkpoint, arguments.modality, arguments.device, arguments.set)
    feature_set, skipped = extract_own_images(encoder, arguments.images, arguments.workers, not arguments.quiet)
    save_features(arguments.out, feature_set)
    _print_skipped(skipped)
    features = feature_set.features
    print(
        f"wrote {features.shape[0]} {arguments.modality.name.lower()} features "
        f"({features.shape[1]}-d) of {arguments.images} to {arguments.out}"
    )
    return 0


def add_extract_parser(commands: argparse._SubParsersAction) -> None:
    extract = _add_command(
        commands,
        "extract",
        "features of your own images with a trained model",
        "IMAGES is a folder (searched recursively) or a text file listing image paths, one per line; relative "
        "lines are read from the list file's folder. Unreadable files are named and skipped.",
        "  vireid extract runs/demo/run/last.pt --images photos/ --modality visible --out day.npz\n"
        "  vireid extract runs/demo/run/last.infrared.onnx --images night.txt --modality infrared --out night.npz",
    )
    extract.add_argument(
        "checkpoint", help="a vireid checkpoint (.pt), or an ONNX file of `vireid export` (.onnx, faster on a CPU)"
    )
    extract.add_argument(
        "--images", required=True, help="a folder (searched recursively) or a list file (paths relative to its folder)"
    )
    extract.add_argument(
        "--modality",
        required=True,
        type=_parse_modality,
        metavar="{visible,infrared}",
        help="what camera took the images",
    )
    extract.add_argument("--out", required=True, help="feature file to write (.npz)")
    _add_model_options(extract)
    extract.add_argument(
        "--workers", type=_NON_NEGATIVE, default=0, help="image decoding processes (default 0: in this process)"
    )
    extract.set_defaults(handler=command_extract, outputs={"out": "file"})


def command_index(arguments: argparse.Namespace) -> int:
    from vireid.evaluation.feature_file import FeatureSet, load_features
    from vireid.retrieval.index import GalleryIndex

    feature_set = load_features(arguments.features, root=arguments.root)
    if arguments.modality is not None:
        rows = np.flatnonzero(feature_set.images.modalities == int(arguments.modality))
        if rows.size == 0:
            raise UserError(f"{arguments.features}: holds no {arguments.modality.name.lower()} image to index")
        feature_set = FeatureSet(feature_set.features[rows], feature_set.images.subset(rows), feature_set.metadata)
    index = GalleryIndex.build(feature_set, arguments.kind, arguments.nlist, arguments.nprobe)
    index.save(arguments.out)
    print(f"indexed {len(index)} images ({index.dimension}-d, {arguments.kind}) into {arguments.out}")
    return 0


def add_index_parser(commands: argparse._SubParsersAction) -> None:
    index = _add_command(
        commands,
        "index",
        "build a gallery index (FAISS) from a feature file",
        "flat is exact (the evaluator's ranking); ivf visits --nprobe of --nlist inverted lists, for large galleries.",
        "  vireid index day.npz --out day_index.npz\n  vireid index "
        "runs/demo/run/features.npz --modality visible --kind ivf --out index.npz",
    )
    index.add_argument("features", help="feature file of the gallery (vireid extract, or features.npz of vireid test)")
    index.add_argument("--out", required=True, help="index file to write (.npz)")
    index.add_argument(
        "--modality", type=_parse_modality, metavar="{visible,infrared}", help="index only the images of this modality"
    )
    index.add_argument(
        "--kind", choices=("flat", "ivf"), default="flat", help="flat: exact; ivf: inverted lists, for large galleries"
    )
    index.add_argument("--nlist", type=_COUNT, help="ivf: number of lists (default: about 4 sqrt(N))")
    index.add_argument("--nprobe", type=_COUNT, default=8, help="ivf: lists visited per query (default 8)")
    index.add_argument("--root", help="image root, if the images moved since the features were saved")
    index.set_defaults(handler=command_index, outputs={"out": "file"})


def command_search(arguments: argparse.Namespace) -> int:
    from vireid.evaluation.feature_file import load_features
    from vireid.retrieval.encoders import load_encoder
    from vireid.retrieval.index import GalleryIndex, ensure_same_model
    from vireid.retrieval.own_images import extract_own_images
    from vireid.retrieval.search import hits_table, hits_to_json, search_gallery

    index = GalleryIndex.load(arguments.index, root=arguments.root)
    if arguments.features:
        queries = load_features(arguments.features)
    else:
        if arguments.checkpoint is None or arguments.modality is None:
            raise UserError(
                "searching with --images needs --checkpoint (the model "
                "that made the index: .pt or .onnx) and --modality"
            )
        encoder = load_encoder(arguments.checkpoint, arguments.modality, arguments.device, arguments.set)
        queries, skipped = extract_own_images(encoder, arguments.images, progress=not arguments.quiet)
        _print_skipped(skipped)
    ensure_same_model(index.metadata, queries.metadata, arguments.index)
    if arguments.nprobe:
        index.set_nprobe(arguments.nprobe)
    results = search_gallery(index, queries, arguments.top_k)
    print(hits_table(results))
    if arguments.json:
        write_text(arguments.json, json.dumps(hits_to_json(results), indent=2) + "\n")
    if arguments.picture:
        from vireid.viz.rank_list import RankedImage, draw_rank_list

        shown = results[: arguments.picture_queries]
        draw_rank_list(
            [RankedImage(result.query_path, result.query_modality, _known(result.query_person_id)) for result in shown],
            [
                [
                    RankedImage(hit.path, hit.modality, _known(hit.person_id), hit.score, _known(hit.camera_id))
                    for hit in result.hits
                ]
                for result in shown
            ],
            arguments.picture,
            title=f"top {min(arguments.top_k, len(index))} of {len(index)} gallery images",
        )
        print(f"rank list picture: {arguments.picture}")
    return 0


def add_search_parser(commands: argparse._SubParsersAction) -> None:
    search = _add_command(
        commands,
        "search",
        "search a gallery index with images or features",
        "Prints the best matches of each query; --json and --picture also write them. Query images are a folder "
        "or a list file (paths relative to its folder).",
        "  vireid search day_index.npz --images night/ --checkpoint "
        "runs/demo/run/last.pt --modality infrared --top-k 5\n"
        "  vireid search day_index.npz --features night.npz --json hits.json --picture hits.png",
    )
    search.add_argument("index", help="index file (vireid index)")
    queries = search.add_mutually_exclusive_group(required=True)
    queries.add_argument("--images", help="query images: a folder or a list file (needs --checkpoint and --modality)")
    queries.add_argument("--features", help="query feature file")
    search.add_argument(
        "--checkpoint", help="the model that made the index (.pt, or its exported .onnx of the queries' modality)"
    )
    search.add_argument(
        "--modality", type=_parse_modality, metavar="{visible,infrared}", help="what camera took the query images"
    )
    search.add_argument("--top-k", type=_COUNT, default=10, help="matches per query (default 10)")
    search.add_argument("--nprobe", type=_COUNT, help="ivf: lists visited per query (default: the index's)")
    search.add_argument("--json", help="also write the results to this JSON file")
    search.add_argument("--picture", help="also draw the rank lists into this PNG")
    search.add_argument("--picture-queries", type=_COUNT, default=8, help="queries drawn in --picture (default 8)")
    search.add_argument("--root", help="gallery image root, if the images moved since the index was built")
    _add_model_options(search)
    search.set_defaults(handler=command_search, outputs={"json": "file", "picture": "file"})


def _known(person_or_camera_id: int) -> int | None:
    from vireid.data.image_folder import UNKNOWN_ID

    return None if person_or_camera_id == UNKNOWN_ID else person_or_camera_id


def command_export(arguments: argparse.Namespace) -> int:
    from vireid.engine.checkpoint import model_from_checkpoint
    from vireid.retrieval.export import export_onnx, max_abs_difference

    model, config, _ = model_from_checkpoint(arguments.checkpoint, "cpu", arguments.set)
    out = Path(arguments.out) if arguments.out else Path(arguments.checkpoint).parent
    out.mkdir(parents=True, exist_ok=True)
    modalities = list(Modality) if arguments.modality == "both" else [_parse_modality(arguments.modality)]
    for modality in modalities:
        path = export_onnx(
            model, config, modality, out / f"{Path(arguments.checkpoint).stem}.{modality.name.lower()}.onnx"
        )
        difference = max_abs_difference(path, model, config, modality)
        print(
            f"wrote {path} ({modality.name.lower()} images {config.data.height}x{config.data.width} -> features); "
            f"ONNX Runtime vs PyTorch max abs diff {difference:.2e}"
        )
    return 0


def add_export_parser(commands: argparse._SubParsersAction) -> None:
    export = _add_command(
        commands,
        "export",
        "export the test-time feature to ONNX (one file per modality)",
        "Each file maps (B, 3, H, W) normalised images to L2-normalised "
        "features and is checked against PyTorch with ONNX Runtime.",
        "  vireid export runs/demo/run/last.pt\n  vireid export "
        "runs/sysu_full/best.pt --modality infrared --out exported/",
    )
    export.add_argument("checkpoint", help="a vireid checkpoint (.pt)")
    export.add_argument(
        "--modality",
        choices=("visible", "infrared", "both"),
        default="both",
        help="which modality's file(s) to write (default both)",
    )
    export.add_argument(
        "--out", help="folder to write <checkpoint>.<modality>.onnx into (default: the checkpoint's folder)"
    )
    export.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override the checkpoint's config, e.g. test.feature=global (repeatable)",
    )
    export.set_defaults(handler=command_export, outputs={"out": "folder"})


def command_plot(arguments: argparse.Namespace) -> int:
    from vireid.evaluation.feature_file import load_features

    if arguments.kind == "cmc":
        from vireid.viz.cmc import cmc_curves_from_results, draw_cmc_curves

        curves = cmc_curves_from_results(arguments.inputs, [arguments.protocol] if arguments.protocol else None)
        draw_cmc_curves(curves, arguments.out, title=arguments.title)
    elif arguments.kind == "tsne":
        from vireid.viz.tsne import draw_tsne

        feature_set = load_features(_single(arguments.inputs, "a feature file"), root=arguments.root)
        images = feature_set.images
        draw_tsne(
            feature_set.features,
            images.person_ids,
            images.modalities,
            arguments.out,
            arguments.identities,
            title=arguments.title,
        )
    else:
        from vireid.viz.rank_list import draw_rank_list
        from vireid.viz.trial_ranks import trial_rank_lists

        if not arguments.protocol:
            raise UserError("vireid plot ranks needs --protocol, e.g. --protocol sysu-all")
        feature_set = load_features(_single(arguments.inputs, "a feature file"), root=arguments.root)
        trial, queries, ranked = trial_rank_lists(
            feature_set, arguments.protocol, arguments.trial, arguments.queries, arguments.top_k
        )
        draw_rank_list(queries, ranked, arguments.out, title=arguments.title or f"{arguments.protocol} trial {trial}")
    print(f"wrote {arguments.out}")
    return 0


def add_plot_parser(commands: argparse._SubParsersAction, protocol_names: list[str]) -> None:
    plot = _add_command(
        commands,
        "plot",
        "pictures: CMC curves of runs, t-SNE of features, rank lists of a trial",
        "cmc takes results.json files of vireid test (one curve per "
        "run and protocol); tsne and ranks take one feature file.",
        "  vireid plot cmc runs/a/results.json runs/b/results.json --out cmc.png\n"
        "  vireid plot tsne runs/demo/run/features.npz --out tsne.png\n"
        "  vireid plot ranks runs/demo/run/features.npz --protocol sysu-all --trial 3 --out ranks.png",
    )
    plot.add_argument("kind", choices=("cmc", "tsne", "ranks"), help="which picture")
    plot.add_argument(
        "inputs", nargs="+", help="cmc: results.json file(s) of vireid test; tsne, ranks: one feature file"
    )
    plot.add_argument("--out", required=True, help="PNG file to write")
    plot.add_argument("--title", help="the picture's title (default: one that says what is shown)")
    plot.add_argument(
        "--protocol", choices=protocol_names, help="ranks: the protocol whose trial to show; cmc: only its curves"
    )
    plot.add_argument(
        "--trial", type=_NON_NEGATIVE, help="ranks: trial number (default: the features' own, or the first)"
    )
    plot.add_argument("--queries", type=_COUNT, default=6, help="ranks: queries shown (default 6)")
    plot.add_argument("--top-k", type=_COUNT, default=10, help="ranks: gallery images per query (default 10)")
    plot.add_argument(
        "--identities", type=_COUNT, default=8, help="tsne: identities shown, one colour each (default and most: 8)"
    )
    plot.add_argument("--root", help="image root, if the images moved since the features were saved")
    plot.set_defaults(handler=command_plot, outputs={"out": "file"})


def command_compare(arguments: argparse.Namespace) -> int:
    from vireid.evaluation.compare import comparison_table
    from vireid.evaluation.results_file import results_to_compare

    chosen = results_to_compare(arguments.runs, arguments.protocol)
    table = comparison_table(chosen, arguments.protocol)
    print(table)
    if arguments.picture:
        from vireid.viz.cmc import draw_cmc_curves

        curves = {result.label: result.cmc for result in chosen}
        print(f"wrote {draw_cmc_curves(curves, arguments.picture, title=arguments.title or 'CMC, side by side')}")
    if arguments.out:
        out = Path(arguments.out)
        picture = (
            f"\n![CMC]({os.path.relpath(Path(arguments.picture).resolve(), out.resolve().parent)})\n"
            if arguments.picture
            else ""
        )
        report = f"# Results side by side\n\nRuns: {', '.join(arguments.runs)}\n\n{table}\n{picture}"
        print(f"wrote {write_text(out, report)}")
    return 0


def add_compare_parser(commands: argparse._SubParsersAction) -> None:
    compare = _add_command(
        commands,
        "compare",
        "results of several runs side by side: runs x protocols (R1, R10, R20, mAP, mINP)",
        "Reads the results.json that vireid test wrote into each run folder (or the files themselves); "
        "re-ranked results are rows of their own.",
        "  vireid compare runs/sysu_agw runs/sysu_caj runs/sysu_full\n"
        "  vireid compare runs/demo/run runs/demo/agw --out compare.md --picture compare_cmc.png",
    )
    compare.add_argument("runs", nargs="+", help="run folders holding results.json (vireid test), or the files")
    compare.add_argument("--protocol", action="append", help="only these protocols, repeatable (default: all found)")
    compare.add_argument("--out", help="also write the table as Markdown into this file")
    compare.add_argument("--picture", help="also draw the CMC curves of every run and protocol into this PNG")
    compare.add_argument("--title", help="the picture's title")
    compare.set_defaults(handler=command_compare, outputs={"out": "file", "picture": "file"})


def _single(inputs: list[str], what: str) -> str:
    if len(inputs) != 1:
        raise UserError(f"expected one input ({what}), got {len(inputs)}")
    return inputs[0]


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

    check = _add_command(
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
        "--trial", type=_NON_NEGATIVE, help="one model per trial (RegDB): only this trial's splits (default: all)"
    )
    check.add_argument("--quiet", action="store_true", help="no progress bar or progress lines")
    check.set_defaults(handler=command_check)


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
    configs = _add_command(
        commands,
        "configs",
        "list the shipped configs, or print one",
        "Shipped configs are found by name by vireid train; print one to start your own from it.",
        "  vireid configs\n  vireid configs sysu_full > my_config.yaml",
    )
    configs.add_argument("name", nargs="?", help="a shipped config to print (default: list them all)")
    configs.set_defaults(handler=command_configs)


def command_demo(arguments: argparse.Namespace) -> int:
    from vireid.demo import run_demo

    run_demo(Path(arguments.out), workers=arguments.workers, compare=arguments.compare)
    return 0


def add_demo_parser(commands: argparse._SubParsersAction) -> None:
    demo = _add_command(
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
    demo.add_argument("--workers", type=_NON_NEGATIVE, help="worker processes for data generation")
    demo.add_argument(
        "--compare", action="store_true", help="also train and test the tiny AGW baseline and CAJ, and compare them"
    )
    demo.set_defaults(handler=command_demo, outputs={"out": "folder"})


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
    add_test_parser(commands, protocol_names)
    add_extract_parser(commands)
    add_index_parser(commands)
    add_search_parser(commands)
    add_export_parser(commands)
    add_plot_parser(commands, protocol_names)
    add_compare_parser(commands)
    add_configs_parser(commands)
    add_check_parser(commands)
    add_demo_parser(commands)
    return parser


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """vireid's own warnings (odd datasets) as one line; any other as Python prints it."""
    if issubclass(category, DatasetWarning):
        return f"vireid: warning: {message}\n"
    return _PYTHON_WARNING_FORMAT(message, category, filename, lineno, line)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a user error, an interruption or a closed pipe ends in one line, never a traceback."""
    warnings.formatwarning = _one_line_warning
    arguments = build_parser().parse_args(argv)
    try:
        with sigterm_as_interrupt():
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


if __name__ == "__main__":
    sys.exit(main())
