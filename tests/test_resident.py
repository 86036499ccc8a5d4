"""train.resident: the decoded training set held on the training device, batches gathered there by
index instead of by a loader. On the CPU (train.resident: always) the batches, augmented on the
device, are the loader path's to the bit, epoch after epoch; and the test set held for a run's
evaluations gives the features of the image files to the bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vireid.config import ConfigError, TrainConfig
from vireid.data.resident import RESIDENT_SHARE, ResidentBatches, resident_on
from vireid.datasets import get_dataset
from vireid.engine.extract import extract_test_features, held_test_images
from vireid.engine.trainer import _training_loader, build_run
from vireid.method import method_of
from vireid.recipe import load_config


def _epochs_of_batches(sysu_root, tmp_path, resident: str, epochs: int = 2) -> list[tuple[torch.Tensor, ...]]:
    """Every augmented batch of ``epochs`` epochs, seeded as train_one_epoch seeds them."""
    overrides = [
        f"data.root={sysu_root}",
        "model.pretrained=none",
        f"train.cache_dir={tmp_path / 'cache'}",
        "train.augment_on=device",
        f"train.resident={resident}",
        "train.steps_per_epoch=3",
        "train.workers=0",
    ]
    run = build_run(load_config("tiny", overrides), tmp_path / f"run-{resident}", None, "cpu", False)
    assert isinstance(run.loader, ResidentBatches) == (resident == "always")
    batches = []
    for epoch in range(epochs):
        run.sampler.set_epoch(epoch)
        run.worker_seeds.manual_seed(run.config.train.seed * 1_000_003 + epoch)
        for images, labels, modalities, rows in run.loader:
            batches.append((run.device_augment(images), labels, modalities, rows))
    return batches


def test_resident_batches_are_the_loader_s_to_the_bit(sysu_root, tmp_path):
    resident = _epochs_of_batches(sysu_root, tmp_path, "always")
    loaded = _epochs_of_batches(sysu_root, tmp_path, "never")
    assert len(resident) == len(loaded) == 6
    for ours, theirs in zip(resident, loaded):
        assert ours[0].shape == theirs[0].shape and ours[0].dtype == torch.float32
        assert all(torch.equal(a, b) and a.dtype == b.dtype for a, b in zip(ours, theirs))
    assert not torch.equal(resident[0][0], resident[3][0])  # the epochs draw other batches


def test_resident_is_chosen_by_device_and_memory(monkeypatch):
    decoded = np.zeros((10, 4, 2, 3), dtype=np.uint8)  # 240 bytes
    on_device = TrainConfig(augment_on="device", cache_dir="cache")
    cuda = torch.device("cuda")
    assert not resident_on(on_device, decoded, torch.device("cpu"))  # auto: the CPU path is the loader's
    assert not resident_on(TrainConfig(augment_on="device", resident="never"), decoded, cuda)
    assert not resident_on(TrainConfig(), decoded, cuda)  # augmented in the loader: nothing to hold
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (int(240 / RESIDENT_SHARE), 10**12))
    assert resident_on(on_device, decoded, cuda)  # a quarter of the free memory: it fits
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (int(240 / RESIDENT_SHARE) - 1, 10**12))
    assert not resident_on(on_device, decoded, cuda)


def test_the_device_augmentation_s_own_check_comes_first_on_a_gpu(sysu_root, tmp_path):
    """augment_on device without a cache, resident auto on a GPU: the one line that names
    train.cache_dir, before any question of memory (none is asked: no CUDA is needed here)."""
    config = load_config("tiny", [f"data.root={sysu_root}", "train.augment_on=device"])
    split = get_dataset("sysu").read_training_split(sysu_root, None)
    with pytest.raises(ConfigError, match=r"^train.augment_on=device pads, crops and flips only: it needs train.cach"):
        _training_loader(config, split, None, torch.Generator(), torch.device("cuda"), False)


def test_resident_always_needs_the_device_augmentation():
    with pytest.raises(ConfigError, match=r"^train.resident: always gathers batches of decoded images on the dev"):
        resident_on(TrainConfig(resident="always"), None, torch.device("cpu"))


def test_held_test_images_give_the_files_features_to_the_bit(sysu_root, tmp_path):
    """A training run's evaluations read the test set decoded once (train.cache_dir); its features
    are those of the images read from their files, in the same order."""
    config = load_config(
        "tiny", [f"data.root={sysu_root}", "model.pretrained=none", f"train.cache_dir={tmp_path}", "test.batch_size=32"]
    )
    torch.manual_seed(0)
    model = method_of(config).build_model(config, 8, load_weights=False)
    from_files = extract_test_features(model, config, "cpu", False)
    held = held_test_images(config, torch.device("cpu"), False)
    assert held.decoded.dtype == torch.uint8 and held.decoded.shape[1:] == (config.data.height, config.data.width, 3)
    from_held = extract_test_features(model, config, "cpu", False, held)
    assert from_held.images.paths == from_files.images.paths and len(from_files.images) > 32  # several batches
    assert np.array_equal(from_held.features, from_files.features)
    assert from_held.metadata["model"] == from_files.metadata["model"]
    rows = np.arange(1, len(from_files.images), 3)  # some test images alone (an evaluation's scored rows)
    some_held = extract_test_features(model, config, "cpu", False, held, rows)
    some_read = extract_test_features(model, config, "cpu", False, None, rows)
    assert some_held.images.paths == some_read.images.paths == from_files.images.subset(rows).paths
    assert np.array_equal(some_held.features, some_read.features)
    np.testing.assert_allclose(some_held.features, from_files.features[rows], atol=1e-5)  # other batches: rounding
