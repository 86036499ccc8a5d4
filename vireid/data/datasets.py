"""Which reader serves which dataset, as the training and test commands need them."""
from __future__ import annotations

from vireid.config import DataConfig
from vireid.data.llcm import llcm_test_images, llcm_train_split
from vireid.data.regdb import regdb_test_images, regdb_train_split
from vireid.data.splits import Split
from vireid.data.sysu import sysu_test_images, sysu_train_split

PROTOCOLS_OF_DATASET = {
    "sysu": ("sysu-all", "sysu-indoor"),
    "regdb": ("regdb-v2t", "regdb-t2v"),
    "llcm": ("llcm-ir2vis", "llcm-vis2ir"),
}


def training_split(config: DataConfig) -> Split:
    if config.dataset == "sysu":
        return sysu_train_split(config.root)
    if config.dataset == "regdb":
        return regdb_train_split(config.root, config.trial)
    return llcm_train_split(config.root)


def test_images(config: DataConfig) -> Split:
    """Every test image the dataset's protocols pick their queries and galleries from."""
    if config.dataset == "sysu":
        return sysu_test_images(config.root)
    if config.dataset == "regdb":
        return regdb_test_images(config.root, config.trial)
    return llcm_test_images(config.root)
