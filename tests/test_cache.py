"""The decoded-image cache: same pixels as decoding, built once, keyed by split and size."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from vireid.data.cache import cache_file, image_cache
from vireid.data.dataset import SplitDataset
from vireid.data.transforms import inference_transform
from vireid.datasets.sysu import sysu_train_split


def test_cache_holds_the_resized_images_and_is_built_once(sysu_root, tmp_path):
    split = sysu_train_split(sysu_root).subset(range(12))
    images = image_cache(split, 24, 12, tmp_path)
    assert images.shape == (12, 24, 12, 3) and images.dtype == np.uint8
    with Image.open(split.paths[5]) as original:
        expected = np.asarray(original.convert("RGB").resize((12, 24), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(images[5], expected)
    path = cache_file(tmp_path, split, 24, 12)
    modified = path.stat().st_mtime_ns
    image_cache(split, 24, 12, tmp_path)
    assert path.stat().st_mtime_ns == modified  # reused, not rebuilt
    assert cache_file(tmp_path, split, 32, 16) != path and cache_file(tmp_path, split.subset(range(11)), 24, 12) != path
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary file left


def test_dataset_gives_the_same_tensors_from_the_cache(sysu_root, tmp_path):
    split = sysu_train_split(sysu_root).subset(range(6))
    transform = inference_transform(24, 12)
    plain = SplitDataset(split, transform)
    cached = SplitDataset(split, transform, image_cache(split, 24, 12, tmp_path))
    for index in range(6):
        first, second = plain[index], cached[index]
        assert torch.equal(first[0], second[0]) and first[1:] == second[1:]
