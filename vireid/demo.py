"""The demo: the main job, end to end, on a generated SYSU-MM01-layout dataset.

Generate the dataset (once), train the paper's model with the tiny config on
the CPU, test it with every trial of the SYSU-MM01 protocols, and print the
table beside the learning-free floor (a hand-made descriptor) and chance, with the
pictures: CMC curves, rank lists and a t-SNE of the test features.
Everything lands in the run folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from vireid.atomic import write_text
from vireid.config import load_config
from vireid.data.images import load_image
from vireid.datasets.sysu import sysu_test_images
from vireid.engine.tester import score_checkpoints
from vireid.engine.trainer import train
from vireid.evaluation.feature_file import FeatureSet, load_features
from vireid.evaluation.protocols import ProtocolResult, evaluate_protocol, results_table
from vireid.models.handcrafted import describe_images
from vireid.progress import track
from vireid.synthetic.writer import write_synthetic_dataset
from vireid.viz.cmc import draw_cmc_curves, protocol_cmc_curves
from vireid.viz.tsne import draw_tsne

DEMO_CONFIG = "tiny"  # a shipped config (vireid/configs/tiny.yaml)


DEMO_OUTPUTS = (
    "config.yaml", "metrics.jsonl", "last.pt", "best.pt", "features.npz", "results.md", "results.json",
    "cmc.png", "tsne.png", "ranks_*.png", "tensorboard",
)  # fmt: skip
"""What a demo writes into its run folder: all that the next demo removes."""


def remove_demo_outputs(run_dir: Path) -> None:
    """Remove what an earlier demo wrote into ``run_dir``, nothing else (a user's exported
    ONNX files, notes, ... stay)."""
    for pattern in DEMO_OUTPUTS:
        for path in run_dir.glob(pattern):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()


def run_demo(
    out: Path,
    workers: int | None = None,
    identities: int | None = None,
    images_per_id: int | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    progress: bool = True,
) -> list[ProtocolResult]:
    """Run the demo into ``out``; returns the trained model's results (both SYSU-MM01 protocols)."""
    data_root = out / "data" / "SYSU-MM01"
    if data_root.exists():
        print(f"using the synthetic dataset at {data_root}")
    else:
        summary = write_synthetic_dataset("sysu", data_root, identities, images_per_id, workers=workers)
        print(
            f"generated {summary.images} images of {summary.identities} "
            f"identities at {data_root} in {summary.seconds:.1f} s"
        )
    config = load_config(DEMO_CONFIG, [f"data.root={data_root}", f"train.cache_dir={out / 'cache'}", *overrides])
    run_dir = out / "run"
    remove_demo_outputs(run_dir)  # each demo trains afresh; the data are kept, and whatever else is in the folder
    last = train(config, run_dir, progress=progress)
    results = score_checkpoints([last], progress=progress)
    trained_features = load_features(run_dir / "features.npz")
    images = trained_features.images
    draw_tsne(
        trained_features.features,
        images.person_ids,
        images.modalities,
        run_dir / "tsne.png",
        title="t-SNE of the test features",
    )

    test_images = sysu_test_images(data_root)
    paths = track(test_images.paths, "describe", "img", progress)
    floor = FeatureSet(describe_images(load_image(path) for path in paths), test_images)
    floor_results = [evaluate_protocol(name, [floor]) for name in ("sysu-all", "sysu-indoor")]
    chance = 1 / test_images.num_identities
    compared = {
        **protocol_cmc_curves(results, "trained model"),
        **protocol_cmc_curves(floor_results, "hand-made descriptor"),
    }
    draw_cmc_curves(
        compared, run_dir / "cmc.png", f"CMC on synthetic SYSU-MM01 ({config.name} config)", test_images.num_identities
    )
    report = (
        f"# vireid demo: the paper's model (tiny config) on synthetic SYSU-MM01\n\n"
        f"Trained model ({run_dir}):\n\n{results_table(results)}\n\n"
        f"Hand-made descriptor, no learning:\n\n{results_table(floor_results)}\n\n"
        f"Chance rank-1: {100 * chance:.2f} % ({test_images.num_identities} test identities).\n\n"
        f"Pictures: CMC curves {run_dir / 'cmc.png'}, rank lists {run_dir / 'ranks_sysu-all.png'} "
        f"(green ✓: same person, red ✗: another), t-SNE of the test features {run_dir / 'tsne.png'}.\n\n"
        f"![CMC](run/cmc.png)\n\n![rank lists](run/ranks_sysu-all.png)\n\n![t-SNE](run/tsne.png)\n"
    )
    write_text(out / "results.md", report)
    print(report)
    print(f"run folder: {out}")
    return results
