"""Commands that use a trained model on your own images: extract (features), index (a gallery),
search (the gallery with queries) and export (ONNX)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from vireid.atomic import write_text
from vireid.cli.common import COUNT, NON_NEGATIVE, add_command, add_model_options, parse_modality
from vireid.errors import UserError
from vireid.modality import Modality


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
    extract = add_command(
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
        type=parse_modality,
        metavar="{visible,infrared}",
        help="what camera took the images",
    )
    extract.add_argument("--out", required=True, help="feature file to write (.npz)")
    add_model_options(extract)
    extract.add_argument(
        "--workers", type=NON_NEGATIVE, default=0, help="image decoding processes (default 0: in this process)"
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
    index = add_command(
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
        "--modality", type=parse_modality, metavar="{visible,infrared}", help="index only the images of this modality"
    )
    index.add_argument(
        "--kind", choices=("flat", "ivf"), default="flat", help="flat: exact; ivf: inverted lists, for large galleries"
    )
    index.add_argument("--nlist", type=COUNT, help="ivf: number of lists (default: about 4 sqrt(N))")
    index.add_argument("--nprobe", type=COUNT, default=8, help="ivf: lists visited per query (default 8)")
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
            count_flags=("--picture-queries", "--top-k"),
        )
        print(f"rank list picture: {arguments.picture}")
    return 0


def add_search_parser(commands: argparse._SubParsersAction) -> None:
    search = add_command(
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
        "--modality", type=parse_modality, metavar="{visible,infrared}", help="what camera took the query images"
    )
    search.add_argument("--top-k", type=COUNT, default=10, help="matches per query (default 10)")
    search.add_argument("--nprobe", type=COUNT, help="ivf: lists visited per query (default: the index's)")
    search.add_argument("--json", help="also write the results to this JSON file")
    search.add_argument("--picture", help="also draw the rank lists into this PNG")
    search.add_argument("--picture-queries", type=COUNT, default=8, help="queries drawn in --picture (default 8)")
    search.add_argument("--root", help="gallery image root, if the images moved since the index was built")
    add_model_options(search)
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
    modalities = list(Modality) if arguments.modality == "both" else [parse_modality(arguments.modality)]
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
    export = add_command(
        commands,
        "export",
        "export the test-time feature to ONNX (one file per modality)",
        "Each file maps (B, 3, H, W) normalised images to the test features (L2-normalised where the "
        "model scores by cosine) and is checked against PyTorch with ONNX Runtime.",
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
