"""The dataset readers against the layouts the generator writes, and the
reference query/gallery draws re-done independently in the tests."""

from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.io import loadmat, savemat
from scipy.io.matlab import MatlabObject

from vireid.data import DatasetError
from vireid.datasets import GalleryOptions, read_trial_split
from vireid.datasets.llcm import llcm_train_split
from vireid.datasets.regdb import regdb_train_split
from vireid.datasets.sysu import sysu_train_split
from vireid.modality import Modality


def _ids(path: Path) -> list[int]:
    return [int(token) for token in path.read_text().strip().split(",")]


def _folder_files(folder: Path) -> list[str]:
    return sorted(str(folder / name) for name in os.listdir(folder))


def _copy(root: Path, tmp_path: Path) -> Path:
    copy = tmp_path / root.name
    shutil.copytree(root, copy)
    return copy


# --- SYSU-MM01 -------------------------------------------------------------------------------


def test_sysu_train_split_holds_every_train_and_val_image(sysu_root):
    train_ids = _ids(sysu_root / "exp/train_id.txt") + _ids(sysu_root / "exp/val_id.txt")
    split = sysu_train_split(sysu_root)
    expected_visible = [
        path
        for person in sorted(train_ids)
        for camera in (1, 2, 4, 5)
        if (sysu_root / f"cam{camera}" / f"{person:04d}").is_dir()
        for path in _folder_files(sysu_root / f"cam{camera}" / f"{person:04d}")
    ]
    expected_infrared = [
        path
        for person in sorted(train_ids)
        for camera in (3, 6)
        if (sysu_root / f"cam{camera}" / f"{person:04d}").is_dir()
        for path in _folder_files(sysu_root / f"cam{camera}" / f"{person:04d}")
    ]
    assert list(split.paths) == expected_visible + expected_infrared
    assert set(split.person_ids.tolist()) == set(train_ids)
    # labels are 0..K-1 in ascending person-id order
    order = {person: label for label, person in enumerate(sorted(train_ids))}
    assert split.labels.tolist() == [order[person] for person in split.person_ids.tolist()]
    assert split.person_ids.tolist() == [int(Path(path).parent.name) for path in split.paths]
    assert split.camera_ids.tolist() == [int(Path(path).parent.parent.name[3:]) for path in split.paths]
    infrared = np.isin(split.camera_ids, (3, 6))
    assert (split.modalities[infrared] == Modality.INFRARED).all()
    assert (split.modalities[~infrared] == Modality.VISIBLE).all()


def test_sysu_train_split_without_val_leaves_val_ids_out(sysu_root):
    split = sysu_train_split(sysu_root, include_val=False)
    assert set(split.person_ids.tolist()) == set(_ids(sysu_root / "exp/train_id.txt"))
    assert split.labels.max() == len(_ids(sysu_root / "exp/train_id.txt")) - 1


def _agw_gallery(root: Path, cameras, trial: int) -> list[str]:
    """The reference procedure, literally: module-level random.seed then random.choice."""
    random.seed(trial)
    gallery = []
    for person in sorted(f"{person:04d}" for person in _ids(root / "exp/test_id.txt")):
        for camera in cameras:
            folder = os.path.join(root, camera, person)
            if os.path.isdir(folder):
                gallery.append(random.choice(sorted(folder + "/" + name for name in os.listdir(folder))))
    return gallery


@pytest.mark.parametrize("mode, cameras", [("all", ["cam1", "cam2", "cam4", "cam5"]), ("indoor", ["cam1", "cam2"])])
def test_sysu_single_shot_matches_reference_draws(sysu_root, mode, cameras):
    expected_query = [
        path
        for person in sorted(_ids(sysu_root / "exp/test_id.txt"))
        for camera in (3, 6)
        if (sysu_root / f"cam{camera}" / f"{person:04d}").is_dir()
        for path in _folder_files(sysu_root / f"cam{camera}" / f"{person:04d}")
    ]
    galleries = []
    for trial in range(10):
        query, gallery = read_trial_split(f"sysu-{mode}", sysu_root, trial)
        assert list(query.paths) == expected_query
        assert [os.path.normpath(path) for path in gallery.paths] == [
            os.path.normpath(path) for path in _agw_gallery(sysu_root, cameras, trial)
        ]
        assert set(gallery.camera_ids.tolist()) <= {int(camera[3:]) for camera in cameras}
        assert (query.modalities == Modality.INFRARED).all() and (gallery.modalities == Modality.VISIBLE).all()
        galleries.append(gallery.paths)
    assert len(set(galleries)) > 1, "different trials must draw different galleries"


def test_sysu_multi_shot_draws_up_to_ten_per_folder(sysu_root):
    _, gallery = read_trial_split("sysu-all", sysu_root, 2, GalleryOptions("multi"))
    random.seed(2)
    expected = []
    for person in sorted(_ids(sysu_root / "exp/test_id.txt")):
        for camera in (1, 2, 4, 5):
            folder = sysu_root / f"cam{camera}" / f"{person:04d}"
            if folder.is_dir():
                files = _folder_files(folder)
                expected += random.sample(files, min(10, len(files)))
    assert list(gallery.paths) == expected
    assert len(gallery) > len(read_trial_split("sysu-all", sysu_root, 2).gallery)


def test_sysu_official_draws_follow_rand_perm_cam(sysu_root):
    cells = loadmat(str(sysu_root / "exp/rand_perm_cam.mat"))["rand_perm_cam"]
    for trial, shot, shots in ((0, "single", 1), (7, "multi", 10)):
        _, gallery = read_trial_split("sysu-all", sysu_root, trial, GalleryOptions(shot, "official"))
        expected = []
        for camera in (1, 2, 4, 5):
            per_person = cells[camera - 1][0]
            for person in sorted(_ids(sysu_root / "exp/test_id.txt")):
                numbers = per_person[person - 1][0]
                if numbers.size:
                    expected += [
                        str(sysu_root / f"cam{camera}" / f"{person:04d}" / f"{int(n):04d}.jpg")
                        for n in numbers[trial][:shots]
                    ]
        assert list(gallery.paths) == expected


def test_sysu_official_draws_need_the_permutation_file(sysu_root, tmp_path):
    root = _copy(sysu_root, tmp_path)
    (root / "exp/rand_perm_cam.mat").unlink()
    with pytest.raises(DatasetError, match="rand_perm_cam.mat"):
        read_trial_split("sysu-all", root, 0, GalleryOptions(draws="official"))


def _struct_of(value) -> np.ndarray:
    struct = np.zeros((1, 1), dtype=[("numbers", object)])
    struct[0, 0]["numbers"] = value
    return struct


@pytest.mark.parametrize(
    "entry, found",
    [
        (np.array(["0001"]), "text"),
        (_struct_of(np.ones((10, 1))), "a struct"),
        (MatlabObject(_struct_of(np.ones((10, 1))), "containers.Map"), "a struct"),
        (np.full((10, 1), np.nan), "a 10x1 float64 array holding nan"),
    ],
)
def test_sysu_permutations_of_anything_but_image_numbers_are_refused(sysu_root, tmp_path, entry, found):
    root = _copy(sysu_root, tmp_path)
    cells = loadmat(str(root / "exp/rand_perm_cam.mat"))["rand_perm_cam"]
    per_person = cells[0][0]  # camera 1
    for person in range(len(per_person)):
        per_person[person][0] = entry
    savemat(str(root / "exp/rand_perm_cam.mat"), {"rand_perm_cam": cells})
    expected = "camera 1, person 1: expected a (trials, images) matrix of 1-based image numbers (or an empty one), "
    with pytest.raises(DatasetError, match=re.escape(expected + f"found {found}")):
        read_trial_split("sysu-all", root, 0, GalleryOptions(draws="official"))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda root: shutil.rmtree(root), "SYSU-MM01 root folder"),
        (lambda root: shutil.rmtree(root / "exp"), "exp/ folder"),
        (lambda root: (root / "exp/test_id.txt").unlink(), "test_id.txt: expected a one-line file"),
        (lambda root: (root / "exp/test_id.txt").write_text("1,2,x\n"), "found 'x'"),
        (lambda root: (root / "exp/test_id.txt").write_text("1,2\n3\n"), "ONE line"),
        (lambda root: (root / "exp/test_id.txt").write_text(""), "file is empty"),
        (lambda root: (root / "exp/test_id.txt").write_text("9000,9001\n"), "no image was found"),
    ],
)
def test_sysu_broken_layouts_are_reported_by_path(sysu_root, tmp_path, damage, message):
    root = _copy(sysu_root, tmp_path)
    damage(root)
    with pytest.raises(DatasetError, match=message) as caught:
        read_trial_split("sysu-all", root, 0)
    assert str(root) in str(caught.value)


def test_sysu_train_split_reports_missing_val_file(sysu_root, tmp_path):
    root = _copy(sysu_root, tmp_path)
    (root / "exp/val_id.txt").unlink()
    with pytest.raises(DatasetError, match="val_id.txt"):
        sysu_train_split(root)


# --- RegDB -----------------------------------------------------------------------------------


def _index_lines(path: Path) -> list[tuple[str, int]]:
    return [(line.split()[0], int(line.split()[1])) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("trial", [1, 10])
def test_regdb_test_split_follows_index_files(regdb_root, trial):
    visible = _index_lines(regdb_root / f"idx/test_visible_{trial}.txt")
    thermal = _index_lines(regdb_root / f"idx/test_thermal_{trial}.txt")
    query, gallery = read_trial_split("regdb-v2t", regdb_root, trial)
    assert list(query.paths) == [str(regdb_root / path) for path, _ in visible]
    assert query.person_ids.tolist() == [label for _, label in visible]
    assert list(gallery.paths) == [str(regdb_root / path) for path, _ in thermal]
    assert (query.modalities == Modality.VISIBLE).all() and (query.camera_ids == 1).all()
    assert (gallery.modalities == Modality.INFRARED).all() and (gallery.camera_ids == 2).all()
    swapped_query, swapped_gallery = read_trial_split("regdb-t2v", regdb_root, trial)
    assert swapped_query.paths == gallery.paths and swapped_gallery.paths == query.paths
    assert all(path.endswith(".bmp") and os.path.isfile(path) for path in query.paths + gallery.paths)


def test_regdb_train_split_is_the_trial_complement(regdb_root):
    train = regdb_train_split(regdb_root, trial=3)
    query, _ = read_trial_split("regdb-v2t", regdb_root, 3)
    assert not set(train.person_ids.tolist()) & set(query.person_ids.tolist())
    assert sorted(set(train.labels.tolist())) == list(range(train.num_identities))
    assert (train.modalities == Modality.VISIBLE).sum() == (train.modalities == Modality.INFRARED).sum()
    assert len(train) == len(_index_lines(regdb_root / "idx/train_visible_3.txt")) * 2


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda root: (root / "idx/test_thermal_1.txt").unlink(), "test_thermal_1.txt: expected an index file"),
        (
            lambda root: (root / "idx/test_visible_1.txt").write_text("Visible/1/a.bmp\n"),
            "line 1: expected 'relative/image/path label'",
        ),
        (
            lambda root: (root / "idx/test_visible_1.txt").write_text("Visible/1/missing.bmp 0\n"),
            "missing.bmp does not exist",
        ),
        (lambda root: (root / "idx/test_visible_1.txt").write_text("\n"), "the file is empty"),
        (lambda root: shutil.rmtree(root / "idx"), "idx/ folder"),
    ],
)
def test_regdb_broken_layouts_are_reported_by_path(regdb_root, tmp_path, damage, message):
    root = _copy(regdb_root, tmp_path)
    damage(root)
    with pytest.raises(DatasetError, match=message) as caught:
        read_trial_split("regdb-v2t", root, 1)
    assert str(root) in str(caught.value)


def test_index_files_list_only_images_inside_the_dataset_folder(regdb_root, tmp_path):
    root = _copy(regdb_root, tmp_path)
    index_file = root / "idx/test_visible_1.txt"
    outside = shutil.copy(root / _index_lines(index_file)[0][0], tmp_path / "outside.bmp")
    for listed in ("../outside.bmp", str(outside)):
        index_file.write_text(f"{listed} 0\n")
        with pytest.raises(DatasetError, match=f"line 1: lists {listed}, expected a path inside the dataset folder"):
            read_trial_split("regdb-v2t", root, 1)


def test_regdb_rejects_trials_outside_1_to_10(regdb_root):
    with pytest.raises(ValueError, match="1..10"):
        read_trial_split("regdb-v2t", regdb_root, 0)


# --- LLCM ------------------------------------------------------------------------------------


def _llcm_folder_walk(root: Path, folder: str, cameras):
    for person in sorted(_ids(root / "idx/test_id.txt")):
        for camera in cameras:
            directory = root / folder / f"cam{camera}" / f"{person:04d}"
            if directory.is_dir():
                yield person, camera, _folder_files(directory)


NIR_CAMERAS = (1, 2, 4, 5, 6, 7, 8, 9)


@pytest.mark.parametrize(
    "mode, every_folder, drawn_folder, every_cameras, drawn_cameras, drawn_are_queries",
    [
        ("ir2vis", "test_nir", "test_vis", NIR_CAMERAS, range(1, 10), False),
        ("vis2ir", "test_vis", "test_nir", range(1, 10), NIR_CAMERAS, True),
        ("vis2ir-visible-queries", "test_vis", "test_nir", range(1, 10), NIR_CAMERAS, False),
    ],
)
def test_llcm_test_split_matches_reference_draws(
    llcm_root, mode, every_folder, drawn_folder, every_cameras, drawn_cameras, drawn_are_queries
):
    """The test scripts' process_query_llcm (every image) and process_gallery_llcm (random.seed(trial),
    one random.choice per folder); published VIS->IR transposes, so its queries are the drawn images."""
    for trial in (0, 5):
        query, gallery = read_trial_split(f"llcm-{mode}", llcm_root, trial)
        every = [path for _, _, files in _llcm_folder_walk(llcm_root, every_folder, every_cameras) for path in files]
        random.seed(trial)
        drawn = [random.choice(files) for _, _, files in _llcm_folder_walk(llcm_root, drawn_folder, drawn_cameras)]
        assert (list(query.paths), list(gallery.paths)) == ((drawn, every) if drawn_are_queries else (every, drawn))
        assert query.person_ids.tolist() == [int(Path(path).parent.name) for path in query.paths]
        assert gallery.camera_ids.tolist() == [int(Path(path).parent.parent.name[3:]) for path in gallery.paths]
    expected_modality = Modality.VISIBLE if mode == "vis2ir-visible-queries" else Modality.INFRARED
    assert (query.modalities == expected_modality).all() and (gallery.modalities != expected_modality).all()


def test_llcm_train_split_reads_both_index_files(llcm_root):
    split = llcm_train_split(llcm_root)
    visible = _index_lines(llcm_root / "idx/train_vis.txt")
    infrared = _index_lines(llcm_root / "idx/train_nir.txt")
    assert list(split.paths) == [str(llcm_root / path) for path, _ in visible + infrared]
    assert split.person_ids.tolist() == [label for _, label in visible + infrared]
    assert split.modalities.tolist() == [0] * len(visible) + [1] * len(infrared)
    assert not set(split.person_ids.tolist()) & set(_ids(llcm_root / "idx/test_id.txt"))
    assert sorted(set(split.labels.tolist())) == list(range(split.num_identities))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda root: shutil.rmtree(root / "test_nir"), "test_nir/ folder"),
        (lambda root: (root / "idx/test_id.txt").write_text("1;2\n"), "found '1;2'"),
        (lambda root: shutil.rmtree(root / "idx"), "idx/ folder"),
    ],
)
def test_llcm_broken_layouts_are_reported_by_path(llcm_root, tmp_path, damage, message):
    root = _copy(llcm_root, tmp_path)
    damage(root)
    with pytest.raises(DatasetError, match=message):
        read_trial_split("llcm-ir2vis", root, 0)


def test_llcm_train_index_lines_need_a_camera_folder(llcm_root, tmp_path):
    root = _copy(llcm_root, tmp_path)
    first_line = (root / "idx/train_vis.txt").read_text().splitlines()[0]
    image = root / first_line.split()[0]
    shutil.copy(image, root / "loose.jpg")
    (root / "idx/train_vis.txt").write_text("loose.jpg 1\n")
    with pytest.raises(DatasetError, match="camN"):
        llcm_train_split(root)
