"""k-reciprocal re-ranking (Zhong et al., "Re-ranking Person Re-identification with k-reciprocal Encoding", CVPR 2017).

It takes the form the community code uses (the feature version of the authors' code, as in
reid-strong-baseline, fast-reid and MPANet): k1 = 20, k2 = 6, lambda = 0.3.

On the N = Q + G query and gallery features together:

1. d(i, j): squared Euclidean distance, each row divided by its largest value;
2. R(i, k): the k-reciprocal neighbours of i, the j among i's k + 1 nearest (i included)
   that have i among their own k + 1 nearest;
3. R*(i): R(i, k1), with R(j, round(k1 / 2)) added for each j in R(i, k1) that shares more
   than 2/3 of its members with R(i, k1);
4. V(i): exp(-d(i, j)) on R*(i), normalised to sum 1; with k2 > 1 replaced by the mean of
   V over i's k2 nearest (local query expansion);
5. Jaccard distance 1 - m / (2 - m), m = sum_j min(V(q, j), V(g, j));
6. final distance (1 - lambda) Jaccard + lambda d(q, g), a (Q, G) matrix, ranked as any other.

Vectorised torch on the features' device. Memory stays bounded: the N x N distances are
never held (only each row's nearest neighbours, computed in row chunks), V is sparse (about
N x |R*| entries, and N x k2 x |R*| before the query expansion sums them), the neighbour sets
take N x (k1 + 1)^2 indices, and the Jaccard sums join the query and gallery entries of V
column by column in chunks of at most _CHUNK_BYTES of temporaries; the full matrices are the
(Q, G) result and its Jaccard part.

Re-ranking uses the gallery's structure, so its figures are not comparable with plain ones:
vireid labels them "re-ranked" wherever they appear. On single-shot galleries (one image per
identity) few gallery neighbours share an identity, and re-ranking can lower the scores.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from vireid.config import value_range
from vireid.errors import UserError

_CHUNK_BYTES = 256 * 2**20
_BYTES_PER_ELEMENT = 64  # the chunk's temporaries together, per element of its longest one
_CHUNK_ELEMENTS = _CHUNK_BYTES // _BYTES_PER_ELEMENT
"""Elements of one chunk's longest temporary (a row chunk's distances, or its joined V entries)."""


@dataclass(frozen=True)
class RerankSettings:
    """The parameters of k-reciprocal re-ranking (the paper's defaults), each checked.

    Attributes:
        k1: The size of the k-reciprocal neighbourhoods.
        k2: The neighbours averaged in the local query expansion.
        lambda_value: The weight of the original distance beside the Jaccard distance.

    Raises:
        UserError: Where a value is outside the range of its ``test.rerank_*`` config key.
    """

    k1: int = 20
    k2: int = 6
    lambda_value: float = 0.3

    def __post_init__(self):
        for name, value in (("k1", self.k1), ("k2", self.k2), ("lambda", self.lambda_value)):
            accepted = value_range(f"test.rerank_{name}")  # the ranges of the config keys of these settings
            if value not in accepted:
                raise UserError(f"re-ranking {name}: expected {accepted.describe()}, got {value}")

    @staticmethod
    def from_dict(settings: dict) -> "RerankSettings":
        """The settings a results.json records (``to_dict``).

        Args:
            settings: "k1", "k2" and "lambda_value".

        Returns:
            The settings, checked.
        """
        return RerankSettings(int(settings["k1"]), int(settings["k2"]), float(settings["lambda_value"]))

    def describe(self) -> str:
        """How re-ranked figures are labelled everywhere: 're-ranked (k1 20, k2 6, λ 0.3)'."""
        return f"re-ranked (k1 {self.k1}, k2 {self.k2}, λ {self.lambda_value:g})"

    def to_dict(self) -> dict:
        """The settings as results.json records them: "k1", "k2" and "lambda_value"."""
        return asdict(self)


def _squared_distances(features: torch.Tensor, squares: torch.Tensor, rows: slice, columns: slice) -> torch.Tensor:
    """(R, C) squared Euclidean distances of the ``rows`` of (N, D) ``features`` to its ``columns``.

    ``squares``: (N,) the features' squared norms.
    """
    return (squares[rows, None] + squares[None, columns] - 2 * features[rows] @ features[columns].T).clamp_(min=0)


def _nearest(features: torch.Tensor, squares: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's nearest features and its largest distance, in row chunks of bounded size.

    Returns (N, count) indices of each row's nearest features by ascending distance (ties by index),
    and (N,) each row's largest distance.
    """
    num = features.shape[0]
    chunk = max(1, _CHUNK_ELEMENTS // num)
    nearest, largest = [], []
    for start in range(0, num, chunk):
        distances = _squared_distances(features, squares, slice(start, start + chunk), slice(None))  # (c, N)
        largest.append(distances.max(1).values)
        values, indices = torch.topk(distances, count, dim=1, largest=False)
        by_index = torch.argsort(indices, dim=1)  # then a stable sort by distance: ties in index order
        values, indices = torch.gather(values, 1, by_index), torch.gather(indices, 1, by_index)
        indices = torch.gather(indices, 1, torch.argsort(values, dim=1, stable=True))
        # where the count-th distance is tied with images topk left out, topk chose among the tied
        # arbitrarily: those rows take the lowest indices, from a full stable sort
        last = values.max(1, keepdim=True).values
        arbitrary = (distances == last).sum(1) > (values == last).sum(1)
        if arbitrary.any():
            ordered = torch.sort(distances[arbitrary], dim=1, stable=True).indices[:, :count]
            indices[arbitrary] = ordered
        nearest.append(indices)
    return torch.cat(nearest), torch.cat(largest).clamp(min=torch.finfo(features.dtype).tiny)


def _reciprocal(nearest: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, k + 1) each row's k + 1 nearest, and which of them are k-reciprocal (have the row among theirs)."""
    forward = nearest[:, : k + 1]
    rows = torch.arange(nearest.shape[0], device=nearest.device)
    mutual = (forward[forward] == rows[:, None, None]).any(dim=2)  # (N, k + 1)
    return forward, mutual


Entries = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""A sparse (N, N) matrix as (rows, columns, values), sorted by row, then column."""


def _pair_products(features: torch.Tensor, rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """(E,) dot products of the feature pairs (rows[e], columns[e]), a bounded number of pairs at a time."""
    step = max(1, _CHUNK_ELEMENTS // (2 * features.shape[1]))
    return torch.cat(
        [
            (features[rows[start : start + step]] * features[columns[start : start + step]]).sum(1)
            for start in range(0, rows.numel(), step)
        ]
    )


def _expansion_entries(
    features: torch.Tensor, squares: torch.Tensor, nearest: torch.Tensor, largest: torch.Tensor, k1: int
) -> Entries:
    """V as (rows, columns, values): each row's weights exp(-d) on R*(i), summing to 1."""
    num = features.shape[0]
    forward, mutual = _reciprocal(nearest, k1)  # (N, k1 + 1) each
    half_forward, half_mutual = _reciprocal(nearest, int(round(k1 / 2)))  # (N, h + 1) each
    chunk = max(1, _CHUNK_ELEMENTS // max(num, forward.shape[1] * half_forward.shape[1] * 4))
    entries = []
    for start in range(0, num, chunk):
        stop = min(num, start + chunk)
        local = torch.arange(stop - start, device=features.device)[:, None]  # (c, 1)
        members = torch.zeros(stop - start, num, dtype=torch.bool, device=features.device)  # R(i, k1) of the chunk
        members[local.expand_as(forward[start:stop]), forward[start:stop]] = mutual[start:stop]
        candidate_sets = half_forward[forward[start:stop]]  # (c, k1 + 1, h + 1): R(j, h) of each j near i
        candidate_valid = half_mutual[forward[start:stop]]
        shared = (members[local[:, :, None], candidate_sets] & candidate_valid).sum(2)  # |R(j, h) ∩ R(i, k1)|
        accepted = mutual[start:stop] & (shared > 2 / 3 * candidate_valid.sum(2))  # (c, k1 + 1)
        added = accepted[:, :, None] & candidate_valid
        expansion = members.clone()  # R*(i)
        expansion[local[:, :, None].expand_as(candidate_sets)[added], candidate_sets[added]] = True
        row_index, column_index = expansion.nonzero(as_tuple=True)
        row_index = row_index + start
        pair_products = _pair_products(features, row_index, column_index)
        pair_distances = (squares[row_index] + squares[column_index] - 2 * pair_products).clamp(min=0)
        weights = torch.exp(-pair_distances / largest[row_index])
        totals = torch.zeros(num, dtype=weights.dtype, device=weights.device).index_add_(0, row_index, weights)
        entries.append((row_index, column_index, weights / totals[row_index]))
    rows, columns, values = (torch.cat(parts) for parts in zip(*entries))
    return rows, columns, values


def _ranges(starts: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every position of the ranges [starts[r], starts[r] + counts[r]): (which range, position)."""
    owner = torch.arange(counts.numel(), device=counts.device).repeat_interleave(counts)
    first_of_owner = (torch.cumsum(counts, 0) - counts).repeat_interleave(counts)
    return owner, starts[owner] + torch.arange(owner.numel(), device=counts.device) - first_of_owner


def _query_expansion(v: Entries, nearest: torch.Tensor, k2: int, num: int) -> Entries:
    """V with each row replaced by the mean of the V rows of its k2 nearest."""
    rows, columns, values = v
    if k2 == 1:
        return v
    per_row = torch.bincount(rows, minlength=num)
    averaged = nearest[:, :k2]  # (N, k2), fewer where the set has fewer images
    neighbours = averaged.reshape(-1)  # row i's nearest, row after row
    owner, source = _ranges((torch.cumsum(per_row, 0) - per_row)[neighbours], per_row[neighbours])
    keys = torch.div(owner, averaged.shape[1], rounding_mode="floor") * num + columns[source]
    unique_keys, inverse = torch.unique(keys, return_inverse=True)  # sorted: by row, then column
    summed = torch.zeros(unique_keys.numel(), dtype=values.dtype, device=values.device)
    summed.index_add_(0, inverse, values[source])
    return torch.div(unique_keys, num, rounding_mode="floor"), unique_keys % num, summed / averaged.shape[1]


def _shared_weight(v: Entries, num: int, num_query: int) -> torch.Tensor:
    """(Q, G) sum over j of min(V(q, j), V(g, j)).

    The query and gallery entries of V are joined on their column, in chunks of query entries of bounded size.
    """
    rows, columns, values = v
    num_gallery = num - num_query
    is_query = rows < num_query
    query_rows, query_columns, query_values = rows[is_query], columns[is_query], values[is_query]
    by_column = torch.argsort(columns[~is_query], stable=True)
    gallery_rows = rows[~is_query][by_column] - num_query
    gallery_values = values[~is_query][by_column]
    per_column = torch.bincount(columns[~is_query], minlength=num)
    column_start = torch.cumsum(per_column, 0) - per_column
    meetings = per_column[query_columns]  # the gallery entries each query entry meets
    meetings_so_far = torch.cumsum(meetings, 0)
    shared = torch.zeros(num_query * num_gallery, dtype=values.dtype, device=values.device)
    start = 0
    while start < query_rows.numel():
        before = int(meetings_so_far[start - 1]) if start else 0
        stop = max(start + 1, int(torch.searchsorted(meetings_so_far, before + _CHUNK_ELEMENTS, right=True)))
        owner, partner = _ranges(column_start[query_columns[start:stop]], meetings[start:stop])
        entry = owner + start
        contribution = torch.minimum(query_values[entry], gallery_values[partner])
        shared.index_add_(0, query_rows[entry] * num_gallery + gallery_rows[partner], contribution)
        start = stop
    return shared.view(num_query, num_gallery)


_PEAK_BYTES_PER_PAIR = 17
"""The (Q, G) matrices re-ranking holds at its peak, per query-gallery pair: the shared weights, the
original distances and their temporaries (measured on the CPU at 10000 x 10000)."""


def rerank_memory(num_query: int, num_gallery: int, settings: RerankSettings) -> int:
    """Bytes, about, that ``k_reciprocal_distances`` needs at its peak.

    That is its (Q, G) matrices, the neighbour sets (N x (k1 + 1)^2 int64 indices) and two chunks' temporaries.

    Args:
        num_query: The number of queries (Q).
        num_gallery: The number of gallery images (G).
        settings: The re-ranking settings.

    Returns:
        The bytes.
    """
    num = num_query + num_gallery
    neighbours = min(num, max(settings.k1 + 1, settings.k2))
    return _PEAK_BYTES_PER_PAIR * num_query * num_gallery + num * neighbours**2 * 8 + 2 * _CHUNK_BYTES


def k_reciprocal_distances(
    query_features: torch.Tensor, gallery_features: torch.Tensor, settings: RerankSettings = RerankSettings()
) -> torch.Tensor:
    """(Q, G) re-ranked distances of (Q, D) query and (G, D) gallery features (see the module's steps).

    Args:
        query_features: (Q, D) features.
        gallery_features: (G, D) features.
        settings: The re-ranking settings.

    Returns:
        (Q, G) distances on the query features' device, in float64 if they are float64 and float32 otherwise.
    """
    dtype = torch.float64 if query_features.dtype == torch.float64 else torch.float32
    features = torch.cat([query_features, gallery_features.to(query_features.device)]).to(dtype)
    num, num_query = features.shape[0], query_features.shape[0]
    squares = features.pow(2).sum(1)  # (N,)
    nearest, largest = _nearest(features, squares, min(num, max(settings.k1 + 1, settings.k2)))
    entries = _expansion_entries(features, squares, nearest, largest, settings.k1)
    v = _query_expansion(entries, nearest, settings.k2, num)
    shared = _shared_weight(v, num, num_query)
    jaccard = shared.div_(shared.neg().add_(2)).neg_().add_(1)  # 1 - m / (2 - m), in place
    original = _squared_distances(features, squares, slice(num_query), slice(num_query, None))
    original /= largest[:num_query, None]
    return original.mul_(settings.lambda_value).add_(jaccard, alpha=1 - settings.lambda_value)


__all__ = ["RerankSettings", "k_reciprocal_distances", "rerank_memory"]
