"""t-SNE maps of features as a PNG: one colour per identity (distinct hues, so at most as many
identities as colours; the title says how many of how many), one marker per modality."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from sklearn.manifold import TSNE

from vireid.errors import UserError
from vireid.modality import Modality
from vireid.viz.png import save_png

DPI = 150
FIGURE_SIZE = (7.4, 6.4)  # inches, the legends to the right of the map
# red, orange, olive, green, cyan, blue, purple, magenta: hues at least 28 degrees apart, no two shades of one
IDENTITY_COLOURS = ("#d62728", "#ff7f0e", "#bcbd22", "#2ca02c", "#17becf", "#1f4fd8", "#8c3fc0", "#e040a0")
MODALITY_MARKERS = {Modality.VISIBLE: "o", Modality.INFRARED: "^"}
MIN_POINTS = 3


def tsne_embedding(features: np.ndarray, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """(N, 2) t-SNE of L2-normalised (N, D) features (scikit-learn, PCA init, deterministic for a seed);
    perplexity is lowered to fit small N."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < MIN_POINTS or features.shape[1] < 2:
        raise UserError(
            f"features: expected an (N, D) array with N >= {MIN_POINTS} points and D >= 2, got shape {features.shape}"
        )
    if not np.isfinite(features).all():
        raise UserError("features: expected finite values, found NaN or infinity")
    if perplexity <= 0:
        raise UserError(f"perplexity: expected a positive number, got {perplexity}")
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    normalised = features / np.maximum(norms, 1e-12)
    tsne = TSNE(
        n_components=2,
        perplexity=min(perplexity, (features.shape[0] - 1) / 3),
        init="pca",
        learning_rate="auto",
        random_state=seed,
    )
    return tsne.fit_transform(normalised)


def _checked_inputs(features: np.ndarray, person_ids: np.ndarray, modalities: np.ndarray, max_identities: int):
    """(N, D) features, (N,) person ids and (N,) modalities as arrays, or a UserError saying what is wrong."""
    features = np.asarray(features)
    person_ids = np.asarray(person_ids).reshape(-1)
    modalities = np.asarray(modalities).reshape(-1)
    if features.ndim != 2 or not features.shape[0] == person_ids.size == modalities.size:
        raise UserError(
            f"features, person_ids, modalities: expected (N, D), (N,) and (N,) arrays, got shapes "
            f"{features.shape}, {person_ids.shape} and {modalities.shape}"
        )
    unknown_modalities = sorted(set(modalities.tolist()) - {int(modality) for modality in Modality})
    if unknown_modalities:
        raise UserError(f"modalities: expected 0 (visible) or 1 (infrared), got {unknown_modalities}")
    if not 1 <= max_identities <= len(IDENTITY_COLOURS):
        raise UserError(
            f"identities shown: expected 1 to {len(IDENTITY_COLOURS)} (one distinct colour each), got {max_identities}"
        )
    return features, person_ids, modalities


def _draw_legends(axes: Axes, identities: np.ndarray) -> None:
    """Right of the map: the colour of each person id at the top, the marker of each modality at the bottom."""
    people = [
        Line2D([], [], color=colour, marker="s", linestyle="", label=str(person_id))
        for person_id, colour in zip(identities, IDENTITY_COLOURS)
    ]
    kinds = [
        Line2D([], [], color="black", marker=marker, linestyle="", label=modality.name.lower())
        for modality, marker in MODALITY_MARKERS.items()
    ]
    axes.add_artist(
        axes.legend(handles=people, title="person id", loc="upper left", bbox_to_anchor=(1.02, 1), fontsize="small")
    )
    axes.legend(handles=kinds, title="modality", loc="lower left", bbox_to_anchor=(1.02, 0), fontsize="small")


def tsne_figure(
    features: np.ndarray,
    person_ids: np.ndarray,
    modalities: np.ndarray,
    max_identities: int = len(IDENTITY_COLOURS),
    seed: int = 0,
    title: str | None = None,
) -> Figure:
    """The t-SNE map of the features of the first ``max_identities`` person ids (ascending; at most
    one per colour of IDENTITY_COLOURS), coloured by identity, marked by modality."""
    features, person_ids, modalities = _checked_inputs(features, person_ids, modalities, max_identities)
    identities = np.unique(person_ids)
    kept_identities = identities[: min(max_identities, len(IDENTITY_COLOURS))]
    kept = np.isin(person_ids, kept_identities)
    if kept.sum() < MIN_POINTS:
        raise UserError(
            f"features: t-SNE needs at least {MIN_POINTS} points, got {int(kept.sum())} "
            f"from the first {kept_identities.size} identities"
        )
    embedding = tsne_embedding(features[kept], seed=seed)  # (kept, 2)
    person_ids, modalities = person_ids[kept], modalities[kept]

    figure = Figure(figsize=FIGURE_SIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for person_id, colour in zip(kept_identities, IDENTITY_COLOURS):
        for modality, marker in MODALITY_MARKERS.items():
            rows = (person_ids == person_id) & (modalities == int(modality))
            if rows.any():
                axes.scatter(embedding[rows, 0], embedding[rows, 1], color=colour, marker=marker, s=24)
    _draw_legends(axes, kept_identities)
    axes.set_xticks([])
    axes.set_yticks([])
    shown = f"{kept_identities.size} of {identities.size} identities shown, {embedding.shape[0]} images"
    axes.set_title(f"{title or 't-SNE of features'}\n{shown}")
    return figure


def draw_tsne(
    features: np.ndarray,
    person_ids: np.ndarray,
    modalities: np.ndarray,
    out: str | Path,
    max_identities: int = len(IDENTITY_COLOURS),
    seed: int = 0,
    title: str | None = None,
) -> Path:
    """Writes the PNG ``out`` of :func:`tsne_figure`."""
    return save_png(tsne_figure(features, person_ids, modalities, max_identities, seed, title), out)
