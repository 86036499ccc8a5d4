"""The synthetic dataset writer: exact layouts, formats, determinism, atomic output."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import loadmat

import vireid.synthetic.writer as synthetic
from vireid.datasets.sysu import _save_permutations, load_official_permutations
from vireid.errors import UserError
from vireid.synthetic.writer import MARKER_FILE, write_synthetic_dataset

SMALL = dict(identities=8, images_per_id=3, size=(32, 16), workers=1)


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_same_seed_writes_identical_files_and_another_seed_does_not(tmp_path):
    write_synthetic_dataset("sysu", tmp_path / "a", seed=11, **SMALL)
    write_synthetic_dataset("sysu", tmp_path / "b", seed=11, **dict(SMALL, workers=2))
    write_synthetic_dataset("sysu", tmp_path / "c", seed=12, **SMALL)
    first, second, other = (_tree_digest(tmp_path / name) for name in "abc")
    assert first == second  # worker count does not change a byte
    assert first != other


def test_the_permutation_file_holds_no_time_and_reads_back(tmp_path, monkeypatch):
    """scipy writes the time into a .mat file's header; two writes a second apart must still be equal."""
    import time

    person = np.empty((1, 1), dtype=object)
    person[0, 0] = np.array([[2.0, 1.0, 3.0]])
    permutations = np.empty((6, 1), dtype=object)  # cam1..cam6, one person each
    for camera in range(6):
        permutations[camera, 0] = person
    for name, clock in (("a.mat", "Mon Jan  1 00:00:00 2001"), ("b.mat", "Tue Jan  2 00:00:01 2001")):
        monkeypatch.setattr(time, "asctime", lambda *arguments, clock=clock: clock)
        _save_permutations(tmp_path / name, permutations)
    assert (tmp_path / "a.mat").read_bytes() == (tmp_path / "b.mat").read_bytes()
    assert (tmp_path / "a.mat").read_bytes().startswith(b"MATLAB 5.0 MAT-file, written by vireid synth")
    np.testing.assert_array_equal(load_official_permutations(tmp_path / "a.mat")[5, 0][0, 0], [[2.0, 1.0, 3.0]])


def test_sysu_layout_is_the_official_one(sysu_root):
    top = {path.name for path in sysu_root.iterdir()}
    assert top == {"cam1", "cam2", "cam3", "cam4", "cam5", "cam6", "exp", MARKER_FILE}
    assert {path.name for path in (sysu_root / "exp").iterdir()} == {
        "train_id.txt",
        "val_id.txt",
        "test_id.txt",
        "rand_perm_cam.mat",
    }
    id_lists = [(sysu_root / "exp" / name).read_text() for name in ("train_id.txt", "val_id.txt", "test_id.txt")]
    assert all(text.count("\n") == 1 for text in id_lists)
    ids = [int(token) for text in id_lists for token in text.strip().split(",")]
    assert sorted(ids) == list(range(1, 17))  # the three lists partition the identities
    for image_path in sysu_root.glob("cam*/*/*"):
        assert len(image_path.parent.name) == 4 and image_path.parent.name.isdigit()
        assert len(image_path.stem) == 4 and image_path.suffix == ".jpg"
    numbers = sorted(int(path.stem) for path in (sysu_root / "cam3").glob("*/*.jpg") if path.parent.name == "0001")
    assert numbers == list(range(1, len(numbers) + 1))  # NNNN.jpg counts up from 0001
    with Image.open(next(sysu_root.glob("cam3/*/*.jpg"))) as image:
        assert image.format == "JPEG" and image.size == (16, 32)


def test_sysu_permutations_are_valid_per_folder(sysu_root):
    cells = loadmat(str(sysu_root / "exp/rand_perm_cam.mat"))["rand_perm_cam"]
    assert cells.shape == (6, 1)
    for camera in range(1, 7):
        per_person = cells[camera - 1][0]
        for person in range(1, 17):
            numbers = per_person[person - 1][0]
            folder = sysu_root / f"cam{camera}" / f"{person:04d}"
            count = len(list(folder.glob("*.jpg"))) if folder.is_dir() else 0
            assert numbers.shape == (10, count)
            for row in numbers:
                assert sorted(row.astype(int).tolist()) == list(range(1, count + 1))


def test_regdb_layout_and_bmp_format(regdb_root):
    assert {path.name for path in regdb_root.iterdir()} == {"Visible", "Thermal", "idx", MARKER_FILE}
    names = {path.name for path in (regdb_root / "idx").iterdir()}
    assert names == {
        f"{part}_{kind}_{trial}.txt"
        for part in ("train", "test")
        for kind in ("visible", "thermal")
        for trial in range(1, 11)
    }
    first = (regdb_root / "idx/train_thermal_1.txt").read_text().splitlines()[0]
    with Image.open(regdb_root / first.split()[0]) as image:
        assert image.format == "BMP"
        pixels = np.asarray(image.convert("RGB"))
        assert (pixels[..., 0] == pixels[..., 1]).all()  # thermal images are colourless


def test_llcm_layout(llcm_root):
    assert {path.name for path in llcm_root.iterdir()} >= {"idx", "test_vis", "test_nir", "train_vis", "train_nir"}
    assert not (llcm_root / "test_nir/cam3").exists()
    assert {path.name for path in (llcm_root / "idx").iterdir()} == {"train_vis.txt", "train_nir.txt", "test_id.txt"}
    assert all(path.suffix == ".jpg" for path in llcm_root.glob("test_*/cam*/*/*"))


def test_marker_records_the_settings(regdb_root):
    settings = json.loads((regdb_root / MARKER_FILE).read_text())
    assert settings == {"layout": "regdb", "identities": 8, "images_per_id": 3, "seed": 4, "size": [32, 16]}


def test_existing_folder_needs_force(tmp_path):
    write_synthetic_dataset("regdb", tmp_path / "RegDB", **dict(SMALL, identities=4))
    with pytest.raises(UserError, match="already exists"):
        write_synthetic_dataset("regdb", tmp_path / "RegDB", **dict(SMALL, identities=4))
    write_synthetic_dataset("regdb", tmp_path / "RegDB", force=True, **dict(SMALL, identities=6))
    assert json.loads((tmp_path / "RegDB" / MARKER_FILE).read_text())["identities"] == 6


def test_a_failed_run_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken_renderer(*arguments, **keywords):
        raise RuntimeError("renderer failed")

    monkeypatch.setattr(synthetic, "render_person", broken_renderer)
    with pytest.raises(RuntimeError, match="renderer failed"):
        write_synthetic_dataset("sysu", tmp_path / "SYSU-MM01", **SMALL)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "layout, settings, message",
    [
        ("sysu", dict(identities=3), "at least 4 identities"),
        ("regdb", dict(identities=7), "even number"),
        ("sysu", dict(images_per_id=0), "images-per-id"),
        ("sysu", dict(size=(8, 8)), "--size"),
        ("kitti", {}, "--layout"),
    ],
)
def test_bad_settings_are_named(tmp_path, layout, settings, message):
    with pytest.raises(UserError, match=message):
        write_synthetic_dataset(layout, tmp_path / "out", **dict(SMALL, **settings))
    assert not (tmp_path / "out").exists()
