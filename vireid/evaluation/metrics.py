"""Ranking metrics of re-identification (CMC, mAP, mINP), vectorised and exact to the protocols.

Rules (the community reference code, ``protocols.md``): rank the gallery by
ascending distance; remove the gallery images a query must not be matched with,
as the dataset's ScoringRule says (SYSU-MM01: camera-2 images for a camera-3
query; LLCM: same person AND same camera; RegDB: nothing); a query none of
whose identity's images remain is invalid and counts in no average. CMC is
identity-deduplicated where the rule says so (SYSU-MM01, LLCM: only the first
image of each person id in the ranking counts), else image-level (RegDB). AP is
the mean precision at the positions of the correct images; INP = correct
images / position of the last. ``scoring`` is a ScoringRule or the name of a
registered dataset, whose rule is used.

Ties: equal distances keep gallery order (a stable sort: the lower gallery
index ranks first), so results never depend on the sorting algorithm.

CMC beyond the gallery's length stays at its final value (it is a cumulative
fraction), so ``cmc`` always has ``max_rank`` entries; the reference code
truncates the curve to the gallery's length instead.

Everything runs as tensor operations on the distances' device, in query chunks
that bound the temporary memory; no Python loop over queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from vireid.datasets import ScoringRule, get_dataset
from vireid.evaluation.rerank import RerankSettings, k_reciprocal_distances, rerank_memory

ArrayLike = np.ndarray | torch.Tensor | Sequence
_CHUNK_BYTES = 256 * 2**20
_BYTES_PER_PAIR = 64  # the (chunk, G) temporaries of one pass, all together
_PEAK_BYTES_PER_PAIR = 20
"""What ranking holds at its peak per query-gallery pair beside its chunks: the distances, their gallery
order and temporaries (21 bytes measured on the CPU at 10000 x 10000)."""


Distance = Literal["cosine", "dot"]
DISTANCES: dict[str, str] = {
    "cosine": "negative cosine similarity: the features L2-normalised, then their dot product",
    "dot": "negative dot product of the features as they are (DEEN's test.py: np.matmul of its features)",
}
"""The distances a model's features are scored with (``test.distance``), recorded with the features."""


def distance_of(metadata: dict | None) -> Distance:
    """The distance that features with this metadata (a feature file's, an index's) are scored with.

    The signature of the model that made them records it (vireid.engine.extract.feature_signature);
    features written before it was recorded were all scored by cosine.

    Args:
        metadata: The features' metadata, or None.

    Returns:
        "cosine" or "dot".
    """
    model = (metadata or {}).get("model")
    return model.get("distance", "cosine") if isinstance(model, dict) else "cosine"


def scoring_features(features: ArrayLike, distance: Distance, device: torch.device | None = None) -> torch.Tensor:
    """(N, D) float32 features as ``distance`` compares them by dot product.

    Args:
        features: (N, D) features, a numpy array or a tensor.
        distance: "cosine" or "dot".
        device: Where the result goes; None: where the features are.

    Returns:
        (N, D) float32 features: L2-normalised for ``cosine``, as they are for ``dot``.
    """
    features = _as_tensor(features, device).float()
    return torch.nn.functional.normalize(features, dim=1) if distance == "cosine" else features


class NoValidQueryError(ValueError):
    """No query has an image of its identity left in the gallery: there is nothing to average."""


@dataclass(frozen=True)
class RankMetrics:
    """The scores of one query set against one gallery; averages are over valid queries only.

    Attributes:
        cmc: (max_rank,) float64 CMC curve, fractions of valid queries.
        mAP: Mean average precision.
        mINP: Mean inverse negative penalty.
        num_valid_queries: The queries with an image of their identity left in the gallery.
        num_queries: Every query.
    """

    cmc: np.ndarray  # (max_rank,) float64, fractions of valid queries
    mAP: float
    mINP: float
    num_valid_queries: int
    num_queries: int

    def rank(self, k: int) -> float:
        """CMC at rank ``k`` (1-based).

        Args:
            k: The rank, 1 to ``max_rank``.

        Returns:
            The fraction of valid queries matched within the first ``k``.
        """
        return float(self.cmc[k - 1])


def _as_tensor(values: ArrayLike, device: torch.device | None = None) -> torch.Tensor:
    """A tensor without autograd history; numpy views of any stride are accepted."""
    tensor = values.detach() if isinstance(values, torch.Tensor) else torch.as_tensor(np.ascontiguousarray(values))
    return tensor if device is None else tensor.to(device)


def scoring_rule(scoring: ScoringRule | str) -> ScoringRule:
    """``scoring`` itself, or the rule of the registered dataset it names.

    Args:
        scoring: A ScoringRule or a registered dataset's name.

    Returns:
        The rule.
    """
    return scoring if isinstance(scoring, ScoringRule) else get_dataset(scoring).scoring


def _as_tensors(distances: ArrayLike, *id_vectors: ArrayLike) -> tuple[torch.Tensor, ...]:
    """The distances and the id/camera vectors as tensors (int64) on the distances' device."""
    distances = _as_tensor(distances)
    return (distances, *(_as_tensor(vector, distances.device).long() for vector in id_vectors))


def gallery_order(distances: torch.Tensor) -> torch.Tensor:
    """(C, G) gallery indices by ascending distance, ties in gallery order.

    On the CPU, float32 distances become unique int64 keys (the distance's
    order-preserving bit pattern in the high half, the gallery index in the
    low half) sorted by numpy, several times faster than a stable argsort;
    elsewhere (GPU, or float64 that float32 cannot hold exactly) a stable torch sort.

    Args:
        distances: (C, G) distances.

    Returns:
        (C, G) int64 gallery indices.
    """
    if distances.device.type == "cpu":
        single = distances.float()
        if distances.dtype == torch.float32 or torch.equal(single.double(), distances.double()):
            bits = (single + 0.0).numpy().view(np.int32).astype(np.int64)  # + 0.0 turns -0.0 into 0.0
            ordered_bits = np.where(bits < 0, bits ^ 0x7FFFFFFF, bits)  # negative floats: reverse their order
            keys = (ordered_bits << 32) | np.arange(distances.shape[1], dtype=np.int64)
            keys.sort(axis=1)
            return torch.from_numpy(keys & 0xFFFFFFFF)
    return torch.sort(distances, dim=1, stable=True).indices


def _kept(
    same_id: torch.Tensor,  # (C, G) ranked gallery image has the query's person id
    query_cameras: torch.Tensor,  # (C,)
    ranked_gallery_cameras: torch.Tensor,  # (C, G)
    rule: ScoringRule,
) -> torch.Tensor:
    """(C, G) which ranked gallery images the rule lets the query be matched with."""
    removed = torch.zeros_like(same_id)
    for query_camera, gallery_camera in rule.removed_camera_pairs:
        removed |= (query_cameras[:, None] == query_camera) & (ranked_gallery_cameras == gallery_camera)
    if rule.remove_same_person_same_camera:
        removed |= same_id & (ranked_gallery_cameras == query_cameras[:, None])
    return ~removed


def _scores_of_chunk(
    distances: torch.Tensor,  # (C, G)
    query_ids: torch.Tensor,  # (C,)
    query_cameras: torch.Tensor,  # (C,)
    gallery_ids: torch.Tensor,  # (G,)
    gallery_cameras: torch.Tensor,  # (G,)
    gallery_id_index: torch.Tensor,  # (G,) ids mapped to 0..U-1
    num_unique_ids: int,
    rule: ScoringRule,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per query: 1-based rank of the first hit (CMC), AP, INP, valid flag."""
    num_chunk_queries, num_gallery = distances.shape
    order = gallery_order(distances).to(distances.device)  # (C, G)
    same_id = gallery_ids[order] == query_ids[:, None]
    keep = _kept(same_id, query_cameras, gallery_cameras[order], rule)
    matches = same_id & keep
    kept_position = torch.cumsum(keep, dim=1, dtype=torch.int32)  # (C, G), 1-based among kept images
    correct_so_far = torch.cumsum(matches, dim=1, dtype=torch.int32)

    # only the correct matches matter for AP, INP and the image-level first hit
    match_query, match_column = torch.nonzero(matches, as_tuple=True)  # sorted by query, then position
    match_position = kept_position[match_query, match_column].to(torch.float64)
    precision = correct_so_far[match_query, match_column].to(torch.float64) / match_position
    num_correct = correct_so_far[:, -1].to(torch.float64)
    valid = num_correct > 0
    zeros = torch.zeros(num_chunk_queries, dtype=torch.float64, device=distances.device)
    average_precision = zeros.index_add(0, match_query, precision) / num_correct.clamp(min=1)
    last_correct_position = zeros.scatter_reduce(0, match_query, match_position, "amax")
    inverse_negative_precision = num_correct / last_correct_position.clamp(min=1)
    large = float(num_gallery + 1)
    first_hit_position = torch.full_like(zeros, large).scatter_reduce(0, match_query, match_position, "amin")
    if not rule.identity_deduplicated_cmc:
        return first_hit_position, average_precision, inverse_negative_precision, valid
    # identity-deduplicated rank: 1 + number of other identities whose first kept
    # image comes before the query identity's first correct image
    first_position = torch.full(
        (num_chunk_queries, num_unique_ids), large, dtype=torch.float64, device=distances.device
    )
    first_position.scatter_reduce_(
        1, gallery_id_index[order], torch.where(keep, kept_position.to(torch.float64), large), "amin"
    )
    first_hit_rank = (first_position < first_hit_position[:, None]).sum(1).to(torch.float64) + 1
    return first_hit_rank, average_precision, inverse_negative_precision, valid


def rank_metrics(
    distances: ArrayLike,
    query_ids: ArrayLike,
    gallery_ids: ArrayLike,
    query_cameras: ArrayLike,
    gallery_cameras: ArrayLike,
    scoring: ScoringRule | str,
    max_rank: int = 20,
    query_chunk_size: int | None = None,
) -> RankMetrics:
    """CMC (``max_rank`` long), mAP and mINP of a (Q, G) distance matrix under ``scoring``.

    ``distances`` and the id/camera vectors may be numpy arrays or tensors;
    the work happens on the distances' device. ``query_chunk_size`` queries are
    scored at a time; ``None`` picks the largest chunk whose (chunk, G)
    temporaries stay under about 256 MB.

    Args:
        distances: (Q, G) distances, smaller is more similar.
        query_ids: (Q,) person ids of the queries.
        gallery_ids: (G,) person ids of the gallery images.
        query_cameras: (Q,) camera ids of the queries.
        gallery_cameras: (G,) camera ids of the gallery images.
        scoring: A ScoringRule or a registered dataset's name.
        max_rank: The length of the CMC curve.
        query_chunk_size: Queries scored at a time; None: chosen by memory.

    Returns:
        The metrics, averaged over the valid queries.

    Raises:
        ValueError: Where the shapes do not fit, or ``max_rank`` or ``query_chunk_size`` is below 1.
        NoValidQueryError: Where no query has an image of its identity left in the gallery.
    """
    rule = scoring_rule(scoring)
    distances, query_ids, gallery_ids, query_cameras, gallery_cameras = _as_tensors(
        distances, query_ids, gallery_ids, query_cameras, gallery_cameras
    )
    device = distances.device
    if distances.ndim != 2:
        raise ValueError(f"distances must be a (Q, G) matrix, got shape {tuple(distances.shape)}")
    num_queries, num_gallery = distances.shape
    if query_ids.shape != (num_queries,) or query_cameras.shape != (num_queries,):
        raise ValueError(
            f"query ids {tuple(query_ids.shape)} and cameras "
            f"{tuple(query_cameras.shape)} must have Q = {num_queries} entries"
        )
    if gallery_ids.shape != (num_gallery,) or gallery_cameras.shape != (num_gallery,):
        raise ValueError(
            f"gallery ids {tuple(gallery_ids.shape)} and cameras "
            f"{tuple(gallery_cameras.shape)} must have G = {num_gallery} entries"
        )
    if max_rank < 1:
        raise ValueError(f"max_rank must be at least 1, got {max_rank}")
    if query_chunk_size is not None and query_chunk_size < 1:
        raise ValueError(f"query_chunk_size must be at least 1 (or None), got {query_chunk_size}")
    unique_ids, gallery_id_index = torch.unique(gallery_ids, return_inverse=True)
    chunk = query_chunk_size or max(1, _CHUNK_BYTES // max(1, _BYTES_PER_PAIR * max(num_gallery, unique_ids.numel())))
    parts = [
        _scores_of_chunk(
            distances[start : start + chunk],
            query_ids[start : start + chunk],
            query_cameras[start : start + chunk],
            gallery_ids,
            gallery_cameras,
            gallery_id_index,
            unique_ids.numel(),
            rule,
        )
        for start in range(0, num_queries, chunk)
    ]
    first_hit_rank, average_precision, inverse_negative_precision, valid = (torch.cat(values) for values in zip(*parts))
    num_valid = int(valid.sum())
    if num_valid == 0:
        raise NoValidQueryError("no valid query: no query identity appears in the gallery")
    ranks = torch.arange(1, max_rank + 1, device=device, dtype=torch.float64)
    hits = (first_hit_rank[valid][:, None] <= ranks[None, :]).to(torch.float64)  # (valid Q, max_rank)
    return RankMetrics(
        cmc=hits.mean(0).cpu().numpy(),
        mAP=float(average_precision[valid].mean()),
        mINP=float(inverse_negative_precision[valid].mean()),
        num_valid_queries=num_valid,
        num_queries=num_queries,
    )


def pairwise_distances(
    query_features: ArrayLike, gallery_features: ArrayLike, distance: Distance = "cosine"
) -> torch.Tensor:
    """(Q, G) distances of ``distance`` (DISTANCES) between two feature sets, on the query features' device.

    Args:
        query_features: (Q, D) features.
        gallery_features: (G, D) features.
        distance: "cosine" or "dot".

    Returns:
        (Q, G) float32 distances: the negative similarities.
    """
    query = scoring_features(query_features, distance)
    return -(query @ scoring_features(gallery_features, distance, query.device).T)


def scoring_memory(num_query: int, num_gallery: int, rerank: RerankSettings | None = None) -> int:
    """Bytes, about, that ``evaluate_features`` needs at its peak.

    That is the ranking's, or the re-ranking's before it where that is more.

    Args:
        num_query: The number of queries.
        num_gallery: The number of gallery images.
        rerank: The re-ranking settings, or None for plain distances.

    Returns:
        The bytes.
    """
    ranking = _PEAK_BYTES_PER_PAIR * num_query * num_gallery + _CHUNK_BYTES
    return ranking if rerank is None else max(ranking, rerank_memory(num_query, num_gallery, rerank))


def evaluate_features(
    query_features: ArrayLike,
    gallery_features: ArrayLike,
    query_ids: ArrayLike,
    gallery_ids: ArrayLike,
    query_cameras: ArrayLike,
    gallery_cameras: ArrayLike,
    scoring: ScoringRule | str,
    max_rank: int = 20,
    rerank: RerankSettings | None = None,
    distance: Distance = "cosine",
) -> RankMetrics:
    """rank_metrics of the ``distance`` distances between two feature sets.

    With ``rerank``, of their k-reciprocal re-ranked distances (vireid.evaluation.rerank): of the
    unit features for ``cosine``, as the plain ranking; of the features as they are for ``dot``.

    Args:
        query_features: (Q, D) features.
        gallery_features: (G, D) features.
        query_ids: (Q,) person ids of the queries.
        gallery_ids: (G,) person ids of the gallery images.
        query_cameras: (Q,) camera ids of the queries.
        gallery_cameras: (G,) camera ids of the gallery images.
        scoring: A ScoringRule or a registered dataset's name.
        max_rank: The length of the CMC curve.
        rerank: The re-ranking settings, or None for plain distances.
        distance: "cosine" or "dot".

    Returns:
        The metrics, averaged over the valid queries.
    """
    if rerank is None:
        distances = pairwise_distances(query_features, gallery_features, distance)
    else:
        query = scoring_features(query_features, distance)
        distances = k_reciprocal_distances(query, scoring_features(gallery_features, distance, query.device), rerank)
    return rank_metrics(
        distances,
        query_ids,
        gallery_ids,
        query_cameras,
        gallery_cameras,
        scoring,
        max_rank,
    )


def ranked_gallery(
    distances: ArrayLike,
    query_ids: ArrayLike,
    gallery_ids: ArrayLike,
    query_cameras: ArrayLike,
    gallery_cameras: ArrayLike,
    scoring: ScoringRule | str,
    top_k: int,
) -> list[np.ndarray]:
    """Per query, the first ``top_k`` gallery indices in the order the metrics score them.

    That is ascending distance, ties in gallery order, the images the scoring rule
    removes for that query left out (so a list may be shorter than ``top_k``).

    Args:
        distances: (Q, G) distances.
        query_ids: (Q,) person ids of the queries.
        gallery_ids: (G,) person ids of the gallery images.
        query_cameras: (Q,) camera ids of the queries.
        gallery_cameras: (G,) camera ids of the gallery images.
        scoring: A ScoringRule or a registered dataset's name.
        top_k: The most gallery indices per query.

    Returns:
        One int64 array of gallery indices per query.
    """
    distances, query_ids, gallery_ids, query_cameras, gallery_cameras = _as_tensors(
        distances, query_ids, gallery_ids, query_cameras, gallery_cameras
    )
    order = gallery_order(distances).to(distances.device)  # (Q, G)
    keep = _kept(gallery_ids[order] == query_ids[:, None], query_cameras, gallery_cameras[order], scoring_rule(scoring))
    return [row[kept][:top_k].cpu().numpy() for row, kept in zip(order, keep)]
