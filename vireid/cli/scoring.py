"""Commands that score and show results: evaluate (saved features), test (checkpoints), plot
(pictures) and compare (runs side by side)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

from vireid.atomic import write_text
from vireid.cli.common import (
    COUNT,
    NON_NEGATIVE,
    add_command,
    add_model_options,
    add_rerank_options,
    parse_trials,
    rerank_asked,
    rerank_settings,
)
from vireid.errors import UserError


def command_evaluate(arguments: argparse.Namespace) -> int:
    from vireid.datasets import GalleryOptions, get_dataset, get_protocol
    from vireid.evaluation.by_camera import evaluate_by_camera
    from vireid.evaluation.feature_file import load_features
    from vireid.evaluation.protocols import evaluate_protocol, results_table

    if arguments.picture and not arguments.by_camera:
        raise UserError("--picture draws the results by camera: give --by-camera too")
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
    reranks = [None, rerank_settings(arguments)] if rerank_asked(arguments) else [None]
    results = [  # re-ranked first: it needs the more memory, so a refusal comes before any scoring
        evaluate_protocol(protocol, feature_sets, arguments.trials, options, device=arguments.device, rerank=rerank)
        for rerank in reversed(reranks)
    ][::-1]
    if arguments.by_camera:
        table = evaluate_by_camera(protocol, feature_sets, arguments.trials, options, device=arguments.device)
        results[0] = dataclasses.replace(results[0], by_camera=table)
    print(results_table(results))
    if arguments.by_camera:
        print(f"\n{table.printed()}")
        if arguments.picture:
            from vireid.viz.by_camera import draw_camera_table

            print(f"wrote {draw_camera_table(table, arguments.picture)}")
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


def add_evaluate_parser(commands: argparse._SubParsersAction, protocol_names: list[str]) -> None:
    evaluate = add_command(
        commands,
        "evaluate",
        "score saved features with an evaluation protocol",
        "Every trial of the protocol (or --trials), then mean and standard deviation, as the literature scores them.",
        "  vireid evaluate --features runs/sysu_full/features.npz --protocol sysu-all\n"
        "  vireid evaluate --features f.npz --protocol sysu-indoor --shot multi --per-trial --json results.json\n"
        "  vireid evaluate --features regdb_t1.npz regdb_t2.npz --protocol regdb-t2v\n"
        "  vireid evaluate --features f.npz --protocol sysu-all --rerank --k1 20 --k2 6 --lambda 0.3\n"
        "  vireid evaluate --features f.npz --protocol sysu-all --by-camera --picture cameras.png",
    )
    evaluate.add_argument("--features", required=True, nargs="+", help="feature file(s) (.npz); RegDB: one per trial")
    evaluate.add_argument("--protocol", required=True, choices=protocol_names, help="the evaluation protocol")
    evaluate.add_argument("--trials", type=parse_trials, help="trials to run, e.g. 0-9 or 0,3 (default: all)")
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
        "--by-camera",
        action="store_true",
        help="also score each query camera against each gallery camera, the same draws (kept in --json)",
    )
    evaluate.add_argument("--picture", help="with --by-camera: draw it as a heat map into this PNG file")
    evaluate.add_argument(
        "--json", help="write the results (every trial, mean, std) to this JSON file (with --rerank: a list of both)"
    )
    add_rerank_options(evaluate)
    evaluate.set_defaults(handler=command_evaluate, outputs={"json": "file", "picture": "file"})


def command_test(arguments: argparse.Namespace) -> int:
    from vireid.engine.checkpoint import load_checkpoint
    from vireid.engine.reference_import import reported_line
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
        by_camera=arguments.by_camera,
    )  # score_checkpoints' keywords, which score_seeds passes on
    if len(groups) > 1:
        print(seeds_table(score_seeds(groups, **options)))
    else:
        results = score_checkpoints(next(iter(groups.values())), **options)
        print(results_table(results))
        for result in results if arguments.by_camera else []:
            if result.by_camera:
                print(f"\n{result.by_camera.printed()}")
    for paths in groups.values():  # an imported checkpoint: the figures its reference recorded, beside
        for line in filter(None, (reported_line(load_checkpoint(path, mmap=True)) for path in paths)):
            print(line)
    return 0


def _rerank_overrides(arguments: argparse.Namespace) -> list[str]:
    """The test.rerank* config keys that --rerank, --k1, --k2, --lambda set."""
    if not rerank_asked(arguments):
        return []
    given = {"rerank_k1": arguments.k1, "rerank_k2": arguments.k2, "rerank_lambda": arguments.rerank_lambda}
    return ["test.rerank=true", *(f"test.{key}={value}" for key, value in given.items() if value is not None)]


def add_test_parser(commands: argparse._SubParsersAction, protocol_names: list[str]) -> None:
    test = add_command(
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
    test.add_argument("--trials", type=parse_trials, help="trials, e.g. 0-9 (default: all)")
    test.add_argument("--out", help="where to write the results, features and pictures (default: see above)")
    test.add_argument("--force", action="store_true", help="replace the results an --out folder holds already")
    test.add_argument(
        "--by-camera",
        action="store_true",
        help="also score each query camera against each gallery camera (results.json, by_camera_<protocol>.png)",
    )
    add_rerank_options(test, " (test.rerank; --k1 etc. set test.rerank_k1 etc.)")
    add_model_options(test)
    test.set_defaults(handler=command_test, outputs={"out": "folder"})


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
        title = arguments.title or f"{arguments.protocol} trial {trial}"
        draw_rank_list(queries, ranked, arguments.out, title=title, count_flags=("--queries", "--top-k"))
    print(f"wrote {arguments.out}")
    return 0


def add_plot_parser(commands: argparse._SubParsersAction, protocol_names: list[str]) -> None:
    plot = add_command(
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
        "--trial", type=NON_NEGATIVE, help="ranks: trial number (default: the features' own, or the first)"
    )
    plot.add_argument("--queries", type=COUNT, default=6, help="ranks: queries shown (default 6)")
    plot.add_argument("--top-k", type=COUNT, default=10, help="ranks: gallery images per query (default 10)")
    plot.add_argument(
        "--identities", type=COUNT, default=8, help="tsne: identities shown, one colour each (default and most: 8)"
    )
    plot.add_argument("--root", help="image root, if the images moved since the features were saved")
    plot.set_defaults(handler=command_plot, outputs={"out": "file"})


def command_compare(arguments: argparse.Namespace) -> int:
    from vireid.evaluation.compare import comparison_table
    from vireid.evaluation.results_file import results_to_compare

    chosen = results_to_compare(arguments.runs, arguments.protocol)
    published = []
    if arguments.published is not None:
        from vireid.published import published_rows

        protocols = arguments.protocol or list(dict.fromkeys(result.protocol for result in chosen))
        published = published_rows(arguments.published, protocols)
    table = comparison_table(chosen, arguments.protocol, published)
    print(table)
    if arguments.picture:
        from vireid.viz.cmc import draw_cmc_curves, recorded_cmc_curves

        curves = recorded_cmc_curves(chosen)
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
    compare = add_command(
        commands,
        "compare",
        "results of several runs side by side: runs x protocols (R1, R10, R20, mAP, mINP)",
        "Reads the results.json that vireid test wrote into each run folder (or the files themselves); "
        "re-ranked results are rows of their own.",
        "  vireid compare runs/sysu_agw runs/sysu_caj runs/sysu_full\n"
        "  vireid compare runs/demo/run runs/demo/agw --out compare.md --picture compare_cmc.png\n"
        "  vireid compare runs/sysu_full runs/sysu_deen --published paper agw caj deen",
    )
    compare.add_argument("runs", nargs="+", help="run folders holding results.json (vireid test), or the files")
    compare.add_argument("--protocol", action="append", help="only these protocols, repeatable (default: all found)")
    compare.add_argument(
        "--published",
        nargs="*",
        metavar="NAME",
        help="add the published figures of these methods (none named: every one) on the table's protocols",
    )
    compare.add_argument("--out", help="also write the table as Markdown into this file")
    compare.add_argument("--picture", help="also draw the CMC curves of every run and protocol into this PNG")
    compare.add_argument("--title", help="the picture's title")
    compare.set_defaults(handler=command_compare, outputs={"out": "file", "picture": "file"})


def _single(inputs: list[str], what: str) -> str:
    if len(inputs) != 1:
        raise UserError(f"expected one input ({what}), got {len(inputs)}")
    return inputs[0]
