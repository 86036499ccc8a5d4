"""The per-query loop in the style of the community reference code, for timing comparisons.

Written from the protocol rules (``protocols.md``), one query at a time with
numpy, the way the AGW-era evaluators do it; the ties follow a stable sort so
that it agrees with vireid exactly. Not used by the toolkit itself.
"""

from __future__ import annotations

import numpy as np


def per_query_loop(
    distances: np.ndarray,
    query_ids: np.ndarray,
    gallery_ids: np.ndarray,
    query_cameras: np.ndarray,
    gallery_cameras: np.ndarray,
    protocol: str,
    max_rank: int = 20,
) -> tuple[np.ndarray, float, float]:
    """CMC (``max_rank`` long), mAP and mINP of a (Q, G) distance matrix, one query at a time."""
    indices = np.argsort(distances, axis=1, kind="stable")
    ranked_ids = gallery_ids[indices]
    matches = (ranked_ids == query_ids[:, np.newaxis]).astype(np.int32)
    curves, precisions, inverse_negative = [], [], []
    for query in range(len(query_ids)):
        ranked_cameras = gallery_cameras[indices[query]]
        if protocol == "sysu":
            remove = (query_cameras[query] == 3) & (ranked_cameras == 2)
        elif protocol == "llcm":
            remove = (ranked_ids[query] == query_ids[query]) & (ranked_cameras == query_cameras[query])
        else:
            remove = np.zeros(len(gallery_ids), dtype=bool)
        keep = np.invert(remove)
        raw = matches[query][keep]
        if not np.any(raw):
            continue
        if protocol == "regdb":
            curve = raw.cumsum()
        else:
            kept_ids = ranked_ids[query][keep]
            first_index = np.unique(kept_ids, return_index=True)[1]
            distinct = np.array([kept_ids[index] for index in sorted(first_index)])
            curve = (distinct == query_ids[query]).astype(np.int32).cumsum()
        curve[curve > 1] = 1
        curve = np.concatenate([curve, np.full(max(0, max_rank - len(curve)), curve[-1])])
        curves.append(curve[:max_rank])
        cumulative = raw.cumsum()
        last = np.max(np.where(raw == 1))
        inverse_negative.append(cumulative[last] / (last + 1.0))
        precision = np.asarray([value / (position + 1.0) for position, value in enumerate(cumulative)]) * raw
        precisions.append(precision.sum() / raw.sum())
    return np.asarray(curves, dtype=np.float64).mean(0), float(np.mean(precisions)), float(np.mean(inverse_negative))
