"""Writes synthetic datasets in the exact on-disk layouts of SYSU-MM01, RegDB and LLCM.

The real readers are exercised on these folders (tests, demo, benchmarks), so
every folder name, id file, index file, file name and image format follows the
official layout. Each person gets a stable appearance (vireid.data.appearance)
rendered per modality and camera. Everything is a function of the seed.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from vireid.data import llcm, regdb, sysu
from vireid.data.appearance import render_person, sample_appearance
from vireid.data.files import person_folder_name
from vireid.data.splits import Modality
from vireid.errors import UserError

LAYOUTS = ("sysu", "regdb", "llcm")
DEFAULT_IDENTITIES = {"sysu": 120, "regdb": 40, "llcm": 90}
DEFAULT_IMAGES_PER_ID = {"sysu": 12, "regdb": 10, "llcm": 12}
DEFAULT_SIZE = (128, 64)
MARKER_FILE = "synthetic.json"
"""Written at the dataset root with the generation settings; the readers ignore it."""

_SYSU_PERMUTATION_TRIALS = 10


@dataclass(frozen=True)
class ImageJob:
    """One image to render: where it goes and what it shows."""

    relative_path: str
    person_id: int
    modality: int
    camera_id: int
    index: int  # the image's number within its person folder, for seeding


@dataclass
class DatasetPlan:
    """Every image and text file of a synthetic dataset, before anything is written."""

    images: list[ImageJob] = field(default_factory=list)
    text_files: dict[str, str] = field(default_factory=dict)
    permutations: np.ndarray | None = None  # SYSU's rand_perm_cam cell array


@dataclass(frozen=True)
class SynthSummary:
    layout: str
    root: str
    identities: int
    images: int
    seconds: float


def _images_per_camera(total: int, cameras: list[int], rng: np.random.Generator) -> dict[int, int]:
    """Spread ``total`` images over ``cameras`` (at most ``total`` cameras, counts differ by at most one)."""
    cameras = [int(camera) for camera in rng.permutation(cameras)][: max(1, total)]
    counts = {camera: total // len(cameras) for camera in cameras}
    for camera in cameras[: total % len(cameras)]:
        counts[camera] += 1
    return dict(sorted(counts.items()))


def _camera_subset(cameras: tuple[int, ...], keep_probability: float, rng: np.random.Generator) -> list[int]:
    """A random non-empty subset of ``cameras``: not every person passes every camera."""
    kept = [camera for camera in cameras if rng.random() < keep_probability]
    return kept or [int(rng.choice(cameras))]


def _split_ids(person_ids: list[int], fractions: tuple[float, ...], rng: np.random.Generator) -> list[list[int]]:
    """Partition ids at random into sorted groups of the given fractions (each non-empty; the last takes the rest)."""
    shuffled = [int(person_id) for person_id in rng.permutation(person_ids)]
    groups, start = [], 0
    for fraction in fractions:
        size = max(1, round(fraction * len(shuffled)))
        groups.append(sorted(shuffled[start : start + size]))
        start += size
    groups.append(sorted(shuffled[start:]))
    return groups


def _id_line(person_ids: list[int]) -> str:
    return ",".join(str(person_id) for person_id in person_ids) + "\n"


def plan_sysu(identities: int, images_per_id: int, rng: np.random.Generator) -> DatasetPlan:
    """SYSU-MM01: camN/<id4>/NNNN.jpg, exp/{train,val,test}_id.txt, exp/rand_perm_cam.mat.

    Ids split like the real set (296 train, 99 val, 96 test of 491). Every
    person is seen by at least one indoor visible camera (cam1/cam2) and one
    infrared camera.
    """
    if identities < 4:
        raise UserError(f"--ids: a SYSU-MM01 layout needs at least 4 identities, got {identities}")
    person_ids = list(range(1, identities + 1))
    test_ids, val_ids, train_ids = _split_ids(person_ids, (96 / 491, 99 / 491), rng)
    plan = DatasetPlan(
        text_files={
            "exp/train_id.txt": _id_line(train_ids),
            "exp/val_id.txt": _id_line(val_ids),
            "exp/test_id.txt": _id_line(test_ids),
        }
    )
    folder_sizes: dict[tuple[int, int], int] = {}
    for person_id in person_ids:
        visible = _camera_subset(sysu.VISIBLE_CAMERAS, 0.7, rng)
        if not {1, 2} & set(visible):
            visible.append(int(rng.choice((1, 2))))
        infrared = _camera_subset(sysu.INFRARED_CAMERAS, 0.8, rng)
        for modality, cameras in ((Modality.VISIBLE, visible), (Modality.INFRARED, infrared)):
            for camera_id, count in _images_per_camera(images_per_id, sorted(cameras), rng).items():
                folder_sizes[(camera_id, person_id)] = count
                for index in range(1, count + 1):
                    plan.images.append(
                        ImageJob(f"cam{camera_id}/{person_folder_name(person_id)}/{index:04d}.jpg", person_id, modality, camera_id, index)
                    )
    plan.permutations = _sysu_permutations(folder_sizes, identities, rng)
    return plan


def _sysu_permutations(folder_sizes: dict[tuple[int, int], int], identities: int, rng: np.random.Generator) -> np.ndarray:
    """The rand_perm_cam cell array: per camera, per person id, a (10, n) matrix of 1-based image numbers."""
    cameras = np.empty((6, 1), dtype=object)
    for camera_id in range(1, 7):
        per_person = np.empty((identities, 1), dtype=object)
        for person_id in range(1, identities + 1):
            count = folder_sizes.get((camera_id, person_id), 0)
            per_person[person_id - 1, 0] = np.array(
                [rng.permutation(count) + 1 for _ in range(_SYSU_PERMUTATION_TRIALS)], dtype=np.float64
            ).reshape(_SYSU_PERMUTATION_TRIALS, count)
        cameras[camera_id - 1, 0] = per_person
    return cameras


def plan_regdb(identities: int, images_per_id: int, rng: np.random.Generator) -> DatasetPlan:
    """RegDB: Visible/<id>/..._v_K.bmp, Thermal/<id>/..._t_K.bmp and idx files for trials 1..10.

    Each trial splits the persons at random into halves for training and test;
    the label column is the person number (0-based, as in the released files).
    """
    if identities < 4 or identities % 2:
        raise UserError(f"--ids: a RegDB layout needs an even number of at least 4 identities, got {identities}")
    plan = DatasetPlan()
    paths: dict[tuple[int, int], list[str]] = {}
    for person_id in range(1, identities + 1):
        gender = "female" if rng.random() < 0.5 else "male"
        view = "front" if rng.random() < 0.5 else "back"
        for modality, folder, letter in ((Modality.VISIBLE, "Visible", "v"), (Modality.INFRARED, "Thermal", "t")):
            camera_id = 1 if modality == Modality.VISIBLE else 2
            for index in range(1, images_per_id + 1):
                relative_path = f"{folder}/{person_id}/{gender}_{person_id}_{view}_{letter}_{index}.bmp"
                plan.images.append(ImageJob(relative_path, person_id, modality, camera_id, index))
                paths.setdefault((modality, person_id), []).append(relative_path)
    for trial in regdb.TRIALS:
        test_ids, train_ids = _split_ids(list(range(1, identities + 1)), (0.5,), rng)
        for part, part_ids in (("train", train_ids), ("test", test_ids)):
            for modality, name in ((Modality.VISIBLE, "visible"), (Modality.INFRARED, "thermal")):
                lines = [f"{path} {person_id - 1}" for person_id in part_ids for path in paths[(modality, person_id)]]
                plan.text_files[f"idx/{part}_{name}_{trial}.txt"] = "\n".join(lines) + "\n"
    return plan


def plan_llcm(identities: int, images_per_id: int, rng: np.random.Generator) -> DatasetPlan:
    """LLCM: {train,test}_{vis,nir}/camN/<id4>/..., idx/train_{vis,nir}.txt, idx/test_id.txt.

    About a third of the persons are test ids (351 of 1,064 in the real set).
    """
    if identities < 4:
        raise UserError(f"--ids: an LLCM layout needs at least 4 identities, got {identities}")
    test_ids, train_ids = _split_ids(list(range(1, identities + 1)), (1 / 3,), rng)
    plan = DatasetPlan(text_files={"idx/test_id.txt": _id_line(test_ids)})
    train_lines: dict[Modality, list[str]] = {Modality.VISIBLE: [], Modality.INFRARED: []}
    test_set = set(test_ids)
    for person_id in range(1, identities + 1):
        part = "test" if person_id in test_set else "train"
        for modality, suffix in ((Modality.VISIBLE, "vis"), (Modality.INFRARED, "nir")):
            cameras = _camera_subset(llcm.TEST_CAMERAS[modality], 0.45, rng)
            for camera_id, count in _images_per_camera(images_per_id, cameras, rng).items():
                for index in range(1, count + 1):
                    name = f"{person_folder_name(person_id)}_c{camera_id:02d}_f{index:04d}_{suffix}.jpg"
                    relative_path = f"{part}_{suffix}/cam{camera_id}/{person_folder_name(person_id)}/{name}"
                    plan.images.append(ImageJob(relative_path, person_id, modality, camera_id, index))
                    if part == "train":
                        train_lines[modality].append(f"{relative_path} {person_id}")
    plan.text_files["idx/train_vis.txt"] = "\n".join(train_lines[Modality.VISIBLE]) + "\n"
    plan.text_files["idx/train_nir.txt"] = "\n".join(train_lines[Modality.INFRARED]) + "\n"
    return plan


_PLANNERS = {"sysu": plan_sysu, "regdb": plan_regdb, "llcm": plan_llcm}


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
    if plan.permutations is not None:
        from scipy.io import savemat

        savemat(str(root / "exp" / "rand_perm_cam.mat"), {"rand_perm_cam": plan.permutations})
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
    if layout not in LAYOUTS:
        raise UserError(f"--layout: expected one of {', '.join(LAYOUTS)}, got {layout!r}")
    identities = DEFAULT_IDENTITIES[layout] if identities is None else identities
    images_per_id = DEFAULT_IMAGES_PER_ID[layout] if images_per_id is None else images_per_id
    if images_per_id < 1:
        raise UserError(f"--images-per-id: expected at least 1, got {images_per_id}")
    height, width = size
    if height < 16 or width < 8:
        raise UserError(f"--size: expected at least 16x8 (HxW), got {height}x{width}")
    out = Path(out)
    if out.exists() and not force:
        raise UserError(f"{out}: already exists; choose a new folder or pass --force to replace it")
    workers = workers if workers is not None else min(8, os.cpu_count() or 1)
    started = time.perf_counter()
    plan = _PLANNERS[layout](identities, images_per_id, np.random.default_rng([seed, 2]))
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        temporary.mkdir()
        _write_plan(plan, temporary, seed, size, workers)
        settings = {"layout": layout, "identities": identities, "images_per_id": images_per_id, "seed": seed, "size": [height, width]}
        (temporary / MARKER_FILE).write_text(json.dumps(settings, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        temporary.rename(out)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return SynthSummary(layout, str(out), identities, len(plan.images), time.perf_counter() - started)
