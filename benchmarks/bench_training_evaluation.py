"""Time one evaluation during training (vireid.engine.selection.evaluate_test_trials, the trainer's
own: the features of only the test images its trials score) against the features of every test
image scored on the same trials, the test images read from their files or decoded once into the
cache. A script, not a test:

    python benchmarks/bench_training_evaluation.py [--root runs/demo/data/SYSU-MM01] [--config tiny]
        [--trials 1] [--cache-dir DIR] [--device cpu|cuda] [--repeats 3] [--append-to BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import append_section, synchronize  # noqa: E402

from vireid.datasets import get_dataset, get_protocol  # noqa: E402
from vireid.engine.extract import extract_test_features, held_test_images  # noqa: E402
from vireid.engine.selection import evaluate_test_trials, evaluation_protocol, in_training_config  # noqa: E402
from vireid.evaluation.protocols import evaluate_protocol, scored_rows  # noqa: E402
from vireid.method import method_of  # noqa: E402
from vireid.recipe import load_config  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="runs/demo/data/SYSU-MM01")
    parser.add_argument("--config", default="tiny")
    parser.add_argument("--trials", type=int, default=1, help="train.eval_trials")
    parser.add_argument("--cache-dir", default="", help="also time the test set decoded once into this cache")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--append-to")
    arguments = parser.parse_args()
    device = torch.device(arguments.device)
    rows = ["| test images | extracted | images | median s | min s | mAP |", "|---|---|---|---|---|---|"]
    for cache_dir in dict.fromkeys(["", arguments.cache_dir]):
        settings = [f"data.root={arguments.root}", f"train.eval_trials={arguments.trials}"]
        config = load_config(arguments.config, [*settings, f"train.cache_dir={cache_dir}"])
        protocol = get_protocol(evaluation_protocol(config))
        if get_dataset(protocol.dataset).one_model_per_trial:
            print(f"{protocol.dataset}: every test image of a trial is scored; nothing to compare", file=sys.stderr)
            return 2
        trials = protocol.trials[: arguments.trials]
        torch.manual_seed(0)
        model = method_of(config).build_model(config, 8, load_weights=False).to(device)
        held = held_test_images(config, device, progress=False)

        def every_image():
            features = extract_test_features(model, in_training_config(config), device, False, held)
            return len(features.images), evaluate_protocol(protocol, [features], trials)

        def scored_images():
            result = evaluate_test_trials(model, config, protocol.name, device, held, False)
            return len(scored_rows(protocol, held.split, trials).rows), result  # the images it extracted

        for extracted, evaluation in (("every image", every_image), ("only the scored ones", scored_images)):
            times = []
            for _ in range(arguments.repeats):
                start = time.perf_counter()
                images, result = evaluation()
                synchronize(device)
                times.append(time.perf_counter() - start)
            source = "decoded once (train.cache_dir)" if cache_dir else "read from their files"
            times.sort()
            rows.append(
                f"| {source} | {extracted} | {images} | {times[len(times) // 2]:.2f} | {times[0]:.2f} "
                f"| {100 * result.mean()['mAP']:.2f} |"
            )
            print(rows[-1], flush=True)
    if arguments.append_to:
        title = f"One evaluation during training: every test image or the scored ones ({arguments.config})"
        append_section(arguments.append_to, title, "\n".join(rows), str(device))
    return 0


if __name__ == "__main__":
    sys.exit(main())
