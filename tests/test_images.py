"""Opening images (clear errors for bad files) and the hand-made descriptor."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image

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


def test_only_the_listed_image_formats_are_read_whatever_the_name(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((20, 10), dtype=np.uint8), mode="L").save(tmp_path / "frame.png", format="GIF")
    assert Image.open(tmp_path / "frame.png").format == "GIF"  # Pillow alone reads it by its content
    with pytest.raises(DatasetError, match="frame.png: expected a readable image .*cannot identify"):
        load_image(str(tmp_path / "frame.png"))
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *_, **__: pytest.fail("Ghostscript was run"))
    (tmp_path / "page.jpg").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 20\nshowpage\n")
    assert Image.open(tmp_path / "page.jpg").format == "EPS"
    with pytest.raises(DatasetError, match="page.jpg: expected a readable image .*cannot identify"):
        load_image(str(tmp_path / "page.jpg"))


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


def test_sixteen_bit_images_are_scaled_by_their_depth_not_clipped(tmp_path):
    values = (np.arange(64 * 32).reshape(64, 32) * 31).astype(np.uint16)  # 0..63457
    Image.fromarray(values).save(tmp_path / "thermal.png")
    with Image.open(tmp_path / "thermal.png") as opened:
        assert opened.mode == "I;16"
    pixels = np.asarray(load_image(str(tmp_path / "thermal.png")))
    expected = np.round(values / 65535 * 255).astype(np.uint8)
    assert pixels.shape == (64, 32, 3) and (pixels == expected[..., None]).all()
    assert pixels.max() == 247 and pixels.min() == 0  # not all white


@pytest.mark.parametrize(
    "values, expected",
    [
        (np.linspace(0, 1, 2048, dtype=np.float32), lambda v: v * 255),  # 0..1: as it is
        (np.linspace(-3, 7, 2048, dtype=np.float32), lambda v: (v + 3) / 10 * 255),  # its own range
    ],
)
def test_float_images_are_scaled_by_their_range(tmp_path, values, expected):
    Image.fromarray(values.reshape(64, 32), mode="F").save(tmp_path / "float.tif")
    pixels = np.asarray(load_image(str(tmp_path / "float.tif")))[..., 0].astype(np.float64)
    np.testing.assert_allclose(pixels, np.round(expected(values.reshape(64, 32).astype(np.float64))), atol=1)
    assert pixels.min() == 0 and pixels.max() == 255  # not all black


def test_thirty_two_bit_integers_use_sixteen_bit_scaling_when_they_fit(tmp_path):
    fits = (np.arange(64 * 32).reshape(64, 32) * 30).astype(np.int32)
    Image.fromarray(fits, mode="I").save(tmp_path / "fits.tif")
    assert np.asarray(load_image(str(tmp_path / "fits.tif")))[63, 31, 0] == round(2047 * 30 / 65535 * 255)
    Image.fromarray(fits * 100, mode="I").save(tmp_path / "wide.tif")
    assert np.asarray(load_image(str(tmp_path / "wide.tif")))[63, 31, 0] == 255


def test_images_too_small_to_show_a_person_are_named(tmp_path):
    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")
    with pytest.raises(DatasetError, match=r"dot.png: an image of 1x1 pixels is too small to show a person"):
        load_image(str(tmp_path / "dot.png"))
