"""Time the evaluation (protocol scoring given distances or features) against a
per-query loop in the reference style. A script, not a test:

    python benchmarks/bench_evaluation.py [--device cpu|cuda] [--repeats 5] [--append-to BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import append_section  # noqa: E402
from reference_loop import per_query_loop  # noqa: E402

from vireid.evaluation import evaluate_features, pairwise_distances, rank_metrics  # noqa: E402

SYSU_TEST_IDS, SYSU_QUERIES, SYSU_GALLERY = 96, 3803, 301
REGDB_TEST_IDS, REGDB_IMAGES_PER_ID = 206, 10


class Trial(NamedTuple):
    query_ids: np.ndarray  # (Q,)
    gallery_ids: np.ndarray  # (G,)
    query_cameras: np.ndarray  # (Q,)
    gallery_cameras: np.ndarray  # (G,)
    scoring: str  # the dataset whose scoring rule applies
    query_features: np.ndarray  # (Q, D) float32
    gallery_features: np.ndarray  # (G, D) float32

    def labels_on(self, device: str) -> tuple[torch.Tensor, ...]:
        """Query ids, gallery ids, query cameras, gallery cameras as tensors on ``device``."""
        return tuple(
            torch.as_tensor(values, device=device)
            for values in (self.query_ids, self.gallery_ids, self.query_cameras, self.gallery_cameras)
        )


def _features(rng: np.random.Generator, person_ids: np.ndarray, dimension: int, noise: float) -> np.ndarray:
    """Features with identity structure: a per-person centre plus noise."""
    centres = rng.normal(size=(int(person_ids.max()) + 1, dimension))
    return (centres[person_ids] + noise * rng.normal(size=(len(person_ids), dimension))).astype(np.float32)


def sysu_sized_trial(rng: np.random.Generator, dimension: int) -> Trial:
    """3,803 infrared queries (cam3/cam6) x 301 visible gallery images (cam1,2,4,5) of 96 ids."""
    query_ids = np.sort(rng.integers(0, SYSU_TEST_IDS, SYSU_QUERIES))
    extra_gallery_ids = rng.integers(0, SYSU_TEST_IDS, SYSU_GALLERY - SYSU_TEST_IDS)
    gallery_ids = np.sort(np.concatenate([np.arange(SYSU_TEST_IDS), extra_gallery_ids]))
    return Trial(
        query_ids,
        gallery_ids,
        rng.choice([3, 6], SYSU_QUERIES),
        rng.choice([1, 2, 4, 5], SYSU_GALLERY),
        "sysu",
        _features(rng, query_ids, dimension, 1.5),
        _features(rng, gallery_ids, dimension, 1.5),
    )


def regdb_sized_trial(rng: np.random.Generator, dimension: int) -> Trial:
    """2,060 x 2,060: 206 ids x 10 images per modality."""
    ids = np.repeat(np.arange(REGDB_TEST_IDS), REGDB_IMAGES_PER_ID)
    return Trial(
        ids,
        ids,
        np.ones(len(ids), dtype=np.int64),
        np.full(len(ids), 2),
        "regdb",
        _features(rng, ids, dimension, 1.5),
        _features(rng, ids, dimension, 1.5),
    )


def _median_seconds(function: Callable[[], object], repeats: int, device: str) -> float:
    """Median wall time of ``repeats`` calls after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        started = time.perf_counter()
        function()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _time_trial(name: str, trial: Trial, device: str, repeats: int) -> tuple[str, float]:
    """One table row, checked against the reference loop, and the loop's seconds."""
    query_features = torch.as_tensor(trial.query_features, device=device)
    gallery_features = torch.as_tensor(trial.gallery_features, device=device)
    labels = trial.labels_on(device)
    distances = pairwise_distances(query_features, gallery_features)
    distances_numpy = distances.cpu().numpy()
    reference_arguments = (
        distances_numpy,
        trial.query_ids,
        trial.gallery_ids,
        trial.query_cameras,
        trial.gallery_cameras,
        trial.scoring,
    )

    ours = rank_metrics(distances, *labels, trial.scoring)
    reference_cmc, reference_map, reference_minp = per_query_loop(*reference_arguments)
    assert np.allclose(ours.cmc, reference_cmc, atol=1e-6), f"{name}: CMC differs from the reference loop"
    assert abs(ours.mAP - reference_map) < 1e-6, f"{name}: mAP differs from the reference loop"
    assert abs(ours.mINP - reference_minp) < 1e-6, f"{name}: mINP differs from the reference loop"

    scoring = _median_seconds(lambda: rank_metrics(distances, *labels, trial.scoring), repeats, device)
    with_distances = _median_seconds(
        lambda: evaluate_features(query_features, gallery_features, *labels, trial.scoring), repeats, device
    )
    loop = _median_seconds(lambda: per_query_loop(*reference_arguments), 1, "cpu")
    row = (
        f"| {name} | {len(trial.query_ids)} × {len(trial.gallery_ids)} | {1000 * scoring:.1f} | "
        f"{1000 * with_distances:.1f} | {1000 * loop:.0f} | {loop / scoring:.0f}× |"
    )
    return row, loop


def _time_ten_sysu_trials(rng: np.random.Generator, dimension: int, device: str, repeats: int) -> float:
    """Total seconds of 10 evaluate_features calls, each on a different random 301-image gallery."""
    trial = sysu_sized_trial(rng, dimension)
    images_per_id = 70
    pool_ids = np.repeat(np.arange(SYSU_TEST_IDS), images_per_id)
    pool_cameras = rng.choice([1, 2, 4, 5], len(pool_ids))
    pool_features = torch.as_tensor(_features(rng, pool_ids, dimension, 1.5), device=device)
    query_features = torch.as_tensor(trial.query_features, device=device)
    galleries = [np.random.default_rng(seed).choice(len(pool_ids), SYSU_GALLERY, replace=False) for seed in range(10)]

    def ten_trials() -> None:
        for picked in galleries:
            evaluate_features(
                query_features,
                pool_features[torch.as_tensor(picked, device=device)],
                trial.query_ids,
                pool_ids[picked],
                trial.query_cameras,
                pool_cameras[picked],
                "sysu",
            )

    return _median_seconds(ten_trials, max(1, repeats // 2), device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dimension", type=int, default=2048)
    parser.add_argument("--append-to", help="append the table to this Markdown file")
    arguments = parser.parse_args()
    device = arguments.device
    rng = np.random.default_rng(0)
    rows = [
        "| case | Q × G | rank_metrics (ms) | evaluate_features (ms) | reference loop (ms) | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    sysu_row, sysu_loop_seconds = _time_trial(
        "SYSU-sized trial", sysu_sized_trial(rng, arguments.dimension), device, arguments.repeats
    )
    regdb_row, _ = _time_trial(
        "RegDB-sized trial", regdb_sized_trial(rng, arguments.dimension), device, arguments.repeats
    )
    ten_trials_seconds = _time_ten_sysu_trials(rng, arguments.dimension, device, arguments.repeats)
    ten_loops_seconds = 10 * sysu_loop_seconds
    rows += [
        sysu_row,
        regdb_row,
        f"| 10 SYSU trials, features given | 10 × 3803 × 301 | | {1000 * ten_trials_seconds:.0f} (total) | "
        f"{1000 * ten_loops_seconds:.0f} (10 × one trial) | {ten_loops_seconds / ten_trials_seconds:.0f}× |",
    ]
    table = "\n".join(rows)
    print(table)
    if arguments.append_to:
        append_section(arguments.append_to, f"Evaluation ({arguments.dimension}-d features)", table, device)


if __name__ == "__main__":
    main()
