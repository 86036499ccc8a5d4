"""The synthetic pedestrian renderer: deterministic, colourless infrared, and
identity that survives the change of modality without being trivial to match."""
from __future__ import annotations

import numpy as np
import pytest

from vireid.data.appearance import render_person, sample_appearance
from vireid.data.splits import Modality


def _render(person: int, modality: Modality, camera: int, image: int, size=(64, 32), seed: int = 0) -> np.ndarray:
    appearance = sample_appearance(np.random.default_rng([seed, person]))
    return render_person(appearance, modality, camera, np.random.default_rng([seed + 1, person, camera, image]), *size)


@pytest.mark.parametrize("size", [(32, 16), (128, 64), (288, 144)])
def test_shape_dtype_and_determinism(size):
    first = _render(3, Modality.VISIBLE, 1, 0, size)
    assert first.shape == (*size, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, _render(3, Modality.VISIBLE, 1, 0, size))
    assert not np.array_equal(first, _render(3, Modality.VISIBLE, 1, 1, size))


def test_infrared_is_colourless_and_visible_is_not():
    infrared = np.stack([_render(p, Modality.INFRARED, 3, 0) for p in range(10)]).astype(int)
    visible = np.stack([_render(p, Modality.VISIBLE, 1, 0) for p in range(10)]).astype(int)
    assert (infrared[..., 0] == infrared[..., 1]).all() and (infrared[..., 1] == infrared[..., 2]).all()
    assert np.abs(visible[..., 0] - visible[..., 1]).mean() > 5
    assert np.abs(visible[..., 1] - visible[..., 2]).mean() > 5


def test_camera_style_depends_on_the_camera():
    # mean of the top-left corner (background) over many persons, camera 1 versus camera 4
    corners = {
        camera: np.mean([_render(p, Modality.VISIBLE, camera, 0)[:6, :4].mean(axis=(0, 1)) for p in range(20)], axis=0)
        for camera in (1, 4)
    }
    assert np.abs(corners[1] - corners[4]).max() > 10


def _descriptor(image: np.ndarray) -> np.ndarray:
    """Standardised grey levels of a 16x8 thumbnail plus horizontal gradients: no learning."""
    grey = image[..., :3].astype(np.float64).mean(axis=2)
    height, width = grey.shape
    small = grey.reshape(16, height // 16, 8, width // 8).mean(axis=(1, 3))
    gradient = np.abs(np.diff(small, axis=1))
    parts = [(part - part.mean()) / (part.std() + 1e-6) for part in (small, gradient)]
    return np.concatenate([part.ravel() for part in parts])


def _rank1(query: np.ndarray, query_ids: np.ndarray, gallery: np.ndarray, gallery_ids: np.ndarray) -> float:
    query = query / np.linalg.norm(query, axis=1, keepdims=True)
    gallery = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    return float((gallery_ids[np.argmax(query @ gallery.T, axis=1)] == query_ids).mean())


def test_identity_survives_the_modality_but_is_not_trivial():
    """Infrared queries against visible galleries of 60 persons, pooled over three populations.

    A learning-free thumbnail descriptor finds the right person across the
    modalities well above chance, far below its own same-modality score, and far
    from always: what is left is for a model to learn.
    """
    persons, cross, same_visible, same_infrared = 60, [], [], []
    for seed in (0, 10, 20):
        visible = [(p, _render(p, Modality.VISIBLE, camera, i, seed=seed)) for p in range(persons) for camera in (1, 2) for i in range(2)]
        infrared = [(p, _render(p, Modality.INFRARED, 3, i, seed=seed)) for p in range(persons) for i in range(4)]
        visible_ids, infrared_ids = np.array([p for p, _ in visible]), np.array([p for p, _ in infrared])
        visible_features = np.stack([_descriptor(image) for _, image in visible])
        infrared_features = np.stack([_descriptor(image) for _, image in infrared])
        cross.append(_rank1(infrared_features, infrared_ids, visible_features, visible_ids))
        same_infrared.append(_rank1(infrared_features[1::2], infrared_ids[1::2], infrared_features[0::2], infrared_ids[0::2]))
        same_visible.append(_rank1(visible_features[1::2], visible_ids[1::2], visible_features[0::2], visible_ids[0::2]))
    chance = 1 / persons
    assert np.mean(cross) > 2.5 * chance  # identity carries across the modalities
    assert np.mean(cross) < 0.5  # but matching is not trivial
    assert np.mean(same_infrared) > 0.25 and np.mean(same_visible) > 0.35  # each modality alone is easy
    assert min(np.mean(same_infrared), np.mean(same_visible)) > 3 * np.mean(cross)
