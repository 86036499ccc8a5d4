"""Time the synthetic dataset writer on a SYSU-MM01-shaped set (not a test)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import append_section  # noqa: E402

from vireid.synthetic.writer import write_synthetic_dataset  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ids", type=int, default=200)
    parser.add_argument("--images-per-id", type=int, default=12)
    parser.add_argument("--size", default="128x64")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--append-to", help="append the table to this Markdown file")
    arguments = parser.parse_args()
    height, width = (int(value) for value in arguments.size.split("x"))
    rows = ["| layout | identities | images | size | workers | seconds | images/s |", "|---|---|---|---|---|---|---|"]
    for workers in arguments.workers:
        with tempfile.TemporaryDirectory() as folder:
            summary = write_synthetic_dataset(
                "sysu",
                Path(folder) / "SYSU-MM01",
                arguments.ids,
                arguments.images_per_id,
                size=(height, width),
                workers=workers,
            )
        rows.append(
            f"| sysu | {summary.identities} | {summary.images} | {height}×{width} | {workers} | "
            f"{summary.seconds:.1f} | {summary.images / summary.seconds:.0f} |"
        )
    table = "\n".join(rows)
    print(table)
    if arguments.append_to:
        append_section(arguments.append_to, "Synthetic data generation", table)


if __name__ == "__main__":
    main()
