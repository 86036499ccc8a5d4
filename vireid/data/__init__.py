"""What every dataset is made of: the Split record, reading layout files and
images, person-folder draws, transforms, the training dataset, sampler and
decoded-image cache. The datasets themselves live in vireid.datasets."""

from vireid.data.splits import QueryGallery, Split, relabel, relabelled
from vireid.errors import DatasetError

__all__ = ["DatasetError", "QueryGallery", "Split", "relabel", "relabelled"]
