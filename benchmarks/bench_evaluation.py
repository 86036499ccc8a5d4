"""Time the evaluation (protocol scoring given distances or features) against a
per-query loop in the reference style. A script, not a test:

    python benchmarks/bench_evaluation.py [--device cpu|cuda] [--repeats 5] [--append-to BENCHMARKS.md]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import append_section  # noqa: E402
from reference_loop import per_query_loop  # noqa: E402

from vireid.evaluation import evaluate_features, pairwise_distances, rank_metrics  # noqa: E402


def _features(rng, person_ids, dimension, noise):
    """Features with identity structure: a per-person centre plus noise."""
    centres = rng.normal(size=(int(person_ids.max()) + 1, dimension))
    return (centres[person_ids] + noise * rng.normal(size=(len(person_ids), dimension))).astype(np.float32)


def sysu_sized_trial(rng, dimension):
    """3,803 infrared queries (cam3/cam6) x 301 visible gallery images (cam1,2,4,5) of 96 ids."""
    query_ids = np.sort(rng.integers(0, 96, 3803))
    gallery_ids = np.sort(np.concatenate([np.arange(96), rng.integers(0, 96, 301 - 96)]))
    query_cameras = rng.choice([3, 6], 3803)
    gallery_cameras = rng.choice([1, 2, 4, 5], 301)
    return query_ids, gallery_ids, query_cameras, gallery_cameras, "sysu", _features(rng, query_ids, dimension, 1.5), _features(rng, gallery_ids, dimension, 1.5)


def regdb_sized_trial(rng, dimension):
    """2,060 x 2,060: 206 ids x 10 images per modality."""
    ids = np.repeat(np.arange(206), 10)
    return ids, ids, np.ones(2060, dtype=np.int64), np.full(2060, 2), "regdb", _features(rng, ids, dimension, 1.5), _features(rng, ids, dimension, 1.5)


def _median_seconds(function, repeats, device):
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
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
    loop_seconds = {}
    for name, build in (("SYSU-sized trial", sysu_sized_trial), ("RegDB-sized trial", regdb_sized_trial)):
        query_ids, gallery_ids, query_cameras, gallery_cameras, protocol, query_features, gallery_features = build(rng, arguments.dimension)
        distances = pairwise_distances(torch.as_tensor(query_features, device=device), torch.as_tensor(gallery_features, device=device))
        distances_numpy = distances.cpu().numpy()
        ours = rank_metrics(distances, query_ids, gallery_ids, query_cameras, gallery_cameras, protocol)
        reference = per_query_loop(distances_numpy, query_ids, gallery_ids, query_cameras, gallery_cameras, protocol)
        assert np.allclose(ours.cmc, reference[0], atol=1e-6), "CMC differs from the reference loop"
        assert abs(ours.mAP - reference[1]) < 1e-6 and abs(ours.mINP - reference[2]) < 1e-6, "mAP/mINP differ"
        on_device = {key: torch.as_tensor(value, device=device) for key, value in
                     (("q", query_features), ("g", gallery_features), ("qi", query_ids), ("gi", gallery_ids), ("qc", query_cameras), ("gc", gallery_cameras))}
        scoring = _median_seconds(lambda: rank_metrics(distances, on_device["qi"], on_device["gi"], on_device["qc"], on_device["gc"], protocol), arguments.repeats, device)
        full = _median_seconds(lambda: evaluate_features(on_device["q"], on_device["g"], on_device["qi"], on_device["gi"], on_device["qc"], on_device["gc"], protocol), arguments.repeats, device)
        loop = _median_seconds(lambda: per_query_loop(distances_numpy, query_ids, gallery_ids, query_cameras, gallery_cameras, protocol), 1, "cpu")
        loop_seconds[name] = loop
        rows.append(
            f"| {name} | {len(query_ids)} × {len(gallery_ids)} | {1000 * scoring:.1f} | {1000 * full:.1f} | "
            f"{1000 * loop:.0f} | {loop / scoring:.0f}× |"
        )
    # all ten SYSU trials from one feature matrix, as `vireid evaluate` runs them
    query_ids, _, query_cameras, _, _, query_features, _ = sysu_sized_trial(rng, arguments.dimension)
    gallery_ids_all = np.repeat(np.arange(96), 70)
    gallery_features_all = _features(rng, gallery_ids_all, arguments.dimension, 1.5)
    gallery_cameras_all = rng.choice([1, 2, 4, 5], len(gallery_ids_all))
    query_on_device = torch.as_tensor(query_features, device=device)
    gallery_on_device = torch.as_tensor(gallery_features_all, device=device)

    def ten_trials():
        for trial in range(10):
            picked = np.random.default_rng(trial).choice(len(gallery_ids_all), 301, replace=False)
            evaluate_features(query_on_device, gallery_on_device[torch.as_tensor(picked, device=device)], query_ids,
                              gallery_ids_all[picked], query_cameras, gallery_cameras_all[picked], "sysu")

    total = _median_seconds(ten_trials, max(1, arguments.repeats // 2), device)
    ten_loops = 10 * loop_seconds["SYSU-sized trial"]
    rows.append(
        f"| 10 SYSU trials, features given | 10 × 3803 × 301 | | {1000 * total:.0f} (total) | "
        f"{1000 * ten_loops:.0f} (10 × one trial) | {ten_loops / total:.0f}× |"
    )
    table = "\n".join(rows)
    print(table)
    if arguments.append_to:
        append_section(arguments.append_to, f"Evaluation ({arguments.dimension}-d features)", table, device)


if __name__ == "__main__":
    main()
