"""Searching a gallery index with query features, and showing the hits as a table or as JSON."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from vireid.data.image_folder import UNKNOWN_ID
from vireid.evaluation.feature_file import FeatureSet
from vireid.modality import Modality
from vireid.retrieval.index import GalleryIndex

_MODALITY_NAMES = {int(Modality.VISIBLE): "visible", int(Modality.INFRARED): "infrared"}


@dataclass(frozen=True)
class Hit:
    """One gallery image found for a query; ``rank`` counts from 1, ``row`` is the image's row in the index.

    Attributes:
        rank: The hit's rank, from 1.
        row: The image's row in the index.
        score: Similarity: cosine, or dot product where the model is scored so (test.distance).
        path: The image's path.
        person_id: The image's person id (-1: unknown).
        camera_id: The image's camera id (-1: unknown).
        modality: A Modality value.
    """

    rank: int
    row: int
    score: float  # similarity: cosine, or dot product where the model is scored so (test.distance)
    path: str
    person_id: int
    camera_id: int
    modality: int  # a Modality value


@dataclass(frozen=True)
class QueryHits:
    """The gallery images found for one query image, best first.

    Attributes:
        query_path: The query image's path.
        query_modality: Its Modality value.
        query_person_id: Its person id (-1: unknown).
        hits: The gallery images found, best first.
    """

    query_path: str
    query_modality: int
    query_person_id: int
    hits: tuple[Hit, ...]


def search_gallery(index: GalleryIndex, queries: FeatureSet, top_k: int) -> list[QueryHits]:
    """The ``top_k`` most similar gallery images of each query (fewer where an ``ivf`` index found fewer).

    Args:
        index: The gallery index.
        queries: The query features and images.
        top_k: The most hits per query.

    Returns:
        One QueryHits per query, in the queries' order.
    """
    scores, rows = index.search(queries.features, top_k)  # (Q, k) each
    gallery = index.images
    results = []
    for query, (query_scores, query_rows) in enumerate(zip(scores, rows)):
        hits = tuple(
            Hit(
                rank=rank,
                row=int(row),
                score=float(score),
                path=gallery.paths[row],
                person_id=int(gallery.person_ids[row]),
                camera_id=int(gallery.camera_ids[row]),
                modality=int(gallery.modalities[row]),
            )
            for rank, (score, row) in enumerate(zip(query_scores, query_rows), start=1)
            if row >= 0
        )
        results.append(
            QueryHits(
                query_path=queries.images.paths[query],
                query_modality=int(queries.images.modalities[query]),
                query_person_id=int(queries.images.person_ids[query]),
                hits=hits,
            )
        )
    return results


def _modality_name(modality: int) -> str:
    return _MODALITY_NAMES.get(modality, str(modality))


def _shown_id(identity: int) -> str:
    return "-" if identity == UNKNOWN_ID else str(identity)


def _shown_path(path: str) -> str:
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def hits_table(results: Sequence[QueryHits]) -> str:
    """A plain-text table of the hits.

    Per query a header line, then one line per hit (rank, score, modality, person id, path);
    unknown person ids print as "-", paths under the current folder print relative to it.

    Args:
        results: What ``search_gallery`` returns.

    Returns:
        The table, "" where there is no query.
    """
    blocks = []
    for result in results:
        lines = [
            f"query {_shown_path(result.query_path)} ({_modality_name(result.query_modality)}, "
            f"person {_shown_id(result.query_person_id)})",
            f"{'rank':>6}  {'score':>6}  {'modality':<8}  {'person':>6}  path",
        ]
        lines += [
            f"{hit.rank:>6}  {hit.score:>6.3f}  {_modality_name(hit.modality):<8}  "
            f"{_shown_id(hit.person_id):>6}  {_shown_path(hit.path)}"
            for hit in result.hits
        ]
        if not result.hits:
            lines.append("  (no gallery image found)")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n" if blocks else ""


def hits_to_json(results: Sequence[QueryHits]) -> list[dict]:
    """The results as plain lists, dicts, ints, floats and strings.

    Unknown ids stay -1; modalities are given by name, as the table prints them.

    Args:
        results: What ``search_gallery`` returns.

    Returns:
        One dict per query.
    """
    return [
        {
            "query_path": result.query_path,
            "query_modality": _modality_name(result.query_modality),
            "query_person_id": result.query_person_id,
            "hits": [{**asdict(hit), "modality": _modality_name(hit.modality)} for hit in result.hits],
        }
        for result in results
    ]
