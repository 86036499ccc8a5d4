"""t-SNE maps of features as a PNG: one colour per identity, one marker per modality."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from sklearn.manifold import TSNE

from vireid.atomic import atomic_path
from vireid.data.splits import Modality
from vireid.errors import UserError

DPI = 150
FIGURE_SIZE = (6.4, 6.4)  # inches
IDENTITY_COLOURS = "tab20"  # a qualitative colormap, cycled when there are more identities
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


def draw_tsne(
    features: np.ndarray,
    person_ids: np.ndarray,
    modalities: np.ndarray,
    out: str | Path,
    max_identities: int = 20,
    seed: int = 0,
    title: str | None = None,
) -> Path:
    """Writes the PNG ``out``: the t-SNE map of the features of the first ``max_identities``
    person ids (in ascending order), coloured by identity, marked by modality."""
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
    if max_identities < 1:
        raise UserError(f"max_identities: expected a positive number, got {max_identities}")
    kept_identities = np.unique(person_ids)[:max_identities]
    kept = np.isin(person_ids, kept_identities)
    if kept.sum() < MIN_POINTS:
        raise UserError(
            f"features: t-SNE needs at least {MIN_POINTS} points, got {int(kept.sum())} "
            f"from the first {kept_identities.size} identities"
        )
    embedding = tsne_embedding(features[kept], seed=seed)  # (kept, 2)
    person_ids, modalities = person_ids[kept], modalities[kept]

    figure = Figure(figsize=FIGURE_SIZE, dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    colours = colormaps[IDENTITY_COLOURS].colors
    for index, person_id in enumerate(kept_identities):
        for modality, marker in MODALITY_MARKERS.items():
            rows = (person_ids == person_id) & (modalities == int(modality))
            if rows.any():
                colour = colours[index % len(colours)]
                axes.scatter(embedding[rows, 0], embedding[rows, 1], color=colour, marker=marker, s=24)
    handles = [
        Line2D([], [], color="grey", marker=marker, linestyle="", label=modality.name.lower())
        for modality, marker in MODALITY_MARKERS.items()
    ]
    axes.legend(handles=handles, loc="best", fontsize="small")
    axes.set_xticks([])
    axes.set_yticks([])
    axes.set_title(title or f"t-SNE of {len(kept_identities)} identities, {embedding.shape[0]} images")
    figure.tight_layout()
    with atomic_path(out) as temporary:
        figure.savefig(temporary, format="png", dpi=DPI)
    return Path(out)
