"""The demo: the main job, end to end, on a generated SYSU-MM01-layout dataset.

Generate the dataset (once), train the paper's model with the tiny config on
the CPU, test it with every trial of the SYSU-MM01 protocols, plainly and
k-reciprocal re-ranked, and print the results side by side (`vireid compare`)
with the learning-free floor (a hand-made descriptor) and chance, with the
pictures: CMC curves, rank lists and a t-SNE of the test features. ``compare``
also trains the tiny AGW baseline and CAJ on the same data and adds their rows.
Everything lands in the demo folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from vireid.atomic import write_text
from vireid.data.images import load_image
from vireid.datasets import get_dataset
from vireid.datasets.sysu import sysu_test_images
from vireid.engine.tester import score_checkpoints
from vireid.engine.trainer import train
from vireid.evaluation.compare import comparison_table
from vireid.evaluation.feature_file import FeatureSet, load_features
from vireid.evaluation.protocols import ProtocolResult, evaluate_protocol
from vireid.evaluation.results_file import read_results
from vireid.models.handcrafted import describe_images
from vireid.progress import track
from vireid.recipe import load_config
from vireid.synthetic.writer import write_synthetic_dataset
from vireid.viz.cmc import draw_cmc_curves, protocol_cmc_curves
from vireid.viz.tsne import draw_tsne

DEMO_CONFIG = "tiny"  # a shipped config (vireid/configs/tiny.yaml)
DESCRIPTOR_FOLDER = "hand-made-descriptor"
VARIANTS = {
    method: [f"name=tiny_{method}", f"model.method={method}", "model.parts=0", "model.cmimpl=false"]
    + ["test.feature=global"]
    for method in ("agw", "caj")
}
"""The tiny config's other methods that ``vireid demo --compare`` trains too: run folder -> overrides."""


DEMO_OUTPUTS = (
    "config.yaml", "metrics.jsonl", "last.pt", "best.pt", "features.npz", "results.md", "results.json",
    "cmc.png", "tsne.png", "ranks_*.png", "tensorboard",
)  # fmt: skip
"""What a demo writes into a run folder: all that the next demo removes."""


def remove_demo_outputs(run_dir: Path) -> None:
    """Remove what an earlier demo wrote into ``run_dir``, nothing else (a user's exported
    ONNX files, notes, ... stay)."""
    for pattern in DEMO_OUTPUTS:
        for path in run_dir.glob(pattern):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()


def _train_and_test(config_overrides: list[str], run_dir: Path, progress: bool) -> list[ProtocolResult]:
    """Train the tiny config with ``config_overrides`` into ``run_dir`` (afresh), then score its last
    checkpoint plainly and re-ranked."""
    remove_demo_outputs(run_dir)  # each demo trains afresh; the data are kept, and whatever else is in the folder
    last = train(load_config(DEMO_CONFIG, config_overrides), run_dir, progress=progress)
    return score_checkpoints([last], progress=progress, overrides=["test.rerank=true"])


def run_demo(
    out: Path,
    workers: int | None = None,
    identities: int | None = None,
    images_per_id: int | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    progress: bool = True,
    compare: bool = False,
) -> list[ProtocolResult]:
    """Run the demo into ``out``; returns the trained model's results (both SYSU-MM01
    protocols, each plain and re-ranked). ``compare``: train and test the VARIANTS too."""
    data_root = out / "data" / "SYSU-MM01"
    if data_root.exists():
        print(f"using the synthetic dataset at {data_root}")
    else:
        summary = write_synthetic_dataset("sysu", data_root, identities, images_per_id, workers=workers)
        print(
            f"generated {summary.images} images of {summary.identities} "
            f"identities at {data_root} in {summary.seconds:.1f} s"
        )
    common = [f"data.root={data_root}", f"train.cache_dir={out / 'cache'}", *overrides]
    run_dir = out / "run"
    results = _train_and_test(common, run_dir, progress)
    variants = list(VARIANTS) if compare else []
    for variant in variants:
        _train_and_test([*VARIANTS[variant], *common], out / variant, progress)
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
    floor_results = [
        evaluate_protocol(protocol, [floor]) for protocol in get_dataset("sysu").protocols if protocol.by_default
    ]
    floor_folder = out / DESCRIPTOR_FOLDER
    floor_folder.mkdir(parents=True, exist_ok=True)
    floor_records = json.dumps([result.to_dict() for result in floor_results], indent=2) + "\n"
    write_text(floor_folder / "results.json", floor_records)
    chance = 1 / test_images.num_identities
    compared = {
        **protocol_cmc_curves(results, "trained model"),
        **protocol_cmc_curves(floor_results, "hand-made descriptor"),
    }
    config_name = load_config(DEMO_CONFIG, common).name
    draw_cmc_curves(
        compared, run_dir / "cmc.png", f"CMC on synthetic SYSU-MM01 ({config_name} config)", test_images.num_identities
    )
    table = comparison_table(read_results([run_dir, *(out / variant for variant in variants), floor_folder]))
    report = (
        f"# vireid demo: the paper's model (tiny config) on synthetic SYSU-MM01\n\n"
        f"Side by side (`vireid compare`; each run's full table is in its results.md):\n\n{table}\n\n"
        f"Chance rank-1: {100 * chance:.2f} % ({test_images.num_identities} test identities).\n\n"
        f"Pictures: CMC curves {run_dir / 'cmc.png'}, rank lists {run_dir / 'ranks_sysu-all.png'} "
        f"(green ✓: same person, red ✗: another), t-SNE of the test features {run_dir / 'tsne.png'}.\n\n"
        f"![CMC](run/cmc.png)\n\n![rank lists](run/ranks_sysu-all.png)\n\n![t-SNE](run/tsne.png)\n"
    )
    write_text(out / "results.md", report)
    print(report)
    print(f"demo folder: {out}")
    return results
