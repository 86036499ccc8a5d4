"""Writes synthetic datasets in the exact on-disk layouts of the registered datasets.

The real readers are exercised on these folders (tests, demo, benchmarks), so
every folder name, id file, index file, file name and image format follows the
official layout: each dataset module plans its own layout (its
SyntheticLayout), and this module renders and writes the plan. Each person gets
a stable appearance (vireid.synthetic.appearance) rendered per modality and
camera. Everything is a function of the seed.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vireid.atomic import partial_path, remove_stale_partials
from vireid.data.synthetic_plan import DatasetPlan, ImageJob
from vireid.datasets import DATASETS, SyntheticLayout
from vireid.errors import UserError
from vireid.memory import require_memory
from vireid.modality import Modality
from vireid.synthetic.appearance import render_person, sample_appearance

DEFAULT_SIZE = (128, 64)
PLAN_BYTES_PER_IMAGE = 700
"""Memory the plan holds per image (its ImageJob, path and id-file text): 250 to 680 bytes, measured."""
RENDER_BYTES_PER_PIXEL = 80
"""Memory a worker needs per pixel of the image it renders (float layers): 35 to 77 bytes, measured."""
MARKER_FILE = "synthetic.json"
"""Written at the dataset root with the generation settings; the readers ignore it."""


def synthetic_layouts() -> dict[str, SyntheticLayout]:
    """The layouts `vireid synth` can write: every registered dataset that plans one."""
    return {name: spec.synthetic for name, spec in DATASETS.items() if spec.synthetic is not None}


@dataclass(frozen=True)
class SynthSummary:
    layout: str
    root: str
    identities: int
    images: int
    seconds: float


def _render_person_images(seed: int, person_id: int, jobs: list[ImageJob], root: str, size: tuple[int, int]) -> None:
    """Render and save every image of one person (runs in a worker process)."""
    appearance = sample_appearance(np.random.default_rng([seed, 0, person_id]))
    height, width = size
    for job in jobs:
        image_rng = np.random.default_rng([seed, 1, person_id, job.modality, job.camera_id, job.index])
        pixels = render_person(appearance, Modality(job.modality), job.camera_id, image_rng, height, width)
        path = os.path.join(root, job.relative_path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        image = Image.fromarray(pixels, mode="RGB")
        if path.endswith(".jpg"):
            image.save(path, quality=92)
        else:
            image.save(path)


def _write_plan(plan: DatasetPlan, root: Path, seed: int, size: tuple[int, int], workers: int) -> None:
    for relative_path, text in plan.text_files.items():
        (root / relative_path).parent.mkdir(parents=True, exist_ok=True)
        (root / relative_path).write_text(text)
    for relative_path, write in plan.binary_files.items():
        (root / relative_path).parent.mkdir(parents=True, exist_ok=True)
        write(root / relative_path)
    by_person: dict[int, list[ImageJob]] = {}
    for job in plan.images:
        by_person.setdefault(job.person_id, []).append(job)
    arguments = [(seed, person_id, jobs, str(root), size) for person_id, jobs in by_person.items()]
    if workers <= 1:
        for argument in arguments:
            _render_person_images(*argument)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(_render_person_images, *argument) for argument in arguments]:
            future.result()


def write_synthetic_dataset(
    layout: str,
    out: str | Path,
    identities: int | None = None,
    images_per_id: int | None = None,
    seed: int = 0,
    size: tuple[int, int] = DEFAULT_SIZE,
    workers: int | None = None,
    force: bool = False,
) -> SynthSummary:
    """Write a synthetic dataset of ``layout`` into the folder ``out``.

    ``images_per_id`` is the number of images of each person in EACH modality,
    spread over the cameras that see the person. The folder is written under a
    temporary name and renamed when complete, so a failed run leaves nothing
    half-written. An existing ``out`` is replaced only with ``force``.
    """
    layouts = synthetic_layouts()
    if layout not in layouts:
        raise UserError(f"--layout: expected one of {', '.join(layouts)}, got {layout!r}")
    planner = layouts[layout]
    identities = planner.identities if identities is None else identities
    images_per_id = planner.images_per_id if images_per_id is None else images_per_id
    if images_per_id < 1:
        raise UserError(f"--images-per-id: expected at least 1, got {images_per_id}")
    height, width = size
    if height < 16 or width < 8:
        raise UserError(f"--size: expected at least 16x8 (HxW), got {height}x{width}")
    out = Path(out)
    if out.exists() and not force:
        raise UserError(f"{out}: already exists; choose a new folder or pass --force to replace it")
    if out.exists() and any(out.iterdir()) and not (out / MARKER_FILE).is_file():
        raise UserError(
            f"{out}: not a synthetic dataset of vireid (no {MARKER_FILE} in it); --force replaces only those, "
            f"so nothing of yours is deleted: choose a new folder"
        )
    workers = workers if workers is not None else min(8, os.cpu_count() or 1)
    num_images = identities * images_per_id * len(Modality)
    require_memory(
        num_images * PLAN_BYTES_PER_IMAGE + max(1, workers) * height * width * RENDER_BYTES_PER_PIXEL,
        f"--ids {identities} --images-per-id {images_per_id} --size {height}x{width}: "
        f"{num_images:,} images, rendered by {max(1, workers)} worker(s),",
    )
    started = time.perf_counter()
    plan = planner.plan(identities, images_per_id, np.random.default_rng([seed, 2]))
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(out)
    temporary = partial_path(out)
    shutil.rmtree(temporary, ignore_errors=True)  # this process's own, from a failed earlier call
    try:
        temporary.mkdir()
        _write_plan(plan, temporary, seed, size, workers)
        settings = {
            "layout": layout,
            "identities": identities,
            "images_per_id": images_per_id,
            "seed": seed,
            "size": [height, width],
        }
        (temporary / MARKER_FILE).write_text(json.dumps(settings, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        temporary.rename(out)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return SynthSummary(layout, str(out), identities, len(plan.images), time.perf_counter() - started)
