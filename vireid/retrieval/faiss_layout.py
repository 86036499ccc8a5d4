"""Checking a serialized FAISS index byte by byte before FAISS reads it: only the two kinds vireid writes pass.

``faiss.deserialize_index`` reads any of FAISS's index types, and some of them
name files that it then opens: an IVF index with on-disk inverted lists
(``ilod``) opens the path stored in it, read-write. An index file is untrusted
input, so its ``index`` array must be, field for field, what
``faiss.serialize_index`` writes for an ``IndexFlatIP`` (``flat``) or an
``IndexIVFFlat`` with an ``IndexFlatIP`` quantizer, no direct map and in-memory
inverted lists (``ivf``), of the file's own number of vectors and dimension,
with nothing after it. The layout (FAISS's ``impl/index_write.cpp``, unchanged
since FAISS 1.7): a four-letter tag, then the header ``d`` (int32), ``ntotal``
(int64), two unused int64, ``is_trained`` (one byte), ``metric_type`` (int32; 0
is inner product); little-endian, sizes as uint64.
"""

from __future__ import annotations

import struct

_HEADER = "iqqq?i"  # d, ntotal, two unused, is_trained, metric_type
_INNER_PRODUCT = 0
_NO_DIRECT_MAP = 0


class _Fields:
    """Little-endian fields of a byte string, read in order, each inside its bounds."""

    def __init__(self, data: bytes) -> None:
        self.data, self.offset = data, 0

    def take(self, count: int) -> bytes:
        if self.offset + count > len(self.data):
            raise ValueError(
                f"it ends at byte {len(self.data)}, before the {count} bytes expected from byte {self.offset}"
            )
        self.offset += count
        return self.data[self.offset - count : self.offset]

    def numbers(self, layout: str) -> tuple:
        return struct.unpack("<" + layout, self.take(struct.calcsize("<" + layout)))

    def uint64s(self, count: int) -> tuple[int, ...]:
        return struct.unpack(f"<{count}Q", self.take(8 * count))  # bounds first: a huge count is refused

    def tag(self, expected: bytes, what: str) -> None:
        found = self.take(4)
        if found != expected:
            raise ValueError(f"expected {what} (tag {expected.decode()}), found tag {found!r}")

    def header(self, vectors: int, dimension: int, what: str) -> None:
        found_dimension, found_vectors, _, _, _, metric = self.numbers(_HEADER)
        if (found_dimension, found_vectors, metric) != (dimension, vectors, _INNER_PRODUCT):
            raise ValueError(
                f"{what}: expected {vectors} inner-product vectors of dimension {dimension}, found "
                f"{found_vectors} of dimension {found_dimension} (metric {metric})"
            )


def _flat(fields: _Fields, vectors: int, dimension: int, what: str) -> None:
    fields.tag(b"IxFI", f"{what}: an IndexFlatIP")
    fields.header(vectors, dimension, what)
    (values,) = fields.numbers("Q")
    if values != vectors * dimension:
        raise ValueError(f"{what}: expected {vectors * dimension} stored values, found {values}")
    fields.take(4 * values)  # float32


def _inverted_list_sizes(fields: _Fields, lists: int) -> list[int]:
    kind, (count,) = fields.take(4), fields.numbers("Q")
    if kind == b"full" and count == lists:
        return list(fields.uint64s(count))
    if kind == b"sprs" and count % 2 == 0:  # (list, size) pairs of the lists that are not empty
        pairs = fields.uint64s(count)
        sizes = [0] * lists
        for list_number, size in zip(pairs[::2], pairs[1::2]):
            if list_number >= lists:
                raise ValueError(f"the inverted lists' sizes name list {list_number} of {lists}")
            sizes[list_number] = size
        return sizes
    raise ValueError(f"expected the sizes of {lists} inverted lists, found tag {kind!r} with {count} numbers")


def _ivf_flat(fields: _Fields, vectors: int, dimension: int) -> None:
    fields.tag(b"IwFl", "an IndexIVFFlat")
    fields.header(vectors, dimension, "the index")
    lists, _ = fields.numbers("QQ")  # nlist, nprobe
    _flat(fields, lists, dimension, "its quantizer")
    if fields.numbers("bQ") != (_NO_DIRECT_MAP, 0):
        raise ValueError("expected an index without a direct map")
    fields.tag(b"ilar", "inverted lists held in memory")
    code_size = 4 * dimension
    if fields.numbers("QQ") != (lists, code_size):
        raise ValueError(f"expected {lists} inverted lists of {code_size}-byte codes")
    sizes = _inverted_list_sizes(fields, lists)
    if sum(sizes) != vectors:
        raise ValueError(f"its inverted lists hold {sum(sizes)} vectors, expected {vectors}")
    fields.take(vectors * (code_size + 8))  # each vector's code and int64 id


def check_faiss_layout(serialized: bytes, kind: str, vectors: int, dimension: int) -> None:
    """ValueError saying where ``serialized`` differs from the index that vireid writes.

    Nothing of FAISS runs.

    Args:
        serialized: The bytes of ``faiss.serialize_index``.
        kind: "flat" or "ivf".
        vectors: The number of vectors the index must hold.
        dimension: Their dimension.

    Raises:
        ValueError: Where the bytes are not the ``kind`` index of ``vectors`` vectors of ``dimension``
            values that vireid writes.
    """
    fields = _Fields(bytes(serialized))
    if kind == "flat":
        _flat(fields, vectors, dimension, "the index")
    elif kind == "ivf":
        _ivf_flat(fields, vectors, dimension)
    else:
        raise ValueError(f"expected kind 'flat' or 'ivf', found {kind!r}")
    if fields.offset != len(fields.data):
        raise ValueError(f"{len(fields.data) - fields.offset} bytes follow the index")
