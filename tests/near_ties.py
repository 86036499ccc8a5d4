"""A guard for tests that compare rankings computed two ways (float32 against float64, a matrix
product against a loop): rounding, which differs from one CPU to another, can swap two nearly equal
distances, so such a test first checks that its data hold no such pair."""

from __future__ import annotations

import numpy as np

ROUNDING_MARGIN = 2e-6
"""Far above the float32 rounding of unit-vector similarities (about 2e-7 at most in these tests),
far below the usual spacing of a few dozen random ones."""


def cosine_distances(query_features: np.ndarray, gallery_features: np.ndarray) -> np.ndarray:
    """(Q, G) negative cosine similarities, in float64."""
    query = np.asarray(query_features, dtype=np.float64)
    gallery = np.asarray(gallery_features, dtype=np.float64)
    query = query / np.linalg.norm(query, axis=1, keepdims=True)
    gallery = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    return -(query @ gallery.T)


def assert_no_near_ties(distances: np.ndarray, places: int | None = None) -> None:
    """No two of each row's ``places`` smallest ``distances`` (all by default) lie within
    ROUNDING_MARGIN of each other: any rounding ranks them alike."""
    ordered = np.sort(np.asarray(distances, dtype=np.float64), axis=1)[:, :places]
    assert np.diff(ordered, axis=1).min() > ROUNDING_MARGIN
