"""Bad inputs inside datasets and among a user's own images: SYSU-MM01's permutation file,
LLCM and RegDB index files, identities seen in one modality only, and images of unusual
pixel formats. Each is read as a person expects or refused in one line naming the file."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import loadmat, savemat
from test_bad_inputs import _fails_in_one_line
from torch.utils.data import DataLoader

from vireid.cli import main
from vireid.config import config_to_dict
from vireid.data.dataset import SplitDataset
from vireid.data.image_folder import list_images
from vireid.data.images import load_image
from vireid.data.sampler import CrossModalityBatchSampler
from vireid.data.splits import Split
from vireid.dataset_check import check_image
from vireid.datasets import GalleryOptions, dataset_fingerprint, get_protocol, read_trial_split, trial_rows
from vireid.datasets.llcm import llcm_train_split
from vireid.datasets.regdb import regdb_test_images
from vireid.datasets.sysu import sysu_test_images, sysu_train_split
from vireid.engine.checkpoint import Checkpoint, save_checkpoint
from vireid.errors import ConfigError, DatasetError, DatasetWarning
from vireid.evaluation.feature_file import FeatureSet, load_features, save_features
from vireid.evaluation.protocols import evaluate_protocol
from vireid.modality import Modality
from vireid.recipe import build_model, load_config


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


def test_the_data_fingerprint_does_not_repeat_the_readers_warnings(sysu_root, tmp_path):
    """A run reads its data (and warns) before it fingerprints them, by the resolved path: one warning, not two."""
    root = _copy(sysu_root, tmp_path)
    _remove_cameras(root, _ids(root / "exp/test_id.txt")[0], SYSU_VISIBLE_CAMERAS)
    with pytest.warns(DatasetWarning):
        visible = sysu_test_images(root).of_modality(Modality.VISIBLE)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DatasetWarning)
        fingerprint = dataset_fingerprint("sysu", str(root))
    assert fingerprint["images"]["test"]["visible"] == len(visible)


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


# --- images of unusual pixel formats, and files that are no image ---------------------------

PATTERN = (np.arange(8 * 4 * 3).reshape(8, 4, 3) * 7 % 256).astype(np.uint8)  # (8, 4, 3): 8 high, 4 wide


def _rgba(folder: Path) -> tuple[Path, np.ndarray]:
    """Alpha from transparent to opaque: dropped, the colours stored under it kept."""
    alpha = np.tile(np.array([0, 1, 128, 255], dtype=np.uint8), (8, 1))[..., None]
    Image.fromarray(np.concatenate([PATTERN, alpha], axis=2)).save(folder / "rgba.png")
    return folder / "rgba.png", PATTERN


def _grey_alpha(folder: Path) -> tuple[Path, np.ndarray]:
    grey = PATTERN[..., 0]
    Image.merge("LA", [Image.fromarray(grey), Image.fromarray(255 - grey)]).save(folder / "grey_alpha.png")
    return folder / "grey_alpha.png", np.repeat(grey[..., None], 3, axis=2)


def _palette(folder: Path) -> tuple[Path, np.ndarray]:
    """Four palette colours, two of them partly transparent (Pillow warns of such a palette if converted directly)."""
    colours = np.array([[10, 20, 30], [200, 100, 50], [0, 255, 0], [255, 255, 255]], dtype=np.uint8)
    indices = (np.arange(32).reshape(8, 4) % 4).astype(np.uint8)
    image = Image.fromarray(indices, mode="L").convert("P")
    image.putpalette(colours.flatten().tolist())
    image.save(folder / "palette.png", transparency=bytes([0, 128]))
    return folder / "palette.png", colours[indices]


def _cmyk(folder: Path) -> tuple[Path, np.ndarray]:
    """Each row one ink combination of 0 and 255: RGB = (255 - C, 255 - M, 255 - Y) scaled by (255 - K) / 255."""
    inks_and_colours = [
        ((0, 0, 0, 0), (255, 255, 255)),
        ((255, 0, 0, 0), (0, 255, 255)),
        ((0, 255, 0, 0), (255, 0, 255)),
        ((0, 0, 255, 0), (255, 255, 0)),
        ((0, 0, 0, 255), (0, 0, 0)),
        ((0, 255, 255, 0), (255, 0, 0)),
        ((255, 255, 0, 0), (0, 0, 255)),
        ((255, 0, 255, 0), (0, 255, 0)),
    ]
    inks = np.array([[ink] * 4 for ink, _ in inks_and_colours], dtype=np.uint8)  # (8, 4, 4)
    Image.frombytes("CMYK", (4, 8), inks.tobytes()).save(folder / "cmyk.tif")
    return folder / "cmyk.tif", np.array([[colour] * 4 for _, colour in inks_and_colours], dtype=np.uint8)


def _one_bit(folder: Path) -> tuple[Path, np.ndarray]:
    on = (np.add.outer(np.arange(8), np.arange(4)) % 2).astype(bool)
    Image.fromarray(on).save(folder / "one_bit.png")
    return folder / "one_bit.png", np.repeat(np.where(on, 255, 0).astype(np.uint8)[..., None], 3, axis=2)


DEEP_VALUES = np.tile(np.array([0, 257, 25700, 65535]), (8, 1))  # (8, 4); 65535 = 257 * 255
DEEP_AS_EIGHT_BIT = np.repeat(np.tile(np.array([0, 1, 100, 255], dtype=np.uint8), (8, 1))[..., None], 3, axis=2)


def _sixteen_bit(folder: Path) -> tuple[Path, np.ndarray]:
    Image.fromarray(DEEP_VALUES.astype(np.uint16)).save(folder / "sixteen_bit.png")  # mode I;16
    return folder / "sixteen_bit.png", DEEP_AS_EIGHT_BIT


def _thirty_two_bit(folder: Path) -> tuple[Path, np.ndarray]:
    Image.fromarray(DEEP_VALUES.astype(np.int32)).save(folder / "thirty_two_bit.tif")  # mode I
    return folder / "thirty_two_bit.tif", DEEP_AS_EIGHT_BIT


def _floating_point(folder: Path) -> tuple[Path, np.ndarray]:
    values = np.tile(np.array([0, 0.2, 0.6, 1], dtype=np.float32), (8, 1))  # 0..1: times 255, rounded
    Image.fromarray(values).save(folder / "floating_point.tif")  # mode F
    return folder / "floating_point.tif", np.repeat(
        np.tile(np.array([0, 51, 153, 255], np.uint8), (8, 1))[..., None], 3, 2
    )


def _png_named_jpg(folder: Path) -> tuple[Path, np.ndarray]:
    Image.fromarray(PATTERN).save(folder / "png_inside.jpg", format="PNG")
    return folder / "png_inside.jpg", PATTERN


DECODED_FORMATS = {
    "RGBA": _rgba,
    "LA": _grey_alpha,
    "P": _palette,
    "CMYK": _cmyk,
    "1": _one_bit,
    "I;16": _sixteen_bit,
    "I": _thirty_two_bit,
    "F": _floating_point,
    "PNG": _png_named_jpg,
}
"""Pixel format (as Pillow opens the file) -> a writer of a small image of it and the RGB pixels it must give."""


@pytest.mark.filterwarnings("error")  # and without a warning of Pillow's
@pytest.mark.parametrize("pixel_format", list(DECODED_FORMATS))
def test_unusual_pixel_formats_decode_to_the_rgb_a_person_expects(tmp_path, pixel_format):
    path, expected = DECODED_FORMATS[pixel_format](tmp_path)
    with Image.open(path) as opened:
        assert opened.mode == pixel_format or opened.format == pixel_format
    pixels = np.asarray(load_image(str(path)))
    assert pixels.dtype == np.uint8 and pixels.shape == (8, 4, 3)
    np.testing.assert_array_equal(pixels, expected)


def _exif_jpeg(path: Path, pixels: np.ndarray, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation  # the EXIF Orientation tag
    Image.fromarray(pixels).save(path, exif=exif, quality=95)


HALVES = np.zeros((16, 32, 3), dtype=np.uint8)  # stored 16 high, 32 wide: the left half white
HALVES[:, :16] = 255


@pytest.mark.parametrize(
    "orientation, shown",
    [
        (1, HALVES),
        (3, HALVES[::-1, ::-1]),  # turned half round
        (6, np.rot90(HALVES, -1)),  # a quarter turn clockwise: the white half on top
        (8, np.rot90(HALVES, 1)),  # a quarter turn anticlockwise: the white half below
    ],
)
def test_jpegs_are_turned_as_their_exif_orientation_says(tmp_path, orientation, shown):
    _exif_jpeg(tmp_path / "photo.jpg", HALVES, orientation)
    pixels = np.asarray(load_image(str(tmp_path / "photo.jpg"))).astype(int)
    assert pixels.shape == shown.shape
    assert np.abs(pixels - shown).max() <= 16  # JPEG's loss at the edge between the halves


def test_the_header_check_reads_the_size_as_shown(tmp_path):
    """A 6-high, 10-wide picture turned a quarter shows 10 high and 6 wide: enough to show a person."""
    wide = np.zeros((6, 10, 3), dtype=np.uint8)
    _exif_jpeg(tmp_path / "turned.jpg", wide, 6)
    _exif_jpeg(tmp_path / "upright.jpg", wide, 1)
    assert check_image(str(tmp_path / "turned.jpg"), decode=False) == (None, None)
    assert check_image(str(tmp_path / "upright.jpg"), decode=False) == (
        "an image of 6x10 pixels is too small to show a person (at least 8x4)",
        None,
    )


def _no_images(folder: Path) -> dict[str, str]:
    """Files with image names that cannot be used -> why, as the error says it after the path."""
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "folder.jpg").mkdir()
    (folder / "text.jpg").write_text("a note, not a picture\n")
    Image.new("RGB", (1, 1)).save(folder / "dot.png")
    Image.fromarray(np.zeros((64, 32, 3), dtype=np.uint8)).save(folder / "cut.jpg")
    (folder / "cut.jpg").write_bytes((folder / "cut.jpg").read_bytes()[:300])  # its header reads, its pixels do not
    return {
        "empty.jpg": "expected an image file, but it is empty (0 bytes)",
        "folder.jpg": "expected an image file, but it is a folder",
        "text.jpg": "expected a readable image (jpg, png, bmp, ...), could not decode it (cannot identify image file",
        "dot.png": "an image of 1x1 pixels is too small to show a person (at least 8x4)",
        "cut.jpg": "expected a readable image (jpg, png, bmp, ...), could not decode it (",
        "gone.jpg": "expected an image file, but it does not exist",
    }


def test_files_that_are_no_usable_image_are_refused_naming_them(tmp_path):
    for name, reason in _no_images(tmp_path).items():
        with pytest.raises(DatasetError) as caught:
            load_image(str(tmp_path / name))
        assert str(caught.value).startswith(f"{tmp_path / name}: {reason}")
        assert "\n" not in str(caught.value)


def _as_array(image: Image.Image) -> torch.Tensor:
    """The decoded image itself, (H, W, 3) uint8, for comparing what a loader worker decoded."""
    return torch.from_numpy(np.array(image))


def test_a_dataset_with_images_of_every_kind_is_checked_and_decoded_in_loader_workers(sysu_root, tmp_path, capsys):
    root = _copy(sysu_root, tmp_path)
    folder = Path(sysu_train_split(root).paths[0]).parent
    expected = dict(builder(folder) for builder in DECODED_FORMATS.values())
    _exif_jpeg(folder / "turned.jpg", HALVES, 6)
    unusable = _no_images(folder)
    del unusable["gone.jpg"]  # a dataset folder lists what is there
    assert main(["check", str(root), "--quiet"]) == 1
    printed = capsys.readouterr().out.splitlines()
    refused = sorted(line for line in printed if line.startswith("cannot be used: "))
    assert len(refused) == len(unusable)
    for line, (name, reason) in zip(refused, sorted(unusable.items())):
        assert line.startswith(f"cannot be used: {folder / name}: {reason}")
    deep = {"F": "floating_point.tif", "I": "thirty_two_bit.tif", "I;16": "sixteen_bit.png"}
    assert sorted(line for line in printed if line.startswith("read by its range")) == sorted(
        f"read by its range ({mode}): {folder / name}" for mode, name in deep.items()
    )
    decodable = [*expected, folder / "turned.jpg"]
    split = Split([str(path) for path in decodable], [1] * len(decodable), [1] * len(decodable), [0] * len(decodable))
    loader = DataLoader(SplitDataset(split, _as_array), batch_size=None, num_workers=1)
    decoded = [image.numpy() for image, _, _, _ in loader]
    for path, pixels in zip(decodable[:-1], decoded):
        np.testing.assert_array_equal(pixels, expected[path])
    assert decoded[-1].shape == (32, 16, 3) and decoded[-1][:8].min() > 230 and decoded[-1][-8:].max() < 25


@pytest.fixture(scope="module")
def untrained_checkpoint(tmp_path_factory) -> Path:
    """A checkpoint of the tiny config's network with its initial weights: features without a training run."""
    config = load_config("tiny", [])
    torch.manual_seed(0)
    model = build_model(config, 4, load_weights=False)
    state = Checkpoint(config=config_to_dict(config), num_classes=4, model=model.state_dict(), epoch=1)
    return save_checkpoint(tmp_path_factory.mktemp("untrained") / "last.pt", state)


def test_own_images_of_every_kind_are_described_or_skipped_with_one_line_each(untrained_checkpoint, tmp_path, capsys):
    """extract (in a loader worker) and search read each image of an unusual format as its
    plain RGB twin and skip, naming them in the same lines, the files that are no usable image."""
    mine, twins = tmp_path / "mine", tmp_path / "twins"
    mine.mkdir()
    twins.mkdir()
    expected = dict(builder(mine) for builder in DECODED_FORMATS.values())
    _exif_jpeg(mine / "turned.jpg", HALVES, 6)
    with Image.open(mine / "turned.jpg") as stored:  # as stored, before its orientation is applied
        expected[mine / "turned.jpg"] = np.rot90(np.asarray(stored.convert("RGB")), -1)
    for path, pixels in expected.items():
        Image.fromarray(np.ascontiguousarray(pixels)).save(twins / f"{path.stem}.png")
    unusable = _no_images(mine)
    listing = mine / "list.txt"
    listing.write_text("".join(f"{name}\n" for name in [*(path.name for path in expected), *unusable]))
    checkpoint = str(untrained_checkpoint)
    extract = ["extract", checkpoint, "--modality", "visible", "--quiet"]
    assert main([*extract, "--images", str(twins), "--out", str(tmp_path / "twins.npz")]) == 0
    capsys.readouterr()
    arguments = ["--images", str(listing), "--workers", "1", "--out", str(tmp_path / "mine.npz")]
    assert main([*extract, *arguments]) == 0
    skipped = [f"skipped {len(unusable)} file(s) that could not be read as images:"] + [
        f"  {mine / name}: {reason}" for name, reason in unusable.items()
    ]
    error_lines = capsys.readouterr().err.splitlines()
    assert len(error_lines) == len(skipped) and "Traceback" not in "\n".join(error_lines)
    assert all(line.startswith(start) for line, start in zip(error_lines, skipped))
    described, twin_features = load_features(tmp_path / "mine.npz"), load_features(tmp_path / "twins.npz")
    assert [Path(path).name for path in described.images.paths] == [path.name for path in expected]
    twin_rows = {Path(path).stem: row for row, path in enumerate(twin_features.images.paths)}
    for row, path in enumerate(described.images.paths):
        twin_row = twin_rows[Path(path).stem]
        np.testing.assert_allclose(described.features[row], twin_features.features[twin_row], atol=1e-5)
    cmyk, one_bit = twin_features.features[twin_rows["cmyk"]], twin_features.features[twin_rows["one_bit"]]
    assert np.abs(cmyk - one_bit).max() > 1e-3  # other pixels, other features: the comparisons can fail
    index = tmp_path / "twins_index.npz"
    assert main(["index", str(tmp_path / "twins.npz"), "--out", str(index)]) == 0
    capsys.readouterr()
    search = ["search", str(index), "--images", str(listing), "--checkpoint", checkpoint, "--modality", "visible"]
    assert main([*search, "--top-k", "1", "--json", str(tmp_path / "hits.json"), "--quiet"]) == 0
    assert capsys.readouterr().err.splitlines() == error_lines  # the same lines as extract's
    hits = json.loads((tmp_path / "hits.json").read_text())
    assert len(hits) == len(expected)
    for query in hits:  # the best match is the twin (or a twin of the same pixels)
        (best,) = query["hits"]
        assert best["score"] == pytest.approx(1, abs=1e-5)
        twin_pixels = np.asarray(Image.open(best["path"]).convert("RGB"))
        np.testing.assert_array_equal(twin_pixels, expected[mine / Path(query["query_path"]).name])


def test_a_list_of_own_images_saved_by_a_windows_editor_reads_alike(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "b.png").write_bytes(b"x")
    listing = tmp_path / "list.txt"
    listing.write_bytes(b"\xef\xbb\xbfa.jpg\r\n\r\nb.png  \r\n")  # a byte-order mark, CRLF, a blank line
    assert list_images(listing) == [str(tmp_path / "a.jpg"), str(tmp_path / "b.png")]
