"""The demo: the main job, end to end, on a generated SYSU-MM01-layout dataset.

Generate the dataset (once), describe every test image, score the SYSU-MM01
protocol over its 10 trials, print the table and write the run folder.
Until the learned models land, the descriptor is the hand-made one of
vireid.models.handcrafted (the no-learning floor).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from vireid.data.synthetic import write_synthetic_dataset
from vireid.data.sysu import sysu_test_images
from vireid.evaluation.feature_file import FeatureSet, load_features, save_features
from vireid.evaluation.protocols import ProtocolResult, evaluate_protocol, results_table
from vireid.models.handcrafted import describe_split


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.partial-{os.getpid()}")
    temporary.write_text(text)
    os.replace(temporary, path)


def run_demo(
    out: Path, workers: int | None = None, identities: int | None = None, images_per_id: int | None = None
) -> list[ProtocolResult]:
    """Run the demo into ``out`` (dataset size: the synthetic defaults unless given)."""
    data_root = out / "data" / "SYSU-MM01"
    if data_root.exists():
        print(f"using the synthetic dataset at {data_root}")
    else:
        summary = write_synthetic_dataset("sysu", data_root, identities, images_per_id, workers=workers)
        print(f"generated {summary.images} images of {summary.identities} identities at {data_root} in {summary.seconds:.1f} s")
    test_images = sysu_test_images(data_root)
    features = describe_split(test_images, progress=True)
    feature_file = save_features(
        out / "features" / "sysu_test_handcrafted.npz",
        FeatureSet(features, test_images, {"dataset": "sysu", "root": str(data_root), "extractor": "handcrafted"}),
    )
    feature_set = load_features(feature_file)
    results = [evaluate_protocol(name, [feature_set]) for name in ("sysu-all", "sysu-indoor")]
    chance = 1 / test_images.num_identities
    table = results_table(results)
    report = (
        f"# vireid demo: hand-made descriptor on synthetic SYSU-MM01\n\n{table}\n\n"
        f"Chance rank-1: {100 * chance:.2f} % ({test_images.num_identities} test identities). "
        f"Features: {feature_file}\n"
    )
    _write_atomically(out / "results.md", report)
    _write_atomically(out / "results.json", json.dumps([result.to_dict() for result in results], indent=2) + "\n")
    print(report)
    print(f"run folder: {out}")
    return results
