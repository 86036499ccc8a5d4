"""Images per second the training loader delivers (real augmentations, identity-balanced
batches) on a synthetic SYSU-MM01-shaped set, by recipe (AGW's one view per image, or CAJ's
three views with erasing and channel augmentations), workers, with and without the
decoded-image cache. A script, not a test:

    python benchmarks/bench_data.py [--sizes 64x32 288x144] [--recipes agw caj] [--workers 0 1 2] \
        [--append-to BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import append_section  # noqa: E402

from vireid.data.cache import image_cache  # noqa: E402
from vireid.data.dataset import SplitDataset  # noqa: E402
from vireid.data.sampler import CrossModalityBatchSampler, ViewBatchSampler  # noqa: E402
from vireid.data.transforms import modality_views, training_views  # noqa: E402
from vireid.datasets.sysu import sysu_train_split  # noqa: E402
from vireid.recipe import load_config  # noqa: E402
from vireid.synthetic.writer import write_synthetic_dataset  # noqa: E402


def images_per_second(dataset: SplitDataset, sampler: ViewBatchSampler, workers: int, batches: int) -> float:
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=workers)
    iterator = iter(loader)
    next(iterator)  # worker start-up is not throughput
    started, images = time.perf_counter(), 0
    for _ in range(batches):
        images += next(iterator)[0].shape[0]
    return images / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", help="an existing SYSU-MM01-layout folder (default: generate one)")
    parser.add_argument("--ids", type=int, default=200)
    parser.add_argument("--sizes", nargs="+", default=["64x32", "288x144"], help="training input sizes HxW")
    parser.add_argument("--recipes", nargs="+", default=["agw", "caj"], help="methods whose augmentations to run")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batches", type=int, default=15)
    parser.add_argument("--append-to")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = arguments.root or write_synthetic_dataset("sysu", Path(folder) / "SYSU-MM01", arguments.ids, 12).root
        split = sysu_train_split(root)
        batches = CrossModalityBatchSampler(
            split.labels, split.modalities, 8, 4, seed=0, num_batches=arguments.batches + 1
        )
        rows = ["| input | recipe | source | workers | images/s |", "|---|---|---|---|---|"]
        for size in arguments.sizes:
            height, width = (int(value) for value in size.split("x"))
            decoded = image_cache(split, height, width, Path(folder) / "cache")
            for recipe in arguments.recipes:
                settings = [f"model.method={recipe}", f"data.height={height}", f"data.width={width}"]
                config = load_config(None, [*settings, f"train.padding={max(2, height // 28)}"])
                views = {modality: len(names) for modality, names in modality_views(config.train).items()}
                sampler = ViewBatchSampler(batches, split.modalities, views)
                for source, dataset in (
                    ("decode files", SplitDataset(split, training_views(config))),
                    ("cache", SplitDataset(split, training_views(config), decoded)),
                ):
                    for workers in arguments.workers:
                        rate = images_per_second(dataset, sampler, workers, arguments.batches)
                        rows.append(f"| {height}×{width} | {recipe} | {source} | {workers} | {rate:.0f} |")
                        print(rows[-1], flush=True)
    table = "\n".join(rows)
    print(table)
    if arguments.append_to:
        append_section(arguments.append_to, f"Data pipeline (synthetic SYSU-MM01, {len(split)} training images)", table)


if __name__ == "__main__":
    main()
