"""The AGW reference's training loop, re-implemented, and vireid's loop, timed in one run on one
machine: images/s of each, and the share of time each spends waiting for data. A script, not a test:

    python benchmarks/reference_train_loop.py [--device cpu|cuda] [--sizes 64x32 288x144] [--steps 6] \\
        [--workers 2] [--variants loader cache device] [--append-to BENCHMARKS.md]

What the reference does (mangye16/Cross-Modal-Re-ID-baseline at e817a26: ``pre_process_sysu.py``,
``data_loader.py``, ``utils.py``, ``train.py``), and this file does the same:

- every training image resized once (PIL, ``Image.ANTIALIAS``, i.e. LANCZOS) to 144 x 288 and held in
  one uint8 array per modality;
- ``IdentitySampler``: per batch 8 identities drawn without replacement, 4 visible and 4 infrared
  images of each drawn with replacement (global ``np.random``); a dataset item is one visible and one
  infrared image, each through ``ToPILImage, Pad(10), RandomCrop, RandomHorizontalFlip, ToTensor,
  Normalize`` in the DataLoader's workers (batch 32 pairs, ``drop_last``, no pinned memory, workers
  started afresh every epoch);
- the step: ``.cuda()`` copies, ``net(input1, input2)`` in fp32, cross-entropy on the logits plus the
  weighted regularised triplet on the pooled features, zero_grad, backward, step, then five ``.item()``
  reads (losses and accuracy) per step; ``cudnn.benchmark = True``.

The network is vireid's AGW (equal to the reference's to round-off) for both loops, so the figures
compare the loops: data path, precision, copies and synchronisation. Each loop's rate is one epoch of
``--steps`` steps, worker start-up included (both start their workers each epoch); the loops run in
turn ``--repeats`` times, in reverse order every other time, and each one's best epoch counts: a
machine's speed drifts (the first heavy run after a pause is the fastest).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision import transforms

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import append_section  # noqa: E402

from vireid.data.transforms import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from vireid.datasets.sysu import sysu_train_split  # noqa: E402
from vireid.engine.trainer import build_optimizer, build_run, train_one_epoch  # noqa: E402
from vireid.losses import weighted_regularized_triplet  # noqa: E402
from vireid.modality import Modality  # noqa: E402
from vireid.recipe import (  # noqa: E402
    build_loss,
    build_model,
    load_config,  # noqa: E402
)
from vireid.synthetic.writer import write_synthetic_dataset  # noqa: E402

FP32 = ["train.amp=fp32", "train.channels_last=never"]  # the reference's precision and memory format
VIREID_VARIANTS = {
    "loader": FP32,  # per-image augmentation in the workers, images decoded from their files
    "cache": [*FP32, "train.cache_dir={cache}"],  # the same, from the decoded-image cache
    "device": [*FP32, "train.cache_dir={cache}", "train.augment_on=device"],  # batches augmented on the device
    "bf16": ["train.cache_dir={cache}", "train.augment_on=device", "train.amp=bf16", "train.channels_last=always"],
}
"""vireid's ways of feeding and computing a step: name -> config overrides ({cache}: a cache folder)."""


def preprocess(split, height: int, width: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per modality: (N, H, W, 3) uint8 images resized with LANCZOS, and their labels (pre_process_sysu.py)."""
    arrays = {}
    for modality in (Modality.VISIBLE, Modality.INFRARED):
        rows = np.flatnonzero(split.modalities == modality)
        images = []
        for row in rows:
            with Image.open(split.paths[row]) as image:
                images.append(np.array(image.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)))
        arrays[modality] = (np.stack(images), split.labels[rows])
    return arrays


class IdentitySampler(Sampler):
    """utils.py's IdentitySampler: (int(N / (P K)) + 1) batches of P identities without replacement,
    K images per identity and modality with replacement; it yields positions, the dataset maps them."""

    def __init__(
        self, color_labels: np.ndarray, thermal_labels: np.ndarray, num_pos: int, batch_size: int, batches: int = 0
    ):
        identities = np.unique(color_labels)
        color_rows = {label: np.flatnonzero(color_labels == label) for label in identities}
        thermal_rows = {label: np.flatnonzero(thermal_labels == label) for label in identities}
        total = max(len(color_labels), len(thermal_labels))
        color, thermal = [], []
        for _ in range(batches or int(total / (batch_size * num_pos)) + 1):  # batches: a shorter epoch
            for label in np.random.choice(identities, batch_size, replace=False):
                color.append(np.random.choice(color_rows[label], num_pos))
                thermal.append(np.random.choice(thermal_rows[label], num_pos))
        self.color_index, self.thermal_index = np.concatenate(color), np.concatenate(thermal)

    def __iter__(self):
        return iter(np.arange(len(self.color_index)))

    def __len__(self) -> int:
        return len(self.color_index)


class ReferenceData(Dataset):
    """data_loader.py's SYSUData: one visible and one infrared image per item, each transformed alone."""

    def __init__(self, arrays, sampler: IdentitySampler, transform):
        (self.color, self.color_labels), (self.thermal, self.thermal_labels) = (
            arrays[Modality.VISIBLE],
            arrays[Modality.INFRARED],
        )
        self.color_index, self.thermal_index, self.transform = sampler.color_index, sampler.thermal_index, transform

    def __len__(self) -> int:
        return len(self.color_index)

    def __getitem__(self, index: int):
        color, thermal = self.color_index[index], self.thermal_index[index]
        return (
            self.transform(self.color[color]),
            self.transform(self.thermal[thermal]),
            int(self.color_labels[color]),
            int(self.thermal_labels[thermal]),
        )


def reference_transform(height: int, width: int) -> transforms.Compose:
    """train.py's transform_train (torchvision's v1 API, as the reference)."""
    return transforms.Compose(
        [
            transforms.ToPILImage(),
            transforms.Pad(10),
            transforms.RandomCrop((height, width)),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def reference_epoch(config, arrays, steps: int, workers: int, device: torch.device) -> dict:
    """One epoch of the reference loop, ``steps`` steps long: images/s and the share spent waiting for data."""
    benchmark_before, torch.backends.cudnn.benchmark = torch.backends.cudnn.benchmark, True
    num_classes = int(max(labels.max() for _, labels in arrays.values())) + 1
    model = build_model(config, num_classes, load_weights=False).to(device).train()
    optimizer, *_ = build_optimizer(
        model, build_loss(config, num_classes, model), config
    )  # backbone 0.1 lr, the rest lr
    pairs = config.train.identities_per_batch * config.train.instances_per_modality
    started = time.perf_counter()
    sampler = IdentitySampler(arrays[Modality.VISIBLE][1], arrays[Modality.INFRARED][1], 4, 8, steps)
    dataset = ReferenceData(arrays, sampler, reference_transform(config.data.height, config.data.width))
    loader = DataLoader(dataset, batch_size=pairs, sampler=sampler, num_workers=workers, drop_last=True)
    waited, asked, correct = 0.0, time.perf_counter(), 0.0
    for input1, input2, label1, label2 in loader:  # to its end, as an epoch does: the workers' shutdown counts
        waited += time.perf_counter() - asked
        labels = torch.cat((label1, label2), 0).to(device)
        input1, input2 = input1.to(device), input2.to(device)
        modalities = torch.cat(
            [torch.full((len(input1),), Modality.VISIBLE), torch.full((len(input2),), Modality.INFRARED)]
        )
        output = model(torch.cat((input1, input2), 0), modalities.to(device))
        loss_id = torch.nn.functional.cross_entropy(output.global_logits, labels)
        loss_tri = weighted_regularized_triplet(output.pooled, labels)
        correct += output.global_logits.max(1).indices.eq(labels).sum().item() / 2
        loss = loss_id + loss_tri
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        for value in (loss, loss_id, loss_tri):  # the AverageMeter updates
            value.item()
        asked = time.perf_counter()
    seconds = time.perf_counter() - started
    torch.backends.cudnn.benchmark = benchmark_before  # vireid's loops run with their own setting
    return {"images_per_second": steps * 2 * pairs / seconds, "data_wait": waited / seconds}


def vireid_epoch(config, run_dir: Path, device: str) -> dict:
    """One epoch of vireid's own loop (build_run, train_one_epoch) with ``config``."""
    run = build_run(config, run_dir, None, device, progress=False)
    try:
        record = train_one_epoch(run, 0, progress=False)
    finally:
        run.log.close()
    return {"images_per_second": record["images_per_second"], "data_wait": record["data_wait"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="sysu_agw", help="the network both loops train (default AGW)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", nargs="+", default=["64x32", "288x144"], help="training input sizes HxW")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=["loader", "cache", "device"], choices=list(VIREID_VARIANTS))
    parser.add_argument("--ids", type=int, default=60, help="synthetic identities (default 60)")
    parser.add_argument("--repeats", type=int, default=2, help="epochs of each loop, in turn; the best counts")
    parser.add_argument("--append-to")
    arguments = parser.parse_args()
    device = torch.device(arguments.device)
    rows = ["| input | loop | images/s | waiting for data | vs reference |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as folder:
        root = write_synthetic_dataset("sysu", Path(folder) / "SYSU-MM01", arguments.ids, 12).root
        split = sysu_train_split(root)
        for size in arguments.sizes:
            height, width = (int(value) for value in size.split("x"))
            common = [f"data.root={root}", f"data.height={height}", f"data.width={width}", "model.pretrained=none"]
            common += [f"train.steps_per_epoch={arguments.steps}", f"train.workers={arguments.workers}"]
            common += ["train.epochs=1", "train.eval_every=0", *arguments.set]
            config = load_config(arguments.config, common)
            arrays = preprocess(split, height, width)
            results: dict[str, dict] = {}
            for repeat in range(arguments.repeats):  # the loops in turn, each repeat: the best rate of each counts
                np.random.seed(repeat)
                torch.manual_seed(repeat)
                rounds = {
                    "reference (AGW train.py)": lambda: reference_epoch(
                        config, arrays, arguments.steps, arguments.workers, device
                    )
                }
                for variant in arguments.variants:
                    overrides = [value.format(cache=Path(folder) / "cache") for value in VIREID_VARIANTS[variant]]
                    variant_config = load_config(arguments.config, [*common, *overrides])
                    run_dir = Path(folder) / f"{size}-{variant}-{repeat}"
                    rounds[f"vireid {variant}"] = lambda c=variant_config, d=run_dir: vireid_epoch(c, d, str(device))
                order = list(rounds.items())
                for loop, measure in order if repeat % 2 == 0 else order[::-1]:  # each loop gets to run first
                    result = measure()
                    if loop not in results or result["images_per_second"] > results[loop]["images_per_second"]:
                        results[loop] = result
            reference = results["reference (AGW train.py)"]
            for loop, result in results.items():
                speed_up = result["images_per_second"] / reference["images_per_second"]
                rows.append(
                    f"| {height}×{width} | {loop} | {result['images_per_second']:.0f} "
                    f"| {100 * result['data_wait']:.0f} % | {speed_up:.2f}× |"
                )
                print(rows[-1], flush=True)
    table = "\n".join(rows)
    print(table)
    if arguments.append_to:
        title = f"Training loop: the AGW reference's against vireid's ({config.name}, {arguments.steps} steps)"
        append_section(arguments.append_to, title, table, str(device))


if __name__ == "__main__":
    main()
