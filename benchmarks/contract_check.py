"""What a refactor must leave unchanged, as one JSON file to compare before and after on one machine:
the loss terms of the first 20 training steps and the scores after them of ``tiny``, ``sysu_agw``, ``sysu_full`` and
``sysu_caj`` (ResNet-18 stand-ins at 64x32, trained by the real engine on a synthetic SYSU-MM01),
and the parameter counts of their full-size networks. A script, not a test:

    python benchmarks/contract_check.py --out before.json
    ... change the code ...
    python benchmarks/contract_check.py --out after.json && cmp before.json after.json

Floats are written with ``float.hex``: equal files mean bitwise-equal losses.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

CONFIGS = ("tiny", "sysu_agw", "sysu_full", "sysu_caj")
STAND_IN = [
    "model.backbone=resnet18",
    "model.pretrained=none",
    "data.height=64",
    "data.width=32",
    "train.amp=fp32",
    "train.workers=0",
    "train.epochs=2",
    "train.steps_per_epoch=10",
    "train.log_every=1",
    "train.eval_every=0",
    "train.eval_last=true",
    "train.select_on=last",
    "train.precise_bn_batches=2",
    "test.batch_size=256",
]
"""Small and quick: ResNet-18 from scratch at 64x32, two epochs of 10 steps, one evaluation at the end."""
PARTS_AT_64 = ["model.parts=4", "model.part_dim=128"]  # 64x32 images give 4 rows: 4 stripes


def stand_in_run(name: str, data_root: str, folder: Path) -> dict:
    """The loss terms of every step of the stand-in run of config ``name`` and its final scores, as hex floats."""
    from vireid.engine.trainer import train
    from vireid.recipe import load_config

    overrides = [*STAND_IN, f"data.root={data_root}"]
    config = load_config(name, overrides)
    if config.model.parts:
        config = load_config(name, [*overrides, *PARTS_AT_64])
    train(config, folder / name, progress=False)
    records = [json.loads(line) for line in (folder / name / "metrics.jsonl").read_text().splitlines()]
    skipped = {"kind", "epoch", "step", "lr"}
    steps = [
        {key: float(value).hex() for key, value in record.items() if key not in skipped}
        for record in records
        if record.get("kind") == "step"
    ]
    last = records[-1]
    scores = {key: float(value).hex() for key, value in last.items() if key.startswith("sysu-all/")}
    return {"steps": steps, "scores": scores}


def parameter_counts(name: str) -> dict[str, int]:
    """Total, trainable and frozen parameters of the full-size network of config ``name`` (395 classes)."""
    from vireid.method import method_of
    from vireid.method import parameter_counts as count
    from vireid.recipe import load_config

    config = load_config(name, ["model.pretrained=none"])
    return count(method_of(config).build_model(config, 395, load_weights=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--data", default="runs/demo/data/SYSU-MM01", help="a synthetic SYSU-MM01 (vireid synth)")
    arguments = parser.parse_args()
    if not Path(arguments.data).is_dir():
        sys.exit(f"{arguments.data}: expected a SYSU-MM01 folder; write one with vireid synth --layout sysu")
    with tempfile.TemporaryDirectory() as folder:
        report = {
            name: {**stand_in_run(name, arguments.data, Path(folder)), "parameters": parameter_counts(name)}
            for name in CONFIGS
        }
    Path(arguments.out).write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    print(f"wrote {arguments.out}")


if __name__ == "__main__":
    main()
