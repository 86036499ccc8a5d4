"""Dataset readers of the official on-disk layouts, the common Split record,
and the synthetic dataset writer."""
from vireid.data.llcm import llcm_test_images, llcm_test_split, llcm_train_split
from vireid.data.regdb import regdb_test_images, regdb_test_split, regdb_train_split
from vireid.data.splits import Modality, QueryGallery, Split, relabel
from vireid.data.sysu import sysu_test_images, sysu_test_split, sysu_train_split
from vireid.errors import DatasetError

__all__ = [
    "DatasetError",
    "Modality",
    "QueryGallery",
    "Split",
    "llcm_test_images",
    "llcm_test_split",
    "llcm_train_split",
    "regdb_test_images",
    "regdb_test_split",
    "regdb_train_split",
    "relabel",
    "sysu_test_images",
    "sysu_test_split",
    "sysu_train_split",
]
