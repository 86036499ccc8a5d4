"""Time and peak memory of k-reciprocal re-ranking (vireid.evaluation.rerank, k1 20, k2 6,
lambda 0.3) on 2048-d features with identity structure: a SYSU-MM01 trial (3,803 queries x
301 gallery) and a 20,000-image set (10,000 x 10,000). Each size runs in a process of its own,
so the peak resident memory it reports is that size's alone. A script, not a test:

    python benchmarks/bench_rerank.py [--device cpu|cuda] [--sizes 3803x301 10000x10000] [--append-to BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import append_section  # noqa: E402


def measure(num_query: int, num_gallery: int, device: str, identities_per_image: float = 0.1) -> dict:
    """One re-ranking of random features of (Q + G) / 10 identities; seconds and peak memory."""
    import torch

    from vireid.evaluation.rerank import k_reciprocal_distances

    generator = torch.Generator().manual_seed(0)
    total = num_query + num_gallery
    person_ids = torch.randint(0, max(1, int(total * identities_per_image)), (total,), generator=generator)
    centres = torch.randn(int(person_ids.max()) + 1, 2048, generator=generator)
    features = torch.nn.functional.normalize(centres[person_ids] + torch.randn(total, 2048, generator=generator), dim=1)
    features = features.to(device)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    distances = k_reciprocal_distances(features[:num_query], features[num_query:])
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    record = {"seconds": seconds, "peak_rss_gib": peak, "before_gib": baseline, "shape": list(distances.shape)}
    if device.startswith("cuda"):
        record["peak_cuda_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", nargs="+", default=["3803x301", "10000x10000"], help="QxG")
    parser.add_argument("--append-to")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # QxG: measure in this process and print JSON
    arguments = parser.parse_args()
    if arguments.one:
        num_query, num_gallery = (int(value) for value in arguments.one.split("x"))
        print(json.dumps(measure(num_query, num_gallery, arguments.device)))
        return
    memory = "peak GPU memory (GiB)" if arguments.device.startswith("cuda") else "peak resident memory (GiB)"
    rows = [f"| Q × G | images | seconds | {memory} | resident before (GiB) |", "|---|---|---|---|---|"]
    for size in arguments.sizes:
        command = [sys.executable, __file__, "--one", size, "--device", arguments.device]
        record = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
        num_query, num_gallery = (int(value) for value in size.split("x"))
        peak = record.get("peak_cuda_gib", record["peak_rss_gib"])
        rows.append(
            f"| {num_query} × {num_gallery} | {num_query + num_gallery} | {record['seconds']:.2f} "
            f"| {peak:.2f} | {record['before_gib']:.2f} |"
        )
        print(rows[-1], flush=True)
    table = "\n".join(rows)
    print(table)
    if arguments.append_to:
        append_section(arguments.append_to, "Re-ranking (k-reciprocal, 2048-d features)", table, arguments.device)


if __name__ == "__main__":
    main()
