"""Bad inputs inside datasets and among a user's own images: SYSU-MM01's permutation file,
LLCM and RegDB index files, identities seen in one modality only, and images of unusual
pixel formats. Each is read as a person expects or refused in one line naming the file."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.io import loadmat, savemat
from test_bad_inputs import _fails_in_one_line

from vireid.data.sampler import CrossModalityBatchSampler
from vireid.data.splits import Split
from vireid.datasets import GalleryOptions, get_protocol, read_trial_split, trial_rows
from vireid.datasets.llcm import llcm_train_split
from vireid.datasets.regdb import regdb_test_images
from vireid.datasets.sysu import sysu_test_images, sysu_train_split
from vireid.errors import ConfigError, DatasetError, DatasetWarning
from vireid.evaluation.feature_file import FeatureSet, save_features
from vireid.evaluation.protocols import evaluate_protocol


def _copy(root: Path, tmp_path: Path) -> Path:
    """A copy of a session-wide synthetic dataset, free to damage."""
    return Path(shutil.copytree(root, tmp_path / root.name))


def _ids(path: Path) -> list[int]:
    return [int(token) for token in path.read_text().strip().split(",")]


# --- SYSU-MM01's exp/rand_perm_cam.mat -----------------------------------------------------


def _saved(variables: dict):
    return lambda path, original: savemat(str(path), variables)


def _cells_changed(change):
    """The original rand_perm_cam cells, changed in place by ``change``, saved again."""

    def write(path: Path, original: bytes) -> None:
        path.write_bytes(original)
        cells = loadmat(str(path))["rand_perm_cam"]
        cells = change(cells)
        savemat(str(path), {"rand_perm_cam": cells})

    return write


def _text_of_person(cells):
    cells[2, 0][0, 0] = "1 2 3"  # a char array where camera 3, person 1's matrix belongs
    return cells


def _cell_of_person(cells):
    nested = np.empty((1, 1), dtype=object)
    nested[0, 0] = np.ones((10, 2))
    cells[0, 0][1, 0] = nested
    return cells


def _zero_based(cells):
    cells[3, 0][0, 0] = np.zeros((10, 3))
    return cells


def _not_a_cell(cells):
    cells[1, 0] = np.ones((3, 1))
    return cells


@pytest.mark.parametrize(
    "write, expected",
    [
        (lambda path, original: path.write_bytes(original[: len(original) // 2]), "it is damaged or of another kind"),
        (lambda path, original: path.write_text("rand_perm_cam = {[1 2 3]}\n"), "it is damaged or of another kind"),
        (lambda path, original: path.write_bytes(b""), "damaged or of another kind (Mat file appears to be truncated)"),
        (_saved({"permutations": np.ones((2, 2))}), "expected a variable 'rand_perm_cam', found ['permutations']"),
        (
            _saved({"rand_perm_cam": np.ones((10, 4))}),
            "expected 'rand_perm_cam' to be a cell vector of 6 cameras (cam1..cam6), found a 10x4 float64 array",
        ),
        (_saved({"rand_perm_cam": np.zeros((0, 0))}), "cell vector of 6 cameras (cam1..cam6), found a 0x0 float64"),
        (_cells_changed(lambda cells: cells[:5]), "cell vector of 6 cameras (cam1..cam6), found a 5x1 cell array"),
        (_cells_changed(_not_a_cell), "expected camera 2 to be a cell vector of person ids, found a 3x1 float64 array"),
        (
            _cells_changed(_text_of_person),
            "camera 3, person 1: expected a (trials, images) matrix of 1-based image numbers (or an empty one), "
            "found text",
        ),
        (_cells_changed(_cell_of_person), "camera 1, person 2: expected a (trials, images) matrix"),
        (_cells_changed(_zero_based), "camera 4, person 1: expected a (trials, images) matrix of 1-based image "),
    ],
)
def test_a_damaged_permutation_file_is_named_in_one_line(sysu_root, tmp_path, capsys, write, expected):
    features = tmp_path / "sysu.npz"
    images = sysu_test_images(sysu_root)
    random_features = np.random.default_rng(0).normal(size=(len(images), 8)).astype(np.float32)
    save_features(features, FeatureSet(random_features, images, {"dataset": "sysu"}))
    permutations = tmp_path / "rand_perm_cam.mat"
    write(permutations, (sysu_root / "exp/rand_perm_cam.mat").read_bytes())
    arguments = ["evaluate", "--features", str(features), "--protocol", "sysu-all", "--trials", "0"]
    error = _fails_in_one_line(
        capsys, [*arguments, "--draws", "official", "--permutations", str(permutations)], expected
    )
    assert f"error: {permutations}: " in error


def test_a_wrong_number_is_named_with_its_value_when_the_dataset_reads_its_own_file(sysu_root, tmp_path):
    root = _copy(sysu_root, tmp_path)
    permutations = root / "exp/rand_perm_cam.mat"
    _cells_changed(_zero_based)(permutations, permutations.read_bytes())
    with pytest.raises(DatasetError) as caught:
        read_trial_split("sysu-all", root, 0, GalleryOptions(draws="official"))
    assert str(caught.value) == (
        f"{permutations}: camera 4, person 1: expected a (trials, images) matrix of 1-based image numbers "
        "(or an empty one), found a 10x3 float64 array holding 0"
    )


# --- LLCM and RegDB index files ------------------------------------------------------------


def test_index_files_with_blank_lines_spaces_tabs_and_windows_line_endings_read_alike(llcm_root, regdb_root, tmp_path):
    for original_root, index_name, read in (
        (llcm_root, "idx/train_nir.txt", llcm_train_split),
        (regdb_root, "idx/test_visible_1.txt", lambda root: regdb_test_images(root, 1)),
    ):
        root = _copy(original_root, tmp_path)
        index = root / index_name
        lines = index.read_text().splitlines()
        untidy = ["", *(f"  {path}\t{label}  " for path, label in (line.split() for line in lines)), "   ", ""]
        index.write_bytes("\r\n".join(untidy).encode())
        original, untidy_split = read(original_root), read(root)
        assert untidy_split.paths == tuple(path.replace(str(original_root), str(root)) for path in original.paths)
        assert untidy_split.person_ids.tolist() == original.person_ids.tolist()


@pytest.mark.parametrize(
    "bad_line, expected",
    [
        (
            "{path} {label} extra",
            "expected 'relative/image/path label' (two fields), found 3 field(s): '{path} {label} extra'",
        ),
        ("{path}", "expected 'relative/image/path label' (two fields), found 1 field(s): '{path}'"),
        ("{path} x", "expected 'relative/image/path label' with a whole-number label, found label 'x'"),
        ("{path} 1.5", "expected 'relative/image/path label' with a whole-number label, found label '1.5'"),
        ("{path} -3", "expected 'relative/image/path label' with a whole-number label, found label '-3'"),
        ("gone/0001.jpg {label}", "lists gone/0001.jpg, but {root}/gone/0001.jpg does not exist"),
        ("{folder} {label}", "lists {folder}, but {root}/{folder} is a folder, not an image file"),
    ],
)
@pytest.mark.parametrize("dataset, index_name", [("llcm", "idx/train_nir.txt"), ("regdb", "idx/test_visible_1.txt")])
def test_a_malformed_index_line_is_named_by_file_and_line(
    llcm_root, regdb_root, tmp_path, capsys, dataset, index_name, bad_line, expected
):
    root = _copy({"llcm": llcm_root, "regdb": regdb_root}[dataset], tmp_path)
    index = root / index_name
    lines = index.read_text().splitlines()
    path, label = lines[1].split()
    fields = {"path": path, "label": label, "folder": str(Path(path).parent), "root": root}
    lines[1:1] = ["", bad_line.format(**fields)]  # a blank line 2, the bad line 3, Windows line endings
    index.write_bytes("\r\n".join(lines).encode())
    _fails_in_one_line(
        capsys,
        ["check", str(root), "--dataset", dataset, "--quiet"],
        f"error: {index}, line 3: {expected.format(**fields)}",
    )


def test_every_missing_image_of_an_index_is_counted(regdb_root, tmp_path, capsys):
    root = _copy(regdb_root, tmp_path)
    index = root / "idx/test_thermal_1.txt"
    lines = index.read_text().splitlines()
    for line in lines[2:5]:
        (root / line.split()[0]).unlink()
    _fails_in_one_line(
        capsys,
        ["check", str(root), "--dataset", "regdb", "--trial", "1", "--quiet"],
        f"error: {index}, line 3: lists {lines[2].split()[0]}, but {root / lines[2].split()[0]} does not exist "
        "(and 2 more of its lines name no image file)",
    )


# --- identities seen in one modality only ---------------------------------------------------

SYSU_VISIBLE_CAMERAS, SYSU_INFRARED_CAMERAS = (1, 2, 4, 5), (3, 6)


def _remove_cameras(root: Path, person_id: int, cameras) -> None:
    for camera in cameras:
        shutil.rmtree(root / f"cam{camera}" / f"{person_id:04d}", ignore_errors=True)


def test_training_identities_of_one_modality_are_named_and_left_out_of_the_batches(sysu_root, tmp_path):
    root = _copy(sysu_root, tmp_path)
    train_ids = sorted(_ids(root / "exp/train_id.txt") + _ids(root / "exp/val_id.txt"))
    visible_only, infrared_only = train_ids[0], train_ids[1]
    _remove_cameras(root, visible_only, SYSU_INFRARED_CAMERAS)
    _remove_cameras(root, infrared_only, SYSU_VISIBLE_CAMERAS)
    with pytest.warns(DatasetWarning) as caught:
        split = sysu_train_split(root)
    assert [str(warning.message) for warning in caught] == [
        f"{root}: 2 id(s) have images of one modality only (visible only: {visible_only}; infrared only: "
        f"{infrared_only}); they are left out of training, whose batches take each identity in both modalities"
    ]
    assert split.num_identities == len(train_ids)  # still labelled (the classifier has their classes)
    one_modality = split.labels[np.isin(split.person_ids, [visible_only, infrared_only])]
    sampler = CrossModalityBatchSampler(split.labels, split.modalities, identities=4, instances=2, seed=0)
    drawn = {int(split.labels[row]) for batch in sampler for row in batch}
    assert drawn == set(range(split.num_identities)) - set(one_modality.tolist())
    with pytest.raises(ConfigError) as too_many:
        CrossModalityBatchSampler(split.labels, split.modalities, identities=len(train_ids))
    assert str(too_many.value) == (
        f"train.identities_per_batch: a batch needs {len(train_ids)} identities with images of both modalities, "
        f"the training data have {len(train_ids) - 2} (2 more have images of one modality only)"
    )


def test_training_data_without_an_identity_in_both_modalities_stop_a_run_in_one_line(sysu_root, tmp_path, capsys):
    root = _copy(sysu_root, tmp_path)
    train_ids = sorted(_ids(root / "exp/train_id.txt") + _ids(root / "exp/val_id.txt"))
    for position, person_id in enumerate(train_ids):
        _remove_cameras(root, person_id, SYSU_INFRARED_CAMERAS if position % 2 else SYSU_VISIBLE_CAMERAS)
    run = tmp_path / "run"
    error = _fails_in_one_line(
        capsys,
        ["train", "tiny", "--set", f"data.root={root}", "--out", str(run), "--quiet"],
        f"error: {root}: expected training identities with images of both modalities (visible and infrared), "
        f"found none (visible only: {', '.join(map(str, train_ids[1::2][:20]))}",
    )
    assert error.rstrip().endswith(")") and not run.exists()


def _one_hot_features(images: Split) -> FeatureSet:
    """Each image described by its person id alone: every image of a person is at distance -1
    of the query, every other at 0, so each query with a match has AP 1."""
    person_ids = sorted(set(images.person_ids.tolist()))
    features = np.zeros((len(images), len(person_ids)), dtype=np.float32)
    features[np.arange(len(images)), np.searchsorted(person_ids, images.person_ids)] = 1
    return FeatureSet(features, images, {"dataset": "sysu"})


def test_queries_without_a_match_count_in_no_average_and_are_reported(sysu_root, tmp_path):
    root = _copy(sysu_root, tmp_path)
    unmatched = _ids(root / "exp/test_id.txt")[0]
    _remove_cameras(root, unmatched, SYSU_VISIBLE_CAMERAS)
    with pytest.warns(
        DatasetWarning,
        match=rf"1 id\(s\) have images of one modality only \(infrared only: {unmatched}\); their queries have no",
    ):
        images = sysu_test_images(root)
    result = evaluate_protocol("sysu-all", [_one_hot_features(images)], trials=[0, 1])
    for trial in result.trials:
        query_rows, gallery_rows = trial_rows(result.protocol, images, trial.trial)
        matched = [  # SYSU-MM01 scores a camera-3 query against no camera-2 image
            row
            for row in query_rows
            if any(
                images.person_ids[other] == images.person_ids[row]
                and not (images.camera_ids[row] == 3 and images.camera_ids[other] == 2)
                for other in gallery_rows
            )
        ]
        unmatched_queries = int((images.person_ids[query_rows] == unmatched).sum())
        assert unmatched_queries > 0 and trial.num_query == len(query_rows)
        assert trial.metrics.num_valid_queries == len(matched) <= len(query_rows) - unmatched_queries
        assert trial.metrics.mAP == 1.0 and trial.metrics.rank(1) == 1.0  # not lowered, not raised by the others
    recorded = result.to_dict()["trials"][0]
    assert (recorded["num_query"], recorded["num_valid_query"]) == (
        result.trials[0].num_query,
        result.trials[0].metrics.num_valid_queries,
    )


def test_a_trial_in_which_no_query_has_a_match_is_one_line(sysu_root, tmp_path, capsys):
    root = _copy(sysu_root, tmp_path)
    test_ids = _ids(root / "exp/test_id.txt")
    kept_visible = test_ids[0]
    _remove_cameras(root, kept_visible, SYSU_INFRARED_CAMERAS)
    for person_id in test_ids[1:]:
        _remove_cameras(root, person_id, SYSU_VISIBLE_CAMERAS)
    with pytest.warns(DatasetWarning, match=rf"{len(test_ids)} id\(s\) have images of one modality only"):
        images = sysu_test_images(root)
    features = tmp_path / "features.npz"
    save_features(features, _one_hot_features(images))
    query_rows, gallery_rows = trial_rows(get_protocol("sysu-all"), images, 0)
    _fails_in_one_line(
        capsys,
        ["evaluate", "--features", str(features), "--protocol", "sysu-all", "--trials", "0"],
        f"error: {features}: sysu-all trial 0: none of its {len(query_rows)} queries has an image of its identity "
        f"among the {len(gallery_rows)} gallery images",
    )
