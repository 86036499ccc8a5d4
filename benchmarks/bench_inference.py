"""Feature-extraction throughput: PyTorch eager vs ONNX Runtime (CPU), batch 1 and 64.
A script, not a test:

    python benchmarks/bench_inference.py --config sysu_full --append-to BENCHMARKS.md
    python benchmarks/bench_inference.py --device cuda --append-to BENCHMARKS.md   # eager on the GPU too

The model is the config's test-time feature of one modality (infrared), untrained
weights (speed does not depend on them), on random images at the config's size.
Images per second count the network only, not decoding. ONNX Runtime runs the
file `vireid export` writes, with as many threads as PyTorch uses.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import append_section  # noqa: E402

from vireid.modality import Modality  # noqa: E402
from vireid.recipe import (
    build_model,  # noqa: E402
    load_config,  # noqa: E402
)
from vireid.retrieval.encoders import onnx_encoder  # noqa: E402
from vireid.retrieval.export import FeatureModel, export_onnx  # noqa: E402


def images_per_second(run, batch: int, seconds: float) -> float:
    """Run ``run()`` (one batch) once to warm up, then for about ``seconds``."""
    run()
    done, started = 0, time.perf_counter()
    while done == 0 or time.perf_counter() - started < seconds:
        run()
        done += 1
    return done * batch / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="sysu_full")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--device", default="cpu", help="device of the eager rows (ONNX Runtime stays on the CPU)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--seconds", type=float, default=10.0, help="time per row")
    parser.add_argument("--append-to")
    arguments = parser.parse_args()
    config = load_config(arguments.config, ["model.pretrained=none", *arguments.set])
    model = build_model(config, 395, load_weights=False).eval()
    device = torch.device(arguments.device)
    feature_model = FeatureModel(model, Modality.INFRARED, config).eval()
    with tempfile.TemporaryDirectory() as folder:
        path = export_onnx(model, config, Modality.INFRARED, Path(folder) / "model.onnx")
        encoder = onnx_encoder(path, Modality.INFRARED)  # ONNX Runtime, as many threads as PyTorch
    feature_model.to(device)
    rows = []
    for batch in arguments.batches:
        images = torch.randn(batch, 3, config.data.height, config.data.width)
        on_device = images.to(device)

        def eager() -> None:
            with torch.inference_mode():
                feature_model(on_device).cpu()

        def onnx() -> None:
            encoder.encode(images)

        eager_rate = images_per_second(eager, batch, arguments.seconds)
        onnx_rate = images_per_second(onnx, batch, arguments.seconds)
        with torch.inference_mode():
            difference = np.abs(encoder.encode(images) - feature_model(on_device).cpu().numpy()).max()
        rows.append(
            f"| {batch} | {eager_rate:.1f} | {onnx_rate:.1f} | {onnx_rate / eager_rate:.2f}× | {difference:.1e} |"
        )
        print(rows[-1], flush=True)
    size = f"{config.data.height}×{config.data.width}"
    table = (
        f"Model: `{arguments.config}` ({config.model.backbone}, "
        f"parts {config.model.parts}, feature {config.test.feature}, "
        f"flip {config.test.flip}), {size}, infrared stem; {torch.get_num_threads()} threads.\n\n"
        f"| batch | PyTorch eager ({arguments.device}) img/s | ONNX "
        "Runtime (CPU) img/s | ORT / eager | max abs diff |\n"
        "|---|---|---|---|---|\n" + "\n".join(rows)
    )
    print(table)
    if arguments.append_to:
        append_section(arguments.append_to, f"Inference: eager vs ONNX Runtime, {size}", table, arguments.device)


if __name__ == "__main__":
    main()
