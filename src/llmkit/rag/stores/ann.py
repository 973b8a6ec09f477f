"""An approximate-nearest-neighbour index for ``SQLiteStore``: HNSW from hnswlib, in a file beside the .db.

Chosen by ``benchmarks/ann.py`` among sqlite-vec, usearch, hnswlib and faiss on clustered 384-d
vectors (10k and 100k, 2 cores). sqlite-vec 0.1.x is a brute-force scan (12-18x slower than numpy
here). The three HNSW libraries reach recall@10 >= 0.95 at ef_search 32 (they run the same
algorithm); hnswlib and faiss answer fastest (0.06 / 0.10 ms p50 at 10k / 100k; usearch 0.13 /
0.25); hnswlib builds 1.4-2x faster than usearch, and adds or replaces 1,000 vectors in 0.3 s at 100k
(usearch 0.6-1.0 s); faiss's HNSW cannot delete, so replacing 1,000 vectors meant a 64 s rebuild.
hnswlib is also the lightest install (numpy only, ~8 MB; usearch pulls ~55 MB, faiss ~66 MB),
though PyPI has only its source, so pip compiles it (a C++ compiler, as llama-cpp-python needs).

The index is derived data. The database is the truth: the file records the store's write
generation it reflects, and ``SQLiteStore`` brings an index whose generation differs up to date
from the database before using it. Ids are the chunks' row ids (``chunks.n``, never reused).

File layout (no pickle: numbers in JSON, arrays as raw bytes)::

    b"LLMKANN\\x02" | 4-byte little-endian header length | JSON header | the arrays' bytes, in header order

The header holds ``generation`` and ``token`` (which database state it reflects), ``dims``,
``count``, hnswlib's own state numbers, each array's name, dtype and shape, and the arrays'
``crc32``; a file that does not match is rejected whole.

Example:
    >>> ix = ANNIndex.build([1, 2, 3], np.eye(3, dtype=np.float32))
    >>> ix.search([0.9, 0.1, 0.0], k=2)
    (array([1, 2]), array([0.9939, 0.1104], dtype=float32))
"""
from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...core.files import atomic_open

MAGIC = b"LLMKANN\x02"
M = 16  # links per node (2x on the bottom layer): the usual default; the benchmark used it for every library
EF_CONSTRUCTION = 100  # candidates kept while linking a new vector
# candidates kept while searching: on the benchmark's 10k / 100k vectors 32 gave recall@10 0.968 /
# 0.975 and 64 gave 0.995 / 0.990; 64 keeps a margin over the 0.95 target on harder data (~0.1 ms)
EF_SEARCH = 64
INSTALL = "pip install 'llmkit[ann]'"


def available() -> bool:
    """Whether the ANN library (hnswlib) can be imported."""
    import importlib.util

    return importlib.util.find_spec("hnswlib") is not None


def _hnswlib() -> Any:
    try:
        import hnswlib
    except ImportError as e:
        raise ImportError(f"the ANN index needs hnswlib: {INSTALL}") from e
    return hnswlib


def unit(x: Any) -> np.ndarray:
    """Rows scaled to length 1 (zero rows stay zero), float32: cosine becomes an inner product."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norms == 0, 1, norms)


class ANNIndex:
    """HNSW over unit vectors with integer ids; cosine similarity as the score.

    Args:
        dims: the vectors' length.
        generation: the store generation this index reflects (saved in its file).
        capacity: room for this many vectors before the first resize.

    Example:
        >>> ix = ANNIndex(384)
        >>> ix.add([10, 11], vectors)          # ids are the chunks' row ids
        >>> ids, scores = ix.search(query, k=5)
        >>> ix.remove([10]); ix.save("kb.db.ann")
    """

    def __init__(self, dims: int, generation: int = 0, capacity: int = 1024):
        self.dims, self.generation = int(dims), int(generation)
        self.token: str | None = None  # the store's token for that generation: which history it belongs to
        # ids marked deleted: they stay in the graph (routing searches, never returned) until a rebuild.
        # Reusing their slots (hnswlib's replace_deleted) measured 4-8x slower per add, with lower recall.
        self.deleted: set[int] = set()
        self.index = _hnswlib().Index(space="ip", dim=self.dims)  # "ip" distance is 1 - dot
        self.index.init_index(max_elements=max(int(capacity), 16), ef_construction=EF_CONSTRUCTION, M=M)
        self.index.set_ef(EF_SEARCH)

    @classmethod
    def build(cls, ids: Sequence[int] | np.ndarray, vectors: Any, generation: int = 0) -> ANNIndex:
        """A new index holding these vectors under these ids."""
        vectors = np.asarray(vectors, dtype=np.float32)
        ix = cls(vectors.shape[1], generation, capacity=len(vectors))
        ix.add(ids, vectors)
        return ix

    def __len__(self) -> int:
        return self.index.element_count - len(self.deleted)

    def ids(self) -> np.ndarray:
        """Every id in the index (deleted ones excluded), as int64."""
        listed = np.asarray(self.index.get_ids_list(), dtype=np.int64)
        return listed[~np.isin(listed, list(self.deleted))] if self.deleted else listed

    def add(self, ids: Sequence[int] | np.ndarray, vectors: Any) -> None:
        """Insert vectors (normalised here) under new ids."""
        keys = np.asarray(ids, dtype=np.uint64)
        if not len(keys):
            return
        vecs = unit(np.asarray(vectors, dtype=np.float32).reshape(len(keys), self.dims))
        need = self.index.element_count + len(keys)
        if need > self.index.max_elements:
            self.index.resize_index(max(need, 2 * self.index.max_elements))
        self.index.add_items(vecs, keys, num_threads=-1)  # -1: all cores

    def remove(self, ids: Sequence[int] | np.ndarray) -> None:
        for i in np.asarray(ids, dtype=np.int64).tolist():
            self.index.mark_deleted(i)
            self.deleted.add(i)

    def search(self, vector: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The (about) ``k`` nearest ids and their cosine similarities, best first.

        Raises RuntimeError if hnswlib cannot find ``k`` live neighbours even with a wide search
        (possible after many deletions); the caller falls back to exact search.
        """
        k = min(int(k), len(self))
        if k < 1:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        q = unit(vector)
        for ef in (max(EF_SEARCH, k), max(4 * k, 256)):  # HNSW returns at most ef; widen once if short
            self.index.set_ef(ef)
            try:
                labels, dist = self.index.knn_query(q, k=k, num_threads=1)
                break
            except RuntimeError:
                if ef >= max(4 * k, 256):
                    raise
        return labels[0].astype(np.int64), (1.0 - dist[0]).astype(np.float32)

    # ------------------------------------------------------------------ file

    def save(self, path: str | Path) -> None:
        """Write the index to ``path`` atomically (a temporary file beside it, then ``os.replace``)."""
        state = self.index.__getstate__()[0]  # hnswlib's pickling state: numbers and numpy arrays
        arrays = {k: np.ascontiguousarray(v) for k, v in state.items() if isinstance(v, np.ndarray)}
        arrays["deleted"] = np.array(sorted(self.deleted), dtype=np.int64)
        crc = 0
        for a in arrays.values():
            crc = zlib.crc32(memoryview(a).cast("B"), crc)
        header = json.dumps({"generation": self.generation, "token": self.token, "dims": self.dims, "count": len(self),
                             "hnswlib": {k: v for k, v in state.items() if not isinstance(v, np.ndarray)},
                             "arrays": [[k, a.dtype.str, list(a.shape)] for k, a in arrays.items()],
                             "crc32": crc}).encode()
        with atomic_open(path, "wb") as f:
            f.write(MAGIC + struct.pack("<I", len(header)) + header)
            for a in arrays.values():
                f.write(memoryview(a).cast("B"))

    @classmethod
    def load(cls, path: str | Path) -> ANNIndex:
        """Read an index written by ``save``; ValueError if the file is not one, or is damaged."""
        data = Path(path).read_bytes()
        at = len(MAGIC) + 4
        if len(data) < at or data[:len(MAGIC)] != MAGIC:
            raise ValueError(f"{path} is not an llmkit ANN index (version {MAGIC[-1]})")
        try:
            size = struct.unpack("<I", data[len(MAGIC):at])[0]
            head = json.loads(data[at:at + size])
            at += size
            arrays, crc = {}, 0
            for name, dtype, shape in head["arrays"]:
                dt = np.dtype(dtype)
                count = int(np.prod(shape, dtype=np.int64))
                if at + count * dt.itemsize > len(data):
                    raise ValueError("truncated")
                arrays[name] = np.frombuffer(data, dtype=dt, count=count, offset=at).reshape(shape)
                crc = zlib.crc32(memoryview(arrays[name]).cast("B"), crc)
                at += count * dt.itemsize
            if at != len(data) or crc != head["crc32"]:
                raise ValueError("length or checksum mismatch")
            ix = cls.__new__(cls)
            ix.dims, ix.generation, ix.token = int(head["dims"]), int(head["generation"]), head.get("token")
            ix.deleted = set(arrays.pop("deleted").tolist())
            ix.index = _hnswlib().Index.__new__(_hnswlib().Index)
            ix.index.__setstate__(({**head["hnswlib"], **arrays},))  # hnswlib checks its own format version
            ix.index.set_ef(EF_SEARCH)
        except (ValueError, KeyError, TypeError, RuntimeError, struct.error) as e:
            raise ValueError(f"{path} is damaged ({e})") from e
        if len(ix) != head["count"] or ix.index.dim != ix.dims:
            raise ValueError(f"{path} is damaged (holds {len(ix)} vectors, its header says {head['count']})")
        return ix
