"""Dataset readers, the common Split record, and the synthetic dataset writer."""
from vireid.data.splits import DatasetError, Modality, QueryGallery, Split, relabel

__all__ = ["DatasetError", "Modality", "QueryGallery", "Split", "relabel"]
