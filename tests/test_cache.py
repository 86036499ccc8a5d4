"""The decoded-image cache: same pixels as decoding, built once, keyed by split, size and resize
filter; the resize filter (data.resize_filter) of the cache, the training transforms and the test
loader, each checked against PIL's own resize of the file."""

from __future__ import annotations

import dataclasses
import typing

import numpy as np
import torch
from PIL import Image

from vireid.config import DataConfig
from vireid.data.cache import cache_file, image_cache
from vireid.data.dataset import SplitDataset
from vireid.data.transforms import IMAGENET_MEAN, IMAGENET_STD, RESIZE_FILTERS, inference_transform, training_views
from vireid.datasets.sysu import sysu_train_split
from vireid.engine.extract import extract_features, extract_test_features
from vireid.models.network import ModelOutput
from vireid.recipe import load_config


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


PIL_FILTERS = {"bilinear": Image.Resampling.BILINEAR, "lanczos": Image.Resampling.LANCZOS}


def _pil_resized(path: str, height: int, width: int, resize_filter: str) -> np.ndarray:
    """(height, width, 3) uint8: the file resized by PIL itself, as the reference code does it
    (``Image.open(path).resize((w, h), Image.ANTIALIAS)``, ANTIALIAS being LANCZOS)."""
    with Image.open(path) as original:
        return np.asarray(original.resize((width, height), PIL_FILTERS[resize_filter]).convert("RGB"))


def _unnormalised(image: torch.Tensor) -> np.ndarray:
    """(H, W, 3) uint8 of a normalised (3, H, W) image: ImageNet mean/std undone, x 255, rounded
    (the float error, about 1e-4 of a level, is far below the 0.5 that rounding forgives)."""
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (image * std + mean).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def test_every_config_filter_is_a_transform_filter():
    assert (
        set(PIL_FILTERS)
        == set(RESIZE_FILTERS)
        == set(typing.get_args(typing.get_type_hints(DataConfig)["resize_filter"]))
    )


def test_lanczos_cache_holds_pils_lanczos_images_apart_from_the_bilinear_one(sysu_root, tmp_path):
    split = sysu_train_split(sysu_root).subset(range(8))
    bilinear = image_cache(split, 24, 12, tmp_path)
    lanczos = image_cache(split, 24, 12, tmp_path, resize_filter="lanczos")
    for row, path in enumerate(split.paths):
        np.testing.assert_array_equal(lanczos[row], _pil_resized(path, 24, 12, "lanczos"))
        np.testing.assert_array_equal(bilinear[row], _pil_resized(path, 24, 12, "bilinear"))
    assert not np.array_equal(lanczos, bilinear)  # the two filters do give other pixels at this size
    names = {cache_file(tmp_path, split, 24, 12, name).name for name in ("bilinear", "lanczos")}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names) and len(names) == 2  # two caches


def test_training_views_resize_with_the_configs_filter_with_and_without_the_cache(sysu_root, tmp_path):
    overrides = ["data.height=24", "data.width=12", "train.padding=0", "train.random_erasing=0"]
    split = sysu_train_split(sysu_root).subset(range(6))
    for resize_filter in ("bilinear", "lanczos"):
        config = load_config("tiny", [*overrides, f"data.resize_filter={resize_filter}"])
        decoded = image_cache(split, 24, 12, tmp_path, resize_filter=resize_filter)
        for dataset in (
            SplitDataset(split, training_views(config)),
            SplitDataset(split, training_views(config), decoded),
        ):
            for row, path in enumerate(split.paths):
                expected = _pil_resized(path, 24, 12, resize_filter)
                image = _unnormalised(dataset[(row, 0)][0])  # padding 0: the crop is the whole image; flipped or not
                assert np.array_equal(image, expected) or np.array_equal(image, expected[:, ::-1]), (resize_filter, row)


class _RecordingModel(torch.nn.Module):
    """Stands in for a network: keeps the batches the test loader gives it."""

    def __init__(self):
        super().__init__()
        self.batches: list[torch.Tensor] = []

    def forward(self, images: torch.Tensor, modalities: torch.Tensor) -> ModelOutput:
        self.batches.append(images)
        return ModelOutput(pooled=images.flatten(1), global_feature=images.flatten(1))


def test_the_test_loader_resizes_with_the_configs_filter(sysu_root):
    config = load_config("tiny", [f"data.root={sysu_root}", "data.height=24", "data.width=12"])
    config.test.feature, config.data.resize_filter = "global", "lanczos"
    model = _RecordingModel()
    feature_set = extract_test_features(model, config, "cpu", progress=False)
    images = torch.cat(model.batches)
    for row in (0, len(images) // 2, len(images) - 1):
        np.testing.assert_array_equal(
            _unnormalised(images[row]), _pil_resized(feature_set.images.paths[row], 24, 12, "lanczos")
        )
    split = feature_set.images.subset(range(4))
    default = _RecordingModel()
    bilinear = dataclasses.replace(config, data=dataclasses.replace(config.data, resize_filter="bilinear"))
    extract_features(default, split, bilinear)  # vireid's default
    for row, path in enumerate(split.paths):
        np.testing.assert_array_equal(_unnormalised(default.batches[0][row]), _pil_resized(path, 24, 12, "bilinear"))
