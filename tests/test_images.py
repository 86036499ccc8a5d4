"""Opening images (clear errors for bad files) and the hand-made descriptor."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vireid.data import DatasetError
from vireid.data.images import load_image
from vireid.models.handcrafted import describe, describe_images


def test_grey_images_open_as_three_equal_channels(tmp_path):
    Image.fromarray(np.arange(200, dtype=np.uint8).reshape(20, 10), mode="L").save(tmp_path / "ir.png")
    pixels = np.asarray(load_image(str(tmp_path / "ir.png")))
    assert pixels.shape == (20, 10, 3)
    assert (pixels[..., 0] == pixels[..., 2]).all() and pixels[19, 9, 1] == 199


def test_undecodable_file_is_named(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DatasetError, match="broken.jpg: expected a readable image"):
        load_image(str(tmp_path / "broken.jpg"))


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DatasetError, match="gone.bmp: expected an image file"):
        load_image(str(tmp_path / "gone.bmp"))


def test_descriptor_ignores_a_global_gain():
    rng = np.random.default_rng(0)
    dim = rng.integers(0, 100, size=(64, 32)).astype(np.uint8)
    bright = Image.fromarray(dim * 2, mode="L")
    first, second = describe(Image.fromarray(dim, mode="L")), describe(bright)
    assert first.shape == (2 * 32 * 16,) and first.dtype == np.float32
    np.testing.assert_allclose(first, second, atol=1e-4)
    assert abs(first[: 32 * 16].mean()) < 1e-5 and first[: 32 * 16].std() == pytest.approx(1, abs=1e-3)


def test_describe_images_stacks_one_descriptor_per_image_in_order():
    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 255, size=(40, 20, 3), dtype=np.uint8)) for _ in range(3)]
    described = describe_images(iter(images))  # any iterable, e.g. images opened one at a time
    assert described.shape == (3, 2 * 32 * 16)
    np.testing.assert_array_equal(described[2], describe(images[2]))
    assert not np.allclose(described[0], described[1])
