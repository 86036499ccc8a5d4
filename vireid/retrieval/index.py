"""The gallery index: a FAISS index over a gallery's features, saved as .npz.

It is searched by the similarity the model's features are scored with (cosine, or dot product).

Features scored by cosine are L2-normalised before they are added and before a
search, so the inner product FAISS computes is the cosine similarity; features
scored by dot product (``test.distance: dot``, DEEN) go in as they are. Either
way the similarity is the negative of the evaluator's distance
(``vireid.evaluation.metrics.pairwise_distances``).
FAISS picks the candidates; their similarities are then recomputed with
float64 sums (FAISS's BLAS scores can differ in the last bit between identical
rows), and they come in the evaluator's order: descending similarity, equal
similarities by ascending gallery row, also where a tie crosses the k-th place.

Kinds: ``flat`` searches exhaustively (exact); ``ivf`` splits the gallery into
``nlist`` k-means cells (trained on the gallery, with a fixed seed) and
searches the ``nprobe`` cells nearest each query (approximate, faster on large
galleries).

Format (version 1), one ``.npz`` archive readable with ``numpy.load(allow_pickle=False)``;
it holds a feature file's arrays (``vireid.evaluation.feature_file``), so it is
also a source of the gallery's features:

=============  ============  ==================================================
key            dtype, shape  meaning
=============  ============  ==================================================
features       float32 (N,D) the gallery's features as given (not normalised)
paths          unicode (N,)  image paths, relative to ``metadata["root"]`` when
                             they lie under it, with ``/`` separators
person_ids     int64 (N,)    person id of each image (-1: unknown)
camera_ids     int64 (N,)    camera id of each image (-1: unknown)
modalities     int8 (N,)     0 visible, 1 infrared (vireid.data.Modality)
metadata       unicode ()    JSON object: the feature file's metadata, with
                             ``format`` ("vireid-index"), ``version`` (1),
                             ``kind`` ("flat" or "ivf"), ``nlist`` and
                             ``nprobe`` (null for flat), ``dimension`` (D)
index          uint8 (B,)    ``faiss.serialize_index`` of the index over the
                             compared (for cosine, normalised) features, row i = image i
                             (``faiss.deserialize_index`` restores it)
=============  ============  ==================================================
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import faiss
import numpy as np

from vireid.data.splits import Split
from vireid.errors import UserError
from vireid.evaluation.feature_file import FeatureSet, FileKind, read_feature_set, write_feature_set
from vireid.evaluation.metrics import distance_of
from vireid.retrieval.faiss_layout import check_faiss_layout

INDEX_KINDS = ("flat", "ivf")
_KMEANS_SEED = 1234
_MIN_IMAGES_PER_LIST = 39  # FAISS k-means warns below this many training points per centroid
_RESCORED_VALUES = 2**22  # gallery feature values gathered at a time to rescore candidates


class IndexFileError(UserError, ValueError):
    """An index file that is missing, unreadable or not a vireid index."""


class GalleryIndexError(UserError, ValueError):
    """Options or queries that do not fit a gallery index.

    An unknown kind, nlist or nprobe out of range, top_k below 1, query features of another
    dimension or another model.
    """


INDEX_FILE = FileKind("vireid-index", 1, "index file", IndexFileError, extra_keys=("index",))


def default_nlist(num_images: int) -> int:
    """About 4·sqrt(N) inverted lists, but at least 39 training images per list and at least one list.

    Args:
        num_images: The gallery's images (N).

    Returns:
        The number of inverted lists (``nlist``).
    """
    return max(1, min(round(4 * math.sqrt(num_images)), num_images // _MIN_IMAGES_PER_LIST))


def _norms(features: np.ndarray) -> np.ndarray:
    """(N,) float64 L2 norms of the rows, at least 1e-12 (zero rows stay zero once divided, as in the evaluator)."""
    return np.maximum(np.sqrt(np.einsum("nd,nd->n", features, features, dtype=np.float64)), 1e-12)


def _compared(features: np.ndarray, distance: str) -> np.ndarray:
    """(N, D) float32 contiguous rows as ``distance`` compares them.

    They are divided by their L2 norm for cosine, as they are for dot.
    """
    scale = _norms(features) if distance == "cosine" else np.ones(len(features))
    return np.ascontiguousarray(features / scale[:, None], dtype=np.float32)


def _in_evaluator_order(scores: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each query's results by descending score, equal scores by ascending gallery row (rows -1 score -inf: last)."""
    order = np.lexsort((rows, -scores), axis=1)  # (Q, F)
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(rows, order, axis=1)


def _tie_may_go_on(scores: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """(Q,) whether the k-th score equals the last fetched one, a real row: more rows may share it."""
    return (rows[:, -1] >= 0) & (scores[:, -1] == scores[:, k - 1])


class GalleryIndex:
    """A FAISS inner-product index over a gallery's features, with the gallery's images.

    The features are indexed as their distance compares them (L2-normalised for cosine).
    Use ``build`` or ``load`` to make one.

    Attributes:
        faiss_index: The FAISS index of the compared features, row for row.
        features: (N, D) float32 features, as given (not normalised).
        images: The N images; row i of the index describes ``images.paths[i]``.
        metadata: The feature set's metadata plus format, version, kind, nlist, nprobe, dimension.
        distance: How the features are compared: "cosine" or "dot".
    """

    def __init__(self, faiss_index: faiss.Index, features: np.ndarray, images: Split, metadata: dict) -> None:
        """Use ``build`` or ``load``: ``faiss_index`` holds the compared ``features``, row for row.

        Args:
            faiss_index: The FAISS index of the compared features.
            features: (N, D) float32 features, as given.
            images: The N images.
            metadata: The index's metadata.
        """
        self.faiss_index = faiss_index
        self.features = features  # (N, D) float32, as given (not normalised)
        self.images = images  # row i of the index describes images.paths[i]
        self.metadata = metadata  # the feature set's metadata plus format, version, kind, nlist, nprobe, dimension
        self.distance = distance_of(metadata)
        # (N,) float64 divisors of the rescored products: the norms for cosine, 1 for dot
        self._norms = _norms(features) if self.distance == "cosine" else np.ones(len(features))

    @classmethod
    def build(cls, gallery: FeatureSet, kind: str = "flat", nlist: int | None = None, nprobe: int = 8) -> GalleryIndex:
        """Index ``gallery``'s features.

        ``ivf`` trains ``nlist`` cells on the gallery (default ``default_nlist(N)``)
        and searches ``nprobe`` of them per query (at most ``nlist``); ``flat``
        ignores both.

        Args:
            gallery: The gallery's features, images and metadata.
            kind: "flat" or "ivf".
            nlist: The ivf index's cells; None: ``default_nlist(N)``.
            nprobe: The cells an ivf search visits.

        Returns:
            The index.

        Raises:
            GalleryIndexError: Where the kind is unknown, the gallery is empty, or nlist or nprobe is out of range.
        """
        gallery_features = np.asarray(gallery.features, dtype=np.float32)  # (N, D)
        if kind not in INDEX_KINDS:
            raise GalleryIndexError(f"index kind must be one of {', '.join(INDEX_KINDS)}, got {kind!r}")
        num_images, dimension = gallery_features.shape
        if num_images == 0:
            raise GalleryIndexError(f"{gallery.name}: holds no image; an index needs at least one")
        features = _compared(gallery_features, distance_of(gallery.metadata))  # (N, D)
        if kind == "flat":
            faiss_index = faiss.IndexFlatIP(dimension)
            nlist = nprobe = None
        else:
            nlist = default_nlist(num_images) if nlist is None else nlist
            if not 1 <= nlist <= num_images:
                raise GalleryIndexError(f"nlist must be between 1 and the gallery's {num_images} images, got {nlist}")
            faiss_index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dimension), dimension, nlist, faiss.METRIC_INNER_PRODUCT)
            faiss_index.cp.seed = _KMEANS_SEED
            faiss_index.train(features)
        faiss_index.add(features)
        metadata = dict(
            gallery.metadata,
            format=INDEX_FILE.format_name,
            version=INDEX_FILE.version,
            kind=kind,
            nlist=nlist,
            nprobe=None,
            dimension=dimension,
        )
        index = cls(faiss_index, gallery_features, gallery.images, metadata)
        if kind == "ivf":
            index.set_nprobe(nprobe)
        return index

    def set_nprobe(self, nprobe: int) -> None:
        """How many of an ivf index's cells each search visits (at most nlist).

        Args:
            nprobe: The cells to visit; more than nlist visits all of them.

        Raises:
            GalleryIndexError: Where the index is not ivf, or ``nprobe`` is below 1.
        """
        if self.metadata["kind"] != "ivf":
            raise GalleryIndexError(f"nprobe applies to ivf indexes only; this one is {self.metadata['kind']} (exact)")
        if nprobe < 1:
            raise GalleryIndexError(f"nprobe must be at least 1, got {nprobe}")
        self.faiss_index.nprobe = self.metadata["nprobe"] = min(nprobe, self.faiss_index.nlist)

    @property
    def dimension(self) -> int:
        """The dimension (D) of the indexed features."""
        return int(self.faiss_index.d)

    def __len__(self) -> int:
        return len(self.images)

    def search(self, query_features: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``top_k`` gallery rows most similar to each query, best first.

        Equal similarities come by ascending gallery row, also where the tie
        crosses the k-th place, as the evaluator ranks them. With ``ivf``, the
        places the probed cells could not fill hold row -1 and similarity -inf.

        Args:
            query_features: (Q, D) features, as given (not normalised).
            top_k: The most rows per query.

        Returns:
            (Q, k) float32 similarities (cosine, or dot product: the index's distance), descending, and
                (Q, k) int64 gallery rows; k = min(top_k, len(self)).

        Raises:
            GalleryIndexError: Where ``top_k`` is below 1, or the query features are not (Q, D) of the index's D.
        """
        if top_k < 1:
            raise GalleryIndexError(f"top_k must be at least 1, got {top_k}")
        query_features = np.asarray(query_features)
        if query_features.ndim != 2:
            raise GalleryIndexError(f"query features must be a (Q, D) matrix, got shape {query_features.shape}")
        if query_features.shape[1] != self.dimension:
            raise GalleryIndexError(
                f"query features are {query_features.shape[1]}-dimensional, "
                f"but the gallery index holds {self.dimension}-dimensional features"
            )
        queries = _compared(query_features, self.distance)  # (Q, D)
        k = min(top_k, len(self))
        fetch = min(k + 1, len(self))
        scores, rows = self._candidates(queries, fetch)  # (Q, fetch)
        unresolved = np.flatnonzero(_tie_may_go_on(scores, rows, k)) if fetch > k else np.empty(0, dtype=np.int64)
        while unresolved.size and fetch < len(self):
            fetch = min(2 * fetch, len(self))
            more_scores, more_rows = self._candidates(queries[unresolved], fetch)
            scores[unresolved], rows[unresolved] = more_scores[:, : k + 1], more_rows[:, : k + 1]
            unresolved = unresolved[_tie_may_go_on(more_scores, more_rows, k)]
        return scores[:, :k], rows[:, :k]

    def _candidates(self, queries: np.ndarray, fetch: int) -> tuple[np.ndarray, np.ndarray]:
        """(Q, fetch) scores and rows of FAISS's best rows for the compared ``queries``.

        They are rescored, in the evaluator's order. FAISS's BLAS scores can differ in the last bit between identical
        gallery rows; the rescoring sums in float64, so identical rows tie.
        """
        _, rows = self.faiss_index.search(queries, fetch)  # (Q, fetch), -1 where nothing was found
        scores = np.empty(rows.shape, dtype=np.float32)
        chunk = max(1, _RESCORED_VALUES // (fetch * self.dimension))
        for start in range(0, len(rows), chunk):
            chunk_rows = rows[start : start + chunk]  # (C, fetch)
            candidates = self.features[np.maximum(chunk_rows, 0)]  # (C, fetch, D)
            products = np.einsum("cfd,cd->cf", candidates, queries[start : start + chunk], dtype=np.float64)
            scores[start : start + chunk] = np.where(chunk_rows >= 0, products / self._norms[chunk_rows], -np.inf)
        return _in_evaluator_order(scores, rows)

    def save(self, path: str | Path) -> Path:
        """Write the index file (format above) to ``path`` atomically (temporary file, then rename).

        Args:
            path: The index file to write.

        Returns:
            The path written.
        """
        gallery = FeatureSet(self.features, self.images, self.metadata)
        return write_feature_set(path, gallery, INDEX_FILE, {"index": faiss.serialize_index(self.faiss_index)})

    @classmethod
    def load(cls, path: str | Path, root: str | Path | None = None) -> GalleryIndex:
        """Read an index file; relative image paths are joined to ``root`` (default: the stored root).

        The serialized FAISS index is checked byte by byte (vireid.retrieval.faiss_layout) before FAISS reads it.

        Args:
            path: The index file.
            root: The folder relative image paths are joined to; None: the stored root.

        Returns:
            The index.

        Raises:
            IndexFileError: Where the file is missing, unreadable or not a vireid index.
        """
        gallery, arrays = read_feature_set(path, root, INDEX_FILE)
        kind = gallery.metadata.get("kind")
        serialized = np.ascontiguousarray(arrays["index"], dtype=np.uint8)
        try:
            check_faiss_layout(serialized.tobytes(), kind, *gallery.features.shape)
        except ValueError as error:
            raise IndexFileError(
                f"{path}: the 'index' array is not a FAISS index as vireid writes them (kind {kind!r}): {error}; "
                "FAISS did not read it"
            ) from None
        try:
            faiss_index = faiss.deserialize_index(serialized)
        except RuntimeError as error:
            raise IndexFileError(f"{path}: the 'index' array is not a FAISS index (the file is damaged)") from error
        index = cls(faiss_index, gallery.features, gallery.images, gallery.metadata)
        if kind == "ivf":
            nprobe = gallery.metadata.get("nprobe")
            if not isinstance(nprobe, int) or nprobe < 1:
                raise IndexFileError(f"{path}: expected an ivf index's nprobe (an integer >= 1), found {nprobe!r}")
            index.set_nprobe(nprobe)
        return index


def _shown(model: dict, key: str) -> str:
    return json.dumps(model[key]) if key in model else "absent"


def ensure_same_model(index_metadata: dict, query_metadata: dict, index_path: str | Path) -> None:
    """Refuse queries made by another network than the index's gallery, when both say which made them.

    Each metadata's ``"model"`` entry describes the network (backbone, parts,
    feature kind, ...) and the fingerprint of its weights; the entries both
    hold are compared (the run's name only names the runs). When either lacks
    the entry there is nothing to compare.

    Args:
        index_metadata: The index's metadata.
        query_metadata: The query features' metadata.
        index_path: The index file, named in the error.

    Raises:
        GalleryIndexError: Where the entries both hold differ.
    """
    index_model, query_model = index_metadata.get("model"), query_metadata.get("model")
    if index_model is None or query_model is None or index_model == query_model:
        return
    if not (isinstance(index_model, dict) and isinstance(query_model, dict)):
        index_model, query_model = {"model": index_model}, {"model": query_model}
    differences = [
        f"{key}: index {_shown(index_model, key)}, query {_shown(query_model, key)}"
        for key in sorted((set(index_model) & set(query_model)) - {"run"})
        if index_model[key] != query_model[key]
    ]
    if differences:
        runs = f"run {_shown(index_model, 'run')} vs {_shown(query_model, 'run')}; "
        raise GalleryIndexError(
            f"{index_path}: the query features come from another model than the index's gallery "
            f"({runs}{'; '.join(differences)})"
        )
