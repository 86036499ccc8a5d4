"""Helpers shared by the tests of methods run through the commands: the walk from a checkpoint
through extract, export, index and search on the synthetic SYSU-MM01 set, and the learning-rate
schedule the reference repositories write by hand."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime

from vireid.cli import main
from vireid.datasets.sysu import sysu_test_images
from vireid.modality import Modality


@dataclass
class Walk:
    gallery_features: np.ndarray  # (12, D) from `vireid extract`
    export_differences: list[float]  # ONNX Runtime against PyTorch, one per modality
    onnx_width: int  # D of the visible ONNX file's output
    hits: list[dict]  # `vireid search --json` of two infrared queries, top 3


def extract_export_search(checkpoint: Path, sysu_root: Path, folder: Path, capsys) -> Walk:
    """12 visible test images extracted and indexed, the checkpoint exported to ONNX, two infrared
    test images searched for among them."""
    gallery = sysu_test_images(sysu_root).of_modality(Modality.VISIBLE)
    (folder / "gallery.txt").write_text("\n".join(gallery.paths[:12]) + "\n")
    extract = ["extract", str(checkpoint), "--images", str(folder / "gallery.txt"), "--modality", "visible"]
    assert main([*extract, "--out", str(folder / "gallery.npz"), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["export", str(checkpoint), "--out", str(folder / "onnx")]) == 0
    differences = [
        float(line.rsplit(" ", 1)[1]) for line in capsys.readouterr().out.splitlines() if "max abs diff" in line
    ]
    session = onnxruntime.InferenceSession(str(folder / "onnx" / f"{checkpoint.stem}.visible.onnx"))
    index = ["index", str(folder / "gallery.npz"), "--modality", "visible", "--out", str(folder / "index.npz")]
    assert main(index) == 0
    queries = sysu_test_images(sysu_root).of_modality(Modality.INFRARED).paths[:2]
    (folder / "queries.txt").write_text("\n".join(queries) + "\n")
    search = ["search", str(folder / "index.npz"), "--images", str(folder / "queries.txt")]
    search += ["--checkpoint", str(checkpoint), "--modality", "infrared", "--top-k", "3"]
    assert main([*search, "--json", str(folder / "hits.json")]) == 0
    return Walk(
        np.load(folder / "gallery.npz")["features"],
        differences,
        session.get_outputs()[0].shape[1],
        json.loads((folder / "hits.json").read_text()),
    )


def reference_learning_rate(epoch: int, last_step: int, lr: float = 0.1) -> float:
    """adjust_learning_rate of the references, epochs from 0: warm-up over 10 epochs, lr until 20,
    x0.1 until ``last_step`` (AGW train.py, ICCV21_CAJ train_ext.py: 50; DEEN train.py: 80), then x0.01."""
    if epoch < 10:
        return lr * (epoch + 1) / 10
    if epoch < 20:
        return lr
    if epoch < last_step:
        return lr * 0.1
    return lr * 0.01
